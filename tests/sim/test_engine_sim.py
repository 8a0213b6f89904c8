"""The engine simulator's own tests: it must behave like the engine where
Butler depends on it (mutual TLS, X-Qlik-User, notifications, JSON-RPC ids,
errors, faults), checked with Python's websockets client and, when node and
the npm packages are installed, with Qlik's enigma.js."""
import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.request

import pytest
import websockets

import simctl

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE_SIM = os.path.join(HERE, "engine_sim.py")
ENIGMA_DIR = os.path.join(HERE, "enigma-check")
APP = "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34"
USER = {"X-Qlik-User": "UserDirectory=INTERNAL; UserId=sa_test"}


@pytest.fixture(scope="module")
def sim():
    directory = tempfile.mkdtemp(prefix="engine-sim-")
    pki = simctl.make_pki(os.path.join(directory, "pki"))
    process = subprocess.Popen(
        [simctl.PYTHON, ENGINE_SIM, "--server-cert", os.path.join(pki, "server.pem"),
         "--server-key", os.path.join(pki, "server_key.pem"), "--ca", os.path.join(pki, "root.pem")],
        stdout=subprocess.PIPE)
    _, port, control = simctl._read_ready(process, 15).split()
    yield {"port": int(port), "control": int(control), "pki": pki}
    process.send_signal(signal.SIGTERM)
    process.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


def control(sim, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{sim['control']}{path}", data=data,
                                     method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture(autouse=True)
def reset(sim):
    control(sim, "POST", "/reset", {})


def tls(sim, client="client"):
    context = ssl.create_default_context(cafile=os.path.join(sim["pki"], "root.pem"))
    if client:
        context.load_cert_chain(os.path.join(sim["pki"], f"{client}.pem"),
                                os.path.join(sim["pki"], f"{client}_key.pem"))
    return context


async def session(sim, path, calls, client="client", headers=USER):
    """Open path, send calls [(id, handle, method, params)], return every message until
    all ids are answered (notifications included)."""
    url = f"wss://localhost:{sim['port']}{path}"
    async with websockets.connect(url, ssl=tls(sim, client), extra_headers=headers) as ws:
        for call_id, handle, method, params in calls:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": call_id, "handle": handle,
                                      "method": method, "params": params}))
        messages, waiting = [], {c[0] for c in calls}
        while waiting:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            messages.append(message)
            waiting.discard(message.get("id"))
        return messages


def run(coroutine):
    return asyncio.run(coroutine)


def test_notifications_then_answers(sim):
    messages = run(session(sim, "/app/engineData", [(1, -1, "GetDocList", [])]))
    assert [m.get("method") for m in messages[:2]] == ["OnAuthenticationInformation", "OnConnected"]
    assert "id" not in messages[0] and messages[0]["params"]["mustAuthenticate"] is False
    docs = messages[2]["result"]["qDocList"]
    assert messages[2]["id"] == 1 and {"qDocId": APP, "qDocName": "Sales"}.items() <= docs[0].items()


def test_client_certificate_required(sim):
    with pytest.raises((ssl.SSLError, ConnectionError, websockets.InvalidMessage, OSError)):
        run(session(sim, "/app/engineData", [(1, -1, "GetDocList", [])], client=None))
    with pytest.raises((ssl.SSLError, ConnectionError, websockets.InvalidMessage, OSError)):
        run(session(sim, "/app/engineData", [(1, -1, "GetDocList", [])], client="rogue_client"))
    assert control(sim, "GET", "/calls") == []


def test_user_header_required_and_certificate_refusal(sim):
    with pytest.raises(websockets.InvalidStatusCode) as refused:
        run(session(sim, "/app/engineData", [(1, -1, "GetDocList", [])], headers={}))
    assert refused.value.status_code == 401
    control(sim, "POST", "/fault", {"refuse_certificate": True})
    with pytest.raises(websockets.InvalidStatusCode) as refused:
        run(session(sim, "/app/engineData", [(1, -1, "GetDocList", [])]))
    assert refused.value.status_code == 403


def test_open_unknown_app_is_engine_error(sim):
    messages = run(session(sim, "/app/engineData", [(1, -1, "OpenDoc", {"qDocName": "nope"})]))
    assert messages[-1]["error"] == {"code": 1002, "parameter": "nope", "message": "App not found"}


