"""App reload, list and dump through the Sense engine (contract 8.2), against
the engine simulator (tests/sim/engine_sim.py) and the QRS simulator."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.request

import pytest

from conftest import TASK_SALES, TIMEOUT_SCALE, VALGRIND, Butler, rss_anon_kb, start_calls, wait_until
import sense_calls
import simctl

HERE = os.path.dirname(os.path.abspath(__file__))
ENGINE_SIM = os.path.join(os.path.dirname(HERE), "sim", "engine_sim.py")
APP_SALES = "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34"
APP_FINANCE = "b4d0f8e3-2a5c-4f9b-87e6-8d3fa01b2c45"
TASK_FINANCE = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


class EngineSim:
    def __init__(self, pki_dir, directory):
        self.pki_dir = pki_dir
        self.log = open(os.path.join(directory, "engine_sim.log"), "wb")
        self.process = subprocess.Popen(
            [simctl.PYTHON, ENGINE_SIM, "--server-cert", os.path.join(pki_dir, "server.pem"),
             "--server-key", os.path.join(pki_dir, "server_key.pem"),
             "--ca", os.path.join(pki_dir, "root.pem")],
            stdout=subprocess.PIPE, stderr=self.log)
        line = simctl._read_ready(self.process, 15)
        _, port, control = line.split()
        self.port, self.control_port = int(port), int(control)

    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.control_port}{path}",
                                         data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def calls(self, method=None):
        return [c for c in self.control("GET", "/calls") if method is None or c["method"] == method]

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def engine_module(qrs_sim):
    directory = tempfile.mkdtemp(prefix="butler-engine-")
    sim = EngineSim(qrs_sim.pki_dir, directory)
    yield sim
    sim.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def engine(engine_module):
    engine_module.control("POST", "/reset", {})
    yield engine_module
    # Every method Butler called, held to docs/sense-calls.md at the end of the session.
    sense_calls.note_engine_calls(engine_module.calls())


def engine_yaml(engine, **keys):
    lines = ["engine:", f"  url: wss://localhost:{engine.port}"]
    # Connect + TLS + upgrade take far longer under valgrind.
    keys.setdefault("timeout_ms", 3000 * TIMEOUT_SCALE)
    lines += [f"  {k}: {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def app_result(client, request_id, timeout=15.0):
    return client.wait_result(request_id, timeout, topic_suffix="/app/result")


def start_butler(workdir, broker, qrs, engine, http=False, **keys):
    return Butler(workdir, broker, qrs=qrs, extra_yaml=engine_yaml(engine, **keys),
                  http_yaml=[] if http else None).start()


def test_reload_success_saves_and_chains(workdir, broker, client, qrs, engine):
    butler = start_butler(workdir, broker, qrs, engine)
    client.publish("butler/app/reload", json.dumps({
        "appId": APP_SALES, "requestId": "r-ok", "reloadMode": 1, "partialReload": True,
        "startQSEoWTaskOnSuccess": [TASK_SALES], "startQSEoWTaskOnFailure": [TASK_FINANCE]}))
    result = app_result(client, "r-ok")
    assert result == {"requestId": "r-ok", "op": "reload", "appId": APP_SALES, "status": "done"}
    reload_call = engine.calls("DoReloadEx")[0]
    assert reload_call["params"]["qParams"]["qPartial"] is True
    assert reload_call["params"]["qParams"]["qMode"] == 1
    assert reload_call["user"] == "INTERNAL\\sa_repository"
    assert engine.control("GET", "/stats")["saves"] == {APP_SALES: 1}
    event = client.wait_for(lambda m: m["topic"] == f"butler/events/app/reload/success/{APP_SALES}")
    body = json.loads(event[0]["payload"])
    assert body["outcome"] == "success" and "1,000 Lines fetched" in body["scriptLogTail"]
    wait_until(lambda: start_calls(qrs, TASK_SALES), message="chained success task started")
    assert not start_calls(qrs, TASK_FINANCE)
    assert butler.stop() == 0


def test_reload_script_error_fails_unsaved_and_chains_failure(workdir, broker, client, qrs, engine):
    engine.control("POST", "/fault", {"reload": "script_error"})
    butler = start_butler(workdir, broker, qrs, engine)
    client.publish("butler/app/reload", json.dumps({
        "appId": APP_SALES, "requestId": "r-err",
        "startQSEoWTaskOnSuccess": [TASK_SALES], "startQSEoWTaskOnFailure": [TASK_FINANCE]}))
    result = app_result(client, "r-err")
    assert result["status"] == "failed"
    assert result["error"] == "Field 'Amount' not found"
    assert engine.control("GET", "/stats")["saves"] == {}
    event = client.wait_for(lambda m: m["topic"] == f"butler/events/app/reload/failed/{APP_SALES}")
    assert "Field 'Amount' not found" in json.loads(event[0]["payload"])["scriptLogTail"]
    wait_until(lambda: start_calls(qrs, TASK_FINANCE), message="chained failure task started")
    assert not start_calls(qrs, TASK_SALES)
    assert butler.stop() == 0


def test_unknown_app_reports_engine_text(workdir, broker, client, qrs, engine):
    butler = start_butler(workdir, broker, qrs, engine)
    client.publish("butler/app/reload", json.dumps({"appId": "no-such-app", "requestId": "r-404"}))
    result = app_result(client, "r-404")
    assert result["status"] == "failed" and "App not found" in result["error"]
    client.publish("butler/app/dump", json.dumps({"appId": "no-such-app", "requestId": "d-404"}))
    assert "App not found" in app_result(client, "d-404")["error"]
    assert butler.stop() == 0


@pytest.mark.parametrize("fault", ["hang", "drop"])
def test_engine_fault_fails_within_timeout(workdir, broker, client, qrs, engine, fault):
    engine.control("POST", "/fault", {"reload": fault})
    # A hang is bounded by engine.reload_timeout_s, a dropped socket at once.
    butler = start_butler(workdir, broker, qrs, engine, reload_timeout_s=2)
    client.publish("butler/app/reload", json.dumps({"appId": APP_SALES, "requestId": f"r-{fault}",
                                                    "startQSEoWTaskOnFailure": [TASK_FINANCE]}))
    result = app_result(client, f"r-{fault}", timeout=10)
    assert result["status"] == "failed"
    assert ("reload_timeout_s" in result["error"]) if fault == "hang" else \
        ("closed" in result["error"] or "gone" in result["error"])
    wait_until(lambda: start_calls(qrs, TASK_FINANCE), message="chained failure task started")
    assert engine.control("GET", "/stats")["saves"] == {}
    assert butler.stop() == 0


def test_refused_certificate_fails(workdir, broker, client, qrs, engine):
    pki = qrs.pki_dir
    butler = start_butler(workdir, broker, qrs, engine,
                          cert_file=json.dumps(os.path.join(pki, "rogue_client.pem")),
                          key_file=json.dumps(os.path.join(pki, "rogue_client_key.pem")))
    client.publish("butler/app/list", json.dumps({"requestId": "l-rogue"}))
    result = app_result(client, "l-rogue")
    assert result["status"] == "failed" and "cannot connect" in result["error"]
    engine.control("POST", "/fault", {"refuse_certificate": True})
    butler.stop()
    butler = start_butler(workdir, broker, qrs, engine)
    client.publish("butler/app/list", json.dumps({"requestId": "l-refused"}))
    result = app_result(client, "l-refused")
    assert result["status"] == "failed" and "HTTP 403" in result["error"], result
    assert engine.calls() == []
    assert butler.stop() == 0


def test_list_and_dump(workdir, broker, client, qrs, engine):
    butler = start_butler(workdir, broker, qrs, engine)
    client.publish("butler/app/list", "")
    client.publish("butler/app/list", json.dumps({"requestId": "l-1"}))
    result = app_result(client, "l-1")
    assert result["status"] == "done" and result["op"] == "list"
    assert {"id": APP_SALES, "name": "Sales"} in result["apps"] and len(result["apps"]) == 3
    client.publish("butler/app/dump", json.dumps({"appId": APP_SALES, "requestId": "d-1"}))
    dump = app_result(client, "d-1")
    assert dump["status"] == "done"
    body = dump["dump"]
    for key in ("properties", "loadScript", "sheets", "stories", "masterobjects", "appprops",
                "dimensions", "measures", "bookmarks", "embeddedmedia", "snapshots", "fields",
                "dataconnections", "variables"):
        assert key in body, key
    assert "LOAD" in body["loadScript"]
    assert len(body["sheets"]) == 2 and body["sheets"][0]["qProperty"]["qInfo"]["qId"] == "sheet-1"
    assert [f["qName"] for f in body["fields"]] == ["Amount", "Region"]
    # Doc.GetLineage's qLineage, as the Node.js Butler's dump carries it.
    assert body["lineage"][0] == {"qDiscriminator": "lib://Data/sales.qvd",
                                  "qStatement": "LOAD * FROM [lib://Data/sales.qvd] (qvd)"}
    assert len(body["lineage"]) == 2
    assert engine.calls("GetLineage")
    # An engine that answers GetLineage with an error: the dump goes on without lineage.
    engine.control("POST", "/fault", {"lineage": "error"})
    client.publish("butler/app/dump", json.dumps({"appId": APP_SALES, "requestId": "d-2"}))
    dump = app_result(client, "d-2")
    assert dump["status"] == "done" and "lineage" not in dump["dump"]
    assert "LOAD" in dump["dump"]["loadScript"]
    assert butler.stop() == 0


def test_invalid_requests_refused(workdir, broker, client, qrs, engine):
    butler = start_butler(workdir, broker, qrs, engine)
    for payload, request_id in [
        ({"requestId": "i-1"}, "i-1"),  # no appId
        ({"requestId": "i-2", "appId": APP_SALES, "reloadMode": 7}, "i-2"),
        ({"requestId": "i-3", "appId": APP_SALES, "startQSEoWTaskOnSuccess": ["x"]}, "i-3"),
        ({"requestId": "i-4", "appId": APP_SALES, "partialReload": "maybe"}, "i-4"),
    ]:
        client.publish("butler/app/reload", json.dumps(payload))
        result = app_result(client, request_id)
        assert result["status"] == "refused" and result["error"], result
    client.publish("butler/app/reload", b"\xff{not json")
    client.wait_for(lambda m: m["topic"] == "butler/app/result"
                    and json.loads(m["payload"])["status"] == "refused"
                    and "JSON" in json.loads(m["payload"])["error"])
    assert engine.calls() == []
    assert butler.stop() == 0


def test_engine_off_refuses(workdir, broker, client, qrs):
    butler = Butler(workdir, broker, qrs=qrs, http_yaml=[]).start()
    client.publish("butler/app/list", json.dumps({"requestId": "off-1"}))
    result = app_result(client, "off-1")
    assert result["status"] == "refused" and "engine.url" in result["error"]
    # Over HTTP the engine endpoints are off, as a disabled Node.js endpoint is.
    from test_http_api import request
    assert request(butler.http_port, "GET", "/v4/apps/list").status == 404
    assert request(butler.http_port, "PUT", f"/v4/app/{APP_SALES}/reload", {}).status == 404
    names = request(butler.http_port, "GET", "/v4/configfile/endpointsenabled").json
    assert "senseListApps" not in names
    assert butler.stop() == 0


def instrumented(pid):
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read()
    return VALGRIND or "libasan" in maps or "vgpreload" in maps


def engine_socket_set(port):
    """Client-side sockets to the engine port still held open by a process
    (ESTABLISHED, SYN_SENT, CLOSE_WAIT), by inode; only Butler connects to it
    here."""
    found = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].split(":")[1], 16)
            if remote_port == port and fields[3] in ("01", "02", "08"):
                found.add((fields[1], fields[9]))
    return found


class EngineSocketPeak:
    """Peak of engine sockets open at the same moment. /proc/net/tcp is not a
    snapshot: the kernel lists it bucket by bucket, in several reads once it
    is longer than a page (50 reloads leave 50 TIME_WAIT lines), so one pass
    can list a socket closed early in the pass and its successor opened later
    in it, a count never reached at any instant (4 with a limit of 3 was seen
    once this way). Counted instead: the sockets listed in two passes in a
    row. Each of them was open from its listing in the first pass to its
    listing in the second, so all were open together when the first pass
    ended; a real peak of 4 that lasts two passes (~1 ms) is still seen."""

    def __init__(self, port):
        self.port = port
        self.previous = set()
        self.raw = 0
        self.together = 0

    def sample(self):
        current = engine_socket_set(self.port)
        self.raw = max(self.raw, len(current))
        self.together = max(self.together, len(current & self.previous))
        self.previous = current


def test_fifty_concurrent_reloads_bounded(workdir, broker, client, qrs, engine):
    engine.control("POST", "/fault", {"reload_ms": 200})
    butler = start_butler(workdir, broker, qrs, engine, max_sessions=3)
    peak = {"rss": 0}
    sockets = EngineSocketPeak(engine.port)
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak["rss"] = max(peak["rss"], rss_anon_kb(butler.process.pid))
            sockets.sample()
            sockets.sample()  # two passes in a row: see EngineSocketPeak
            done.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for i in range(50):
            client.publish("butler/app/reload", json.dumps({"appId": APP_SALES, "requestId": f"c-{i}"}))
        for i in range(50):
            assert app_result(client, f"c-{i}", timeout=60)["status"] == "done"
    finally:
        done.set()
        sampler.join()
    stats = engine.control("GET", "/stats")
    assert stats["saves"][APP_SALES] == 50
    assert stats["connections"] == 50
    print(f"peak RssAnon {peak['rss']} kB, peak engine sockets {sockets.together} open together "
          f"({sockets.raw} in one pass of /proc/net/tcp; the simulator saw {stats['peak']} at "
          f"once, counting closes it had not finished)")
    assert 1 <= sockets.together <= 3, (sockets.together, sockets.raw)
    # The memory bound is for the release build: ASan and valgrind add their own.
    if not instrumented(butler.process.pid):
        assert peak["rss"] <= 16 * 1024, f"peak RssAnon {peak['rss']} kB"
    assert butler.stop() == 0


def test_replay_after_sigkill_does_not_reload_twice(workdir, broker, client, qrs, engine):
    # The reload takes 3 s; Butler is killed while it runs. The simulator
    # finishes it anyway (as the engine does), so the replay must see the new
    # qLastReloadTime and answer without a second DoReloadEx.
    engine.control("POST", "/fault", {"reload_ms": 3000})
    butler = start_butler(workdir, broker, qrs, engine)
    client.publish("butler/app/reload", json.dumps({"appId": APP_SALES, "requestId": "k-1"}))
    wait_until(lambda: engine.calls("DoReloadEx"), message="the reload to start")
    butler.stop(sig=signal.SIGKILL)
    wait_until(lambda: engine.control("GET", "/apps")[APP_SALES]["lastReloadTime"] > "2026-06",
               message="the engine to finish the reload")
    butler.start()
    result = app_result(client, "k-1")
    assert result["status"] == "done" and result.get("reloadedBeforeRestart") is True
    assert len(engine.calls("DoReloadEx")) == 1
    assert engine.calls("GetAppLayout")
    assert butler.stop() == 0


# ---- HTTP: the Node.js Butler's paths, answers checked against the OpenAPI description ----

from test_http_api import request  # noqa: E402  (validates every answer against docs/api/openapi.json)


def test_http_reload_list_dump(workdir, broker, client, qrs, engine):
    butler = start_butler(workdir, broker, qrs, engine, http=True)
    port = butler.http_port
    names = request(port, "GET", "/v4/configfile/endpointsenabled").json
    assert {"senseAppReload", "senseAppDump", "senseListApps"} <= set(names)
    # As a Node.js load script calls it: 201 {appId} once accepted.
    resp = request(port, "PUT", f"/v4/app/{APP_SALES}/reload",
                   {"reloadMode": 0, "partialReload": True,
                    "startQSEoWTaskOnSuccess": [TASK_SALES]})
    assert resp.status == 201 and resp.json["appId"] == APP_SALES
    result = app_result(client, resp.json["requestId"])
    assert result["status"] == "done"
    assert engine.calls("DoReloadEx")[0]["params"]["qParams"]["qPartial"] is True
    wait_until(lambda: start_calls(qrs, TASK_SALES), message="chained task started")
    # The Qlik REST connector can only POST: the method override reaches the same endpoint.
    resp = request(port, "POST", f"/v4/app/{APP_SALES}/reload?wait=true", {},
                   headers={"X-HTTP-Method-Override": "PUT"}, timeout=30)
    assert resp.status == 201 and resp.json["status"] == "done"
    assert engine.control("GET", "/stats")["saves"][APP_SALES] == 2
    for path in ("/v4/apps/list", "/v4/senselistapps"):
        resp = request(port, "GET", path)
        assert resp.status == 200 and {"id": APP_SALES, "name": "Sales"} in resp.json
    for path in (f"/v4/app/{APP_SALES}/dump", f"/v4/senseappdump/{APP_SALES}"):
        resp = request(port, "GET", path, timeout=30)
        assert resp.status == 200 and resp.json["appId"] == APP_SALES
        assert set(resp.json) >= {"properties", "loadScript", "sheets", "stories", "masterobjects",
                                  "appprops", "dimensions", "measures", "bookmarks", "embeddedmedia",
                                  "snapshots", "fields", "dataconnections", "variables"}
    assert butler.stop() == 0


def test_http_errors(workdir, broker, client, qrs, engine):
    butler = start_butler(workdir, broker, qrs, engine, http=True)
    port = butler.http_port
    resp = request(port, "GET", "/v4/app/no-such-app/dump", timeout=30)
    assert resp.status == 422 and "App not found" in resp.json["message"]
    resp = request(port, "PUT", f"/v4/app/{APP_SALES}/reload", {"reloadMode": 9})
    assert resp.status == 400 and "reloadMode" in resp.json["message"]
    resp = request(port, "PUT", f"/v4/app/{APP_SALES}/reload", "[1, 2]",
                   headers={"Content-Type": "application/json"})
    assert resp.status == 400
    resp = request(port, "PUT", f"/v4/app/{APP_SALES}/reload", "{", headers={"Content-Type": "text/plain"})
    assert resp.status == 415
    engine.control("POST", "/fault", {"reload": "script_error"})
    resp = request(port, "PUT", f"/v4/app/{APP_SALES}/reload?wait=true", {}, timeout=30)
    assert resp.status == 500 and "Field 'Amount' not found" in resp.json["message"]
    resp = request(port, "GET", f"/v4/app/{APP_SALES}/reload")
    assert resp.status == 405
    assert engine.calls("DoReloadEx") and len(engine.calls("DoReloadEx")) == 1
    assert butler.stop() == 0


def test_repeated_request_id_reloads_once(workdir, broker, client, qrs, engine):
    engine.control("POST", "/fault", {"reload_ms": 600})
    butler = start_butler(workdir, broker, qrs, engine)
    payload = json.dumps({"appId": APP_SALES, "requestId": "dup-1"})
    client.publish("butler/app/reload", payload)
    client.publish("butler/app/reload", payload)  # while the first one runs: no second reload
    assert app_result(client, "dup-1")["status"] == "done"
    client.publish("butler/app/reload", payload)  # after it: the first answer again
    answers = client.wait_for(lambda m: m["topic"] == "butler/app/result"
                              and json.loads(m["payload"])["requestId"] == "dup-1", count=2)
    assert json.loads(answers[1]["payload"]) == json.loads(answers[0]["payload"])
    assert len(engine.calls("DoReloadEx")) == 1
    assert engine.control("GET", "/stats")["saves"] == {APP_SALES: 1}
    assert butler.stop() == 0


def test_shutdown_cancels_a_hanging_reload_and_replays_it(workdir, broker, client, qrs, engine):
    # No reload_timeout_s: only the shutdown can end the wait. SIGTERM must not hang on it
    # (shutdown_grace_s is 5 in the harness), and the request is done after the restart.
    engine.control("POST", "/fault", {"reload": "hang"})
    butler = start_butler(workdir, broker, qrs, engine)
    client.publish("butler/app/reload", json.dumps({"appId": APP_FINANCE, "requestId": "term-1"}))
    wait_until(lambda: engine.calls("DoReloadEx"), message="the reload to start")
    assert butler.stop(timeout=30) == 0
    # Cut short, not answered: it stayed in the spool.
    assert not [m for m in client.messages
                if m["topic"] == "butler/app/result" and b"term-1" in m["payload"]]
    engine.control("POST", "/fault", {"reload": None})
    butler.start()
    result = app_result(client, "term-1")
    assert result["status"] == "done"
    assert engine.control("GET", "/stats")["saves"] == {APP_FINANCE: 1}
    assert butler.stop() == 0