def test_reload_records_mode_and_partial_and_saves(sim):
    messages = run(session(sim, f"/app/{APP}", [(1, -1, "OpenDoc", [APP])]))
    handle = messages[-1]["result"]["qReturn"]["qHandle"]
    messages = run(session(sim, f"/app/{APP}", [
        (1, -1, "OpenDoc", {"qDocName": APP}),
        (2, handle, "DoReloadEx", {"qParams": {"qMode": 2, "qPartial": True}}),
    ]))
    answer = [m for m in messages if m.get("id") == 2][0]
    assert answer["result"]["qResult"]["qSuccess"] is True
    reload = [c for c in control(sim, "GET", "/calls") if c["method"] == "DoReloadEx"][0]
    assert reload["params"]["qParams"] == {"qMode": 2, "qPartial": True}
    assert reload["user"] == "INTERNAL\\sa_test"


def test_script_error_fault(sim):
    control(sim, "POST", "/fault", {"reload": "script_error"})
    messages = run(session(sim, f"/app/{APP}", [
        (1, -1, "OpenDoc", {"qDocName": APP}),
        (2, 1, "DoReloadEx", {"qParams": {}}),
    ]))
    assert [m for m in messages if m.get("id") == 2][0]["result"]["qResult"]["qSuccess"] is False
    progress = run(session(sim, f"/app/{APP}", [
        (1, -1, "OpenDoc", {"qDocName": APP}),
        (2, 1, "DoReloadEx", {"qParams": {}}),
        (3, -1, "GetProgress", {"qRequestId": 2}),
    ]))
    data = [m for m in progress if m.get("id") == 3][0]["result"]["qProgressData"]
    assert "qErrorData" in data


def test_drop_fault_closes_socket(sim):
    control(sim, "POST", "/fault", {"reload": "drop"})
    with pytest.raises(websockets.ConnectionClosed):
        run(session(sim, f"/app/{APP}", [(1, -1, "OpenDoc", {"qDocName": APP}),
                                         (2, 1, "DoReloadEx", {"qParams": {}})]))


def test_against_enigma_js(sim):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (scripts/install-deps.sh --test installs what this needs)")
    if not os.path.isdir(os.path.join(ENIGMA_DIR, "node_modules", "enigma.js")):
        pytest.skip("enigma.js is not installed: run `npm install` in tests/sim/enigma-check "
                    "(scripts/install-deps.sh --test does)")
    done = subprocess.run([node, os.path.join(ENIGMA_DIR, "check.js"), str(sim["port"]), sim["pki"], APP],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["engineVersion"]["qComponentVersion"]
    assert {d["qDocId"] for d in out["docList"]} >= {APP}
    assert out["openMissing"]["code"] == 1002 and out["openMissing"]["message"] == "App not found"
    assert out["docType"] == "Doc"
    assert out["layout"]["qLastReloadTime"]
    assert out["reload"]["qSuccess"] is True
    assert "qPersistentProgress" in out["progress"]
    assert out["properties"]["qTitle"] == "Sales" and "LOAD" in out["script"]
    assert out["connections"][0]["qName"] == "Data"
    assert [set(item) for item in out["lineage"]] == [{"qDiscriminator", "qStatement"}] * 2
    assert out["lineage"][0]["qDiscriminator"] == "lib://Data/sales.qvd"
    assert out["listsType"] == ["GenericObject", "ButlerAppDump"]
    assert out["lists"]["sheets"]["qAppObjectList"]["qItems"][0]["qInfo"]["qType"] == "sheet"
    assert [f["qName"] for f in out["lists"]["fields"]["qFieldList"]["qItems"]] == ["Amount", "Region"]
    assert out["sheetType"] == ["GenericObject", "sheet"] and out["sheetTree"]["qProperty"]["qInfo"]["qId"] == "sheet-1"
    assert out["dimensionType"] == ["GenericDimension", "dimension"] and out["dimensionProperties"]["qInfo"]["qId"] == "dim-1"
    assert out["variableType"] == ["GenericVariable", "variable"]
    # enigma.js sends parameters by position, as the engine accepts too.
    reload = [c for c in control(sim, "GET", "/calls") if c["method"] == "DoReloadEx"][0]
    assert reload["params"] == [{"qMode": 1, "qPartial": True, "qDebug": False}]
