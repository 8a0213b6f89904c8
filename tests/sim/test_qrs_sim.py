"""Acceptance tests for the QRS simulator (sense-interfaces.md 4.10).

Run: /usr/bin/python3 -m pytest -q tests/sim/test_qrs_sim.py

One simulator process serves the whole module; every test starts from
POST /_sim/reset. Plain http.client / ssl clients, so what passes here is what
any client (curl, libcurl) sees.
"""

import http.client
import json
import os
import re
import socket
import sys
import time
from urllib.parse import quote

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simctl import DEFAULT_XRFKEY, start_qrs_sim  # noqa: E402

SALES = "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91"       # tag nightly, CP FailedAlertEnableEmail=Yes, maxRetries 2
FINANCE = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"     # tags nightly + "finance's Q1", last run failed
HR = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"          # CP Department=HR, never ran, maxRetries 0
DISABLED = "c2d3e4f5-a6b7-4c8d-9e0f-a1b2c3d4e5f6"
MARKETING = "4e5f6a7b-8c9d-4e0f-9a1b-2c3d4e5f6a7b"   # CP FailedAlertEnableEmail=No and Env=Yes
EXTPROG = "6b7c8d9e-0f1a-4b2c-8d3e-4f5a6b7c8d9e"
DISTRIBUTE = "3d4e5f6a-7b8c-4d9e-8f0a-1b2c3d4e5f6a"
SALES_APP = "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34"
JDOE = "6f0e1d2c-3b4a-4958-8677-5e4d3c2b1a09"
ZERO_GUID = "00000000-0000-0000-0000-000000000000"
XRF_TEXT = b"XSRF prevention check failed. Possible XSRF discovered."
CONNECTION_FAILURES = (OSError, http.client.HTTPException)


@pytest.fixture(scope="module")
def udp_sock():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture(scope="module")
def sim(tmp_path_factory, udp_sock):
    with start_qrs_sim(tmp_path_factory.mktemp("qrs"), udp_target=udp_sock.getsockname()) as s:
        yield s


@pytest.fixture(autouse=True)
def fresh(sim, udp_sock):
    assert sim.control("POST", "/_sim/reset")[0] == 200
    udp_sock.setblocking(False)
    try:
        while True:
            udp_sock.recv(65535)
    except BlockingIOError:
        pass
    udp_sock.settimeout(5.0)


# ---- helpers -----------------------------------------------------------------

def names(sim, flt, endpoint="task/full"):
    status, body = sim.qrs_json("GET", f"/qrs/{endpoint}?filter={quote(flt, safe='')}")
    assert status == 200, body
    return sorted(t["name"] for t in body)


def filter_error(sim, flt):
    status, headers, body = sim.qrs("GET", f"/qrs/task/full?filter={quote(flt, safe='')}")
    return status, body.decode()


def last_result(sim, task_id, conn=None):
    status, body = sim.qrs_json("GET", f"/qrs/reloadtask/{task_id}", conn=conn)
    assert status == 200
    return body["operational"]["lastExecutionResult"]


def watch(sim, task_id, until, timeout=5.0):
    """Poll /reloadtask/{id}; -> (distinct statuses seen in order, final lastExecutionResult)."""
    seen, deadline = [], time.monotonic() + timeout
    conn = sim.connection()
    try:
        while time.monotonic() < deadline:
            r = last_result(sim, task_id, conn)
            if not seen or seen[-1] != r["status"]:
                seen.append(r["status"])
            if r["status"] in until:
                return seen, r
            time.sleep(0.005)
    finally:
        conn.close()
    raise AssertionError(f"status never reached {until}; saw {seen}")


def patch(sim, task_id, body):
    status, resp = sim.control("PATCH", f"/_sim/tasks/{task_id}", body)
    assert status == 200, resp


def start(sim, task_id, sync=False):
    return sim.qrs("POST", f"/qrs/task/{task_id}/start" + ("/synchronous" if sync else ""), body={})


def results_of(sim, execution_id):
    status, body = sim.qrs_json("GET", "/qrs/executionresult?filter="
                                + quote(f"ExecutionId eq {execution_id}", safe=""))
    assert status == 200
    return body


def datagram(udp_sock):
    return udp_sock.recv(65535).decode("utf-8").split(";")


def add_fault(sim, match, action):
    status, body = sim.control("POST", "/_sim/faults", {"match": match, "action": action})
    assert status == 200, body
    return body


# ---- TLS and authentication ----------------------------------------------------

@pytest.mark.parametrize("cert", [None, "rogue_client", "expired_client"])
def test_bad_client_certificates_are_rejected_at_the_handshake(sim, cert):
    with pytest.raises(CONNECTION_FAILURES):
        sim.qrs("GET", "/qrs/about", cert=cert)
    rejected = sim.wait_calls(route="tls_rejected")
    assert len(rejected) == 1 and rejected[0]["error"]
    assert sim.control("GET", "/_sim/calls?route=about")[1]["calls"] == []


@pytest.mark.parametrize("mode,status,text", [("http-403", 403, b"Forbidden"), ("http-401", 401, b"Unauthorized")])
def test_http_auth_modes_answer_certificateless_clients(sim, mode, status, text):
    assert sim.control("POST", "/_sim/config", {"auth_mode": mode})[0] == 200
    got, _, body = sim.qrs("GET", "/qrs/about", cert=None)
    assert (got, body) == (status, text)
    assert sim.qrs("GET", "/qrs/about")[0] == 200
    with pytest.raises(CONNECTION_FAILURES):  # an untrusted certificate still fails the handshake
        sim.qrs("GET", "/qrs/about", cert="rogue_client")


# ---- Xrfkey and X-Qlik-User ----------------------------------------------------

@pytest.mark.parametrize("path,header,reason", [
    ("/qrs/about", DEFAULT_XRFKEY, "missing_query"),
    ("/qrs/about?xrfkey=" + DEFAULT_XRFKEY, None, "missing_header"),
    ("/qrs/about?xrfkey=" + DEFAULT_XRFKEY, "0123456789abcdeF", "mismatch"),
    ("/qrs/about?xrfkey=0123456789abcde", "0123456789abcde", "bad_format"),
])
def test_xrfkey_failures_answer_403_with_the_exact_text(sim, path, header, reason):
    headers = {} if header is None else {"X-Qlik-Xrfkey": header}
    status, hdrs, body = sim.qrs("GET", path, xrfkey=None, headers=headers)
    assert (status, body) == (403, XRF_TEXT)
    assert hdrs["content-type"].startswith("text/plain")
    call = sim.wait_calls("^/qrs/about$")[0]
    assert call["xrf"] == {"ok": False, "reason": reason}


def test_xrf_failure_status_knob_and_any_case_parameter(sim):
    sim.control("POST", "/_sim/config", {"xrf_failure_status": 400})
    assert sim.qrs("GET", "/qrs/about", xrfkey=None)[0] == 400
    ok = sim.qrs("GET", f"/qrs/about?Xrfkey={DEFAULT_XRFKEY}", xrfkey=None,
                 headers={"x-qlik-xrfkey": DEFAULT_XRFKEY})
    assert ok[0] == 200


def test_fragment_and_raw_ampersand_in_the_query(sim):
    key = DEFAULT_XRFKEY
    # A raw '#' ends the query: the xrfkey after it is lost.
    status, _, body = sim.qrs("GET", f"/qrs/task/full?filter=name%20eq%20'a#b'&xrfkey={key}", xrfkey=None,
                              headers={"X-Qlik-Xrfkey": key})
    assert (status, body) == (403, XRF_TEXT)
    # A raw '&' inside a literal splits the query before decoding.
    status, _, body = sim.qrs("GET", f"/qrs/task/full?filter=name%20eq%20'a&b'&xrfkey={key}", xrfkey=None,
                              headers={"X-Qlik-Xrfkey": key})
    assert (status, body) == (400, b"Missing parameter value(s)")


def test_valid_call_is_recorded(sim):
    status, _, _ = sim.qrs("GET", "/qrs/about", user="userdirectory=CORP ;userid=j%20doe")
    assert status == 200
    call = sim.wait_calls("^/qrs/about$", method="GET")[0]
    assert call["xrf"] == {"ok": True, "reason": None}
    assert call["user"] == {"directory": "CORP", "id": "j doe"}
    assert call["tls"] == {"verified": True, "subject": "CN=QlikClient"}
    assert call["route"] == "about" and call["response"]["status"] == 200
    assert call["query"] == {"xrfkey": [DEFAULT_XRFKEY]}
    assert call["headers"]["x-qlik-xrfkey"] == DEFAULT_XRFKEY


def test_x_qlik_user_missing_and_malformed(sim):
    assert sim.qrs("GET", "/qrs/about", user=None)[0] == 200
    assert sim.wait_calls("^/qrs/about$")[0]["user"] == {"directory": "INTERNAL", "id": "sa_api"}
    status, _, body = sim.qrs("GET", "/qrs/about", user="sa_repository")
    assert status == 400


def test_routing_case_trailing_slash_404_405(sim):
    assert sim.qrs("GET", f"/qrs/ReloadTask/{SALES.upper()}/")[0] == 200
    assert sim.qrs("GET", "/qrs/nosuchthing")[0] == 404
    status, headers, _ = sim.qrs("DELETE", "/qrs/about")
    assert status == 405 and headers["allow"] == "GET"
    assert sim.qrs("GET", "/qrs/task/start")[0] == 405


def test_keep_alive_reuses_one_connection(sim):
    conn = sim.connection()
    try:
        for _ in range(3):
            status, headers, _ = sim.qrs("GET", "/qrs/about", conn=conn)
            assert status == 200 and headers["connection"] == "keep-alive"
    finally:
        conn.close()
    peers = {c["peer"] for c in sim.wait_calls("^/qrs/about$", count=3)}
    assert len(peers) == 1


# ---- filters -------------------------------------------------------------------

def test_filter_by_tag_and_case_insensitive_values(sim):
    tagged = ["Reload Finance", "Reload Legacy Budget", "Reload Sales Dashboard"]
    assert names(sim, "tags.name eq 'nightly'") == tagged
    assert names(sim, "Tags.Name EQ 'NIGHTLY'") == tagged
    assert names(sim, "name eq 'reload sales dashboard'") == ["Reload Sales Dashboard"]
    assert names(sim, "tags.name eq 'nope'") == []


def test_filter_backslash_escapes_and_doubled_quote(sim):
    assert names(sim, r"tags.name eq 'finance\'s Q1'") == ["Reload Finance"]
    status, text = filter_error(sim, "tags.name eq 'finance''s Q1'")
    assert status == 400 and text.startswith("Cannot parse the expression: ")
    status, text = filter_error(sim, 'tags.name eq "nightly"')
    assert status == 400 and text.startswith("Cannot parse the expression")


def test_filter_errors(sim):
    assert filter_error(sim, "()") == (400, "Invalid expression")
    assert filter_error(sim, "nosuchproperty eq 'x'")[0] == 400
    assert filter_error(sim, "name eq")[0] == 400
    assert len(names(sim, "")) == 9


def test_filter_forms_butler_sends(sim):
    assert names(sim, f"id eq {SALES}", "task") == ["Reload Sales Dashboard"]
    assert names(sim, f"id eq {SALES} and customProperties.definition.name eq "
                      "'Butler_FailedAlertEnableEmail' and customProperties.value eq 'Yes'") \
        == ["Reload Sales Dashboard"]
    assert names(sim, "objectTypes eq 'ReloadTask'", "custompropertydefinition/full") == \
        ["Butler_FailedAlertEnableEmail", "Butler_SuccessReloadTask_InfluxDB", "Department", "Env"]
    assert names(sim, f"id eq {SALES_APP}", "app/full") == ["Sales Dashboard"]
    assert names(sim, "(name sw 'reload s' or name ew 'budget') and not enabled eq false") == \
        ["Reload Sales Dashboard"]
    assert names(sim, "name so 'HEAD'") == ["Reload HR Headcount"]
    assert names(sim, "taskType eq 3 or taskType ge 4") == \
        ["Distribute Sales to Qlik Cloud", "Preload Sales Dashboard"]


def test_custom_property_filter_semantics(sim):
    flt = ("(customProperties.definition.name eq 'Butler_FailedAlertEnableEmail') and "
           "(customProperties.value eq 'Yes')")
    assert names(sim, flt) == ["Reload Marketing Funnel", "Reload Sales Dashboard"]
    sim.control("POST", "/_sim/config", {"cp_filter_semantics": "correlated"})
    assert names(sim, flt) == ["Reload Sales Dashboard"]


# ---- task runs -----------------------------------------------------------------

def test_start_runs_through_1_2_7_with_exact_details(sim, udp_sock):
    patch(sim, SALES, {"run": {"queueMs": 150, "durationMs": 150}})
    status, _, body = start(sim, SALES)
    assert (status, body) == (204, b"")
    seen, r = watch(sim, SALES, {7})
    assert seen == [1, 2, 7]
    details = sorted(r["details"], key=lambda d: d["detailCreatedDate"])
    assert details[-1]["message"] == "Changing task state from Started to FinishedSuccess"
    assert [d["message"] for d in details][:2] == [
        "Changing task state to Triggered", "Trying to start task. Sending task to slave scheduler"]
    assert r["duration"] >= 140 and r["scriptLogAvailable"] and r["scriptLogSize"] > 0
    assert r["stopTime"] > r["startTime"] > "2000"

    fields = datagram(udp_sock)
    assert len(fields) == 11 and fields[0] == "/scheduler-task-success//"
    assert fields[1:7] == ["sense-node-01", "Reload Sales Dashboard", "Sales Dashboard",
                           "INTERNAL\\sa_repository", SALES, SALES_APP]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", fields[7])
    assert fields[8] == "INFO" and "Execution State Change to FinishedSuccess" in fields[10]
    results = results_of(sim, fields[9])
    assert len(results) == 1 and results[0]["id"] == r["id"] and results[0]["executionID"] == fields[9]


def test_fail_with_retries_gives_one_result_per_attempt_then_8(sim, udp_sock):
    patch(sim, SALES, {"run": {"outcomes": ["fail"], "durationMs": 30, "retryDelayMs": 20}})
    status, _, body = start(sim, SALES, sync=True)
    assert status == 201
    sid = json.loads(body)["value"]
    fields = datagram(udp_sock)
    assert fields[0] == "/scheduler-task-failed/" and fields[8] == "ERROR" and fields[9] == sid
    assert "Max retries reached" in fields[10]
    results = sorted(results_of(sim, sid), key=lambda x: x["createdDate"])
    assert [x["status"] for x in results] == [10, 10, 8]  # maxRetries 2: three attempts
    assert any(d["detailsType"] == 0 for d in results[-1]["details"])
    assert last_result(sim, SALES)["id"] == results[-1]["id"]


def test_disabled_task(sim):
    before = last_result(sim, DISABLED)
    assert start(sim, DISABLED)[:3:2] == (204, b"")
    status, _, body = start(sim, DISABLED, sync=True)
    assert (status, json.loads(body)) == (201, {"value": ZERO_GUID})
    assert last_result(sim, DISABLED) == before
    assert sim.control("GET", "/_sim/stats")[1]["starts"] == 0
    sim.control("POST", "/_sim/config", {"disabled_start_status": 409})
    assert start(sim, DISABLED)[0] == 409


def test_sync_start_and_execution_session(sim):
    patch(sim, HR, {"run": {"durationMs": 300}})
    status, _, body = start(sim, HR, sync=True)
    sid = json.loads(body)["value"]
    assert status == 201 and sid != ZERO_GUID
    status, session = sim.qrs_json("GET", f"/qrs/executionsession/{sid}")
    assert status == 200 and session["id"] == sid and session["reloadTask"]["id"] == HR
    assert session["executionResult"]["id"] == last_result(sim, HR)["id"]
    watch(sim, HR, {7})
    assert sim.qrs("GET", f"/qrs/executionsession/{sid}")[0] == 404


def test_execution_session_list_filtered_by_id(sim):
    """GET /qrs/executionsession is a filterable entity list (reference 1.2): the sessions of
    runs going on now; an ended run's session is not listed."""
    patch(sim, HR, {"run": {"durationMs": 60000}})
    patch(sim, SALES, {"run": {"durationMs": 300}})
    running = json.loads(start(sim, HR, sync=True)[2])["value"]
    ending = json.loads(start(sim, SALES, sync=True)[2])["value"]
    unknown = "00000000-1111-4222-8333-444444444444"
    flt = quote(f"id eq {running} or id eq {ending} or id eq {unknown}")
    status, listed = sim.qrs_json("GET", f"/qrs/executionsession?filter={flt}")
    assert status == 200 and sorted(s["id"] for s in listed) == sorted([running, ending])
    assert set(listed[0]) == {"id", "privileges"}
    watch(sim, SALES, {7})
    status, listed = sim.qrs_json("GET", f"/qrs/executionsession?filter={flt}")
    assert status == 200 and [s["id"] for s in listed] == [running]
    status, full = sim.qrs_json("GET", "/qrs/executionsession/full?filter=" +
                                quote(f"reloadTask.id eq {HR}"))
    assert status == 200 and [s["id"] for s in full] == [running]
    assert full[0]["executionResult"]["id"] == last_result(sim, HR)["id"]
    assert sim.qrs("GET", "/qrs/executionsession?filter=" + quote("nosuch eq 1"))[0] == 400


def test_unknown_and_malformed_task_ids(sim):
    status, _, body = start(sim, "00000000-1111-4222-8333-444444444444")
    assert (status, body) == (404, b"Task not found")
    assert start(sim, "not-a-guid")[0] == 400
    assert sim.qrs("GET", "/qrs/reloadtask/not-a-guid")[0] == 400
    assert sim.qrs("GET", "/qrs/app/00000000-1111-4222-8333-444444444444")[0] == 404


def test_start_by_name_and_many(sim):
    assert sim.qrs("POST", "/qrs/task/start?name=" + quote("reload hr headcount"), body={})[0] == 204
    assert sim.qrs("POST", "/qrs/task/start?name=nope", body={})[0] == 404
    assert sim.qrs("POST", "/qrs/task/start/many", body=[SALES, FINANCE])[0] == 204
    stats = sim.control("GET", "/_sim/stats")[1]
    assert stats["starts"] == 3 and stats["by_route"]["task.start.many"] == 1


def test_hang_complete_and_stop(sim, udp_sock):
    patch(sim, HR, {"run": {"outcomes": ["hang"]}})
    start(sim, HR)
    watch(sim, HR, {2})
    time.sleep(0.1)
    assert last_result(sim, HR)["status"] == 2
    assert sim.control("POST", f"/_sim/tasks/{HR}/complete", {"outcome": "fail"})[0] == 200
    assert watch(sim, HR, {8})[0][-1] == 8
    assert datagram(udp_sock)[0] == "/scheduler-task-failed/"

    start(sim, HR)
    watch(sim, HR, {2})
    assert sim.qrs("POST", f"/qrs/task/{HR}/stop", body={})[0] == 204
    seen, r = watch(sim, HR, {6})
    assert r["details"][-1]["message"] == "Changing task state from Aborting to Aborted"
    assert datagram(udp_sock)[0] == "/scheduler-task-aborted/"


def test_udp_lead_sends_the_datagram_before_the_final_status(sim, udp_sock):
    patch(sim, SALES, {"run": {"durationMs": 1100, "udpLeadMs": 1000}})
    start(sim, SALES)
    datagram(udp_sock)
    assert last_result(sim, SALES)["status"] == 2


def test_distribute_datagram_arrives_while_still_distributing(sim, udp_sock):
    start(sim, DISTRIBUTE)
    fields = datagram(udp_sock)
    assert fields[0] == "/scheduler-distribute/" and fields[3] == "" and fields[6] == ""
    assert last_result(sim, DISTRIBUTE)["status"] in (13, 14)
    watch(sim, DISTRIBUTE, {7})


def test_manual_clock_steps_a_run(sim):
    patch(sim, HR, {"run": {"queueMs": 100, "durationMs": 200}})
    sim.control("POST", "/_sim/clock", {"mode": "manual"})
    start(sim, HR)
    time.sleep(0.15)
    assert last_result(sim, HR)["status"] == 1
    sim.control("POST", "/_sim/clock", {"advance_ms": 100})
    watch(sim, HR, {2})
    sim.control("POST", "/_sim/clock", {"advance_ms": 200})
    assert watch(sim, HR, {7})[1]["duration"] == 200


def test_script_log_download_flows(sim):
    start(sim, SALES)
    _, r = watch(sim, SALES, {7})
    _, ref = sim.qrs_json("GET", f"/qrs/reloadtask/{SALES}/scriptlog?fileReferenceId={r['fileReferenceID']}")
    status, headers, text = sim.qrs("GET", f"/qrs/download/reloadtask/{ref['value']}/scriptlog.txt")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"Execution finished." in text and len(text) == r["scriptLogSize"]
    assert sim.qrs("GET", f"/qrs/download/reloadtask/{ref['value']}/scriptlog.txt")[0] == 404  # single use

    _, ref = sim.qrs_json("GET", f"/qrs/reloadtask/{SALES}/scriptlogfile?executionResultId={r['id']}")
    assert sim.qrs("GET", f"/qrs/download/reloadtask/{ref['value']}/scriptlog.txt")[0] == 200
    sim.control("POST", "/_sim/config", {"scriptlogfile_value_shape": "bare", "deprecated_scriptlog_api": "404"})
    _, ref = sim.qrs_json("GET", f"/qrs/reloadtask/{SALES}/scriptlogfile?executionResultId={r['id']}")
    assert isinstance(ref, str)
    assert sim.qrs("GET", f"/qrs/reloadtask/{SALES}/scriptlog?fileReferenceId={r['fileReferenceID']}")[0] == 404



# ---- following one run to its end (sense-interfaces.md 7.2) ----------------------

RESULT_FIELDS_7_2 = {"status", "startTime", "stopTime", "duration", "executingNodeName", "details",
                     "scriptLogAvailable", "scriptLogLocation", "scriptLogSize", "fileReferenceID",
                     "executionID", "taskID", "appID", "id"}


def results_full(sim, execution_id):
    """The form a follower sends: /executionresult/full?filter=ExecutionId eq <id> (7.2)."""
    status, body = sim.qrs_json("GET", "/qrs/executionresult/full?filter="
                                + quote(f"ExecutionId eq {execution_id}", safe=""))
    assert status == 200 and isinstance(body, list), body
    return body


def sync_start_id(sim, task_id):
    status, _, body = start(sim, task_id, sync=True)
    assert status == 201, body
    return json.loads(body)["value"]


def iso_ms_of(iso):
    """2026-03-14T01:15:02.311Z -> milliseconds since the epoch."""
    import calendar
    return calendar.timegm(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")) * 1000 + int(iso[20:23])


def session_status(sim, sid):
    return sim.qrs("GET", f"/qrs/executionsession/{sid}")[0]


def wait_session_gone(sim, sid, timeout=5.0):
    deadline = time.monotonic() + timeout
    while session_status(sim, sid) == 200:
        assert time.monotonic() < deadline, f"session {sid} still answers 200"
        time.sleep(0.01)
    return session_status(sim, sid)


def test_sync_start_answers_once_started_not_when_ended(sim):
    # 7.2: "returns 201 as soon as the task has started, not when it ends"; the body is
    # {"value": "<guid>"}, and the session answers 200 while the run goes on.
    patch(sim, HR, {"run": {"queueMs": 150, "durationMs": 3000}})
    sid = sync_start_id(sim, HR)
    assert sid != ZERO_GUID
    [r] = results_full(sim, sid)
    assert r["status"] == 2 and r["executionID"] == sid and r["stopTime"] == "1753-01-01T00:00:00.000Z"
    assert session_status(sim, sid) == 200
    assert sim.qrs("POST", f"/qrs/task/{HR}/stop", body={})[0] == 204
    assert wait_session_gone(sim, sid) == 404


def test_sync_start_bare_guid_shape(sim):
    # 7.2 / 1.5 E4: the reference describes the body as a bare GUID; clients must accept both.
    sim.control("POST", "/_sim/config", {"sync_start_value_shape": "bare"})
    patch(sim, HR, {"run": {"durationMs": 50}})
    status, headers, body = start(sim, HR, sync=True)
    sid = json.loads(body)
    assert status == 201 and isinstance(sid, str) and re.fullmatch(r"[0-9a-f-]{36}", sid) and sid != ZERO_GUID
    assert headers["content-type"].startswith("application/json")
    assert json.loads(start(sim, DISABLED, sync=True)[2]) == ZERO_GUID
    assert sim.control("POST", "/_sim/config", {"sync_start_value_shape": "string"})[0] == 400


def test_session_404_once_ended_and_for_unknown_ids(sim):
    # 7.2: 200 while the run goes on (also between retry attempts), 404 once it ended.
    patch(sim, HR, {"maxRetries": 1, "run": {"outcomes": ["fail"], "durationMs": 150, "retryDelayMs": 1000}})
    sid = sync_start_id(sim, HR)
    seen = set()
    deadline = time.monotonic() + 5
    while session_status(sim, sid) == 200:
        assert time.monotonic() < deadline
        seen.update(x["status"] for x in results_full(sim, sid))
        time.sleep(0.01)
    assert 10 in seen  # the session lived on through the Retry
    assert [x["status"] for x in results_full(sim, sid)] == [10, 8]
    assert session_status(sim, "00000000-1111-4222-8333-444444444444") == 404
    assert results_full(sim, "00000000-1111-4222-8333-444444444444") == []


@pytest.mark.parametrize("outcome,code", [("success", 7), ("fail", 8), ("abort", 6), ("skip", 9),
                                          ("error", 11)])
def test_each_outcome_ends_with_its_status_code(sim, outcome, code):
    # Section 2 (TaskExecutionStatus) and 7.2 (result fields): the final status of the newest
    # result, 404 on the session, and the documented field names.
    patch(sim, HR, {"run": {"outcomes": [outcome], "durationMs": 100}})
    sid = sync_start_id(sim, HR)
    assert wait_session_gone(sim, sid) == 404
    [r] = results_full(sim, sid)
    assert r["status"] == code, r
    assert RESULT_FIELDS_7_2 <= set(r) and r["taskID"] == HR
    assert all({"detailsType", "message", "detailCreatedDate"} <= set(d) for d in r["details"])
    assert r["details"][-1]["message"].endswith("to " + {7: "FinishedSuccess", 8: "FinishedFail",
                                                         6: "Aborted", 9: "Skipped", 11: "Error"}[code])
    if code in (7, 8, 6, 11):  # the run reached Started: real times and a script log
        assert r["startTime"] > "2000" and r["stopTime"] >= r["startTime"]
        assert r["scriptLogAvailable"] is True and r["scriptLogSize"] > 0
    if code == 8:
        assert any(d["detailsType"] == 0 for d in r["details"])


def test_duration_is_stop_minus_start_in_ms(sim):
    # 1.5 / 7.2: duration in milliseconds; the reference's example has exactly
    # stopTime - startTime (01:16:07.482 - 01:15:02.311 = 65171). Steps of 200.4 ms on the
    # manual clock put the start's sub-millisecond part all round the clock, so the
    # truncated stamps and a rounded float difference would disagree on some of the runs.
    patch(sim, HR, {"run": {"durationMs": 200}})
    sim.control("POST", "/_sim/clock", {"mode": "manual"})
    for _ in range(5):
        sid = sync_start_id(sim, HR)
        sim.control("POST", "/_sim/clock", {"advance_ms": 200.4})
        assert wait_session_gone(sim, sid) == 404
        [r] = results_full(sim, sid)
        assert r["status"] == 7
        assert r["duration"] == iso_ms_of(r["stopTime"]) - iso_ms_of(r["startTime"]), r


def test_script_log_of_a_followed_run_newer_then_older_call(sim):
    # 7.2: scriptlogfile?executionResultId= (newer) and scriptlog?fileReferenceId= (older) each
    # answer a ticket {"value": ...} for /download/reloadtask/{ticket}/{any file name}.
    patch(sim, HR, {"run": {"outcomes": ["fail"], "durationMs": 100}})
    sid = sync_start_id(sim, HR)
    wait_session_gone(sim, sid)
    [r] = results_full(sim, sid)
    status, ticket = sim.qrs_json("GET", f"/qrs/reloadtask/{HR}/scriptlogfile?executionResultId={r['id']}")
    assert status == 200 and set(ticket) == {"value"}
    status, headers, text = sim.qrs("GET", f"/qrs/download/reloadtask/{ticket['value']}/"
                                    + quote("Reload HR Headcount.20260314.log"))
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"Execution Failed" in text and len(text) == r["scriptLogSize"]
    status, ticket = sim.qrs_json("GET", f"/qrs/reloadtask/{HR}/scriptlog?fileReferenceId={r['fileReferenceID']}")
    assert status == 200 and set(ticket) == {"value"}
    status, _, text2 = sim.qrs("GET", f"/qrs/download/reloadtask/{ticket['value']}/any-name")
    assert (status, text2) == (200, text)
    # Another task's ticket request for this result is refused.
    assert sim.qrs("GET", f"/qrs/reloadtask/{SALES}/scriptlogfile?executionResultId={r['id']}")[0] == 404


def test_retries_give_one_result_each_with_its_own_times(sim):
    # 7.2: one result per attempt when the task retries; the newest is the last attempt.
    patch(sim, SALES, {"run": {"outcomes": ["fail"], "durationMs": 60, "retryDelayMs": 40}})
    sid = sync_start_id(sim, SALES)
    wait_session_gone(sim, sid)
    results = sorted(results_full(sim, sid), key=lambda x: x["startTime"])
    assert [x["status"] for x in results] == [10, 10, 8]  # maxRetries 2
    assert len({x["id"] for x in results}) == 3 and {x["executionID"] for x in results} == {sid}
    for earlier, later in zip(results, results[1:]):
        assert earlier["stopTime"] <= later["startTime"]
    assert last_result(sim, SALES)["id"] == results[-1]["id"]


def test_outcomes_and_durations_per_task_through_the_control_api(sim):
    # 4.3 RunPlan via PATCH /_sim/tasks/{id}: outcomes consumed one per start.
    patch(sim, HR, {"run": {"outcomes": ["success", "fail"], "durationMs": 80}})
    codes = []
    for _ in range(3):
        sid = sync_start_id(sim, HR)
        wait_session_gone(sim, sid)
        codes.append(results_full(sim, sid)[0]["status"])
    assert codes == [7, 8, 7]
    assert sim.control("PATCH", f"/_sim/tasks/{HR}", {"run": {"outcomes": ["boom"]}})[0] == 400

# ---- entity shapes -------------------------------------------------------------

def test_entity_shapes(sim):
    _, task = sim.qrs_json("GET", f"/qrs/reloadtask/{HR}")
    never = task["operational"]["lastExecutionResult"]
    assert never["status"] == 0 and never["startTime"] == "1753-01-01T00:00:00.000Z"
    assert task["privileges"] is None and task["schemaPath"] == "ReloadTask"
    assert task["customProperties"][0]["definition"]["name"] == "Department"

    _, app = sim.qrs_json("GET", f"/qrs/app/{SALES_APP}")
    assert app["owner"]["userId"] == "jdoe" and app["owner"]["userDirectory"] == "CORP"
    _, user = sim.qrs_json("GET", f"/qrs/user/{JDOE}")
    assert {"attributeType": "email", "attributeValue": "jane.doe@example.com"}.items() <= \
        user["attributes"][0].items()
    _, about = sim.qrs_json("GET", "/qrs/about")
    assert about["buildVersion"] and about["nodeType"] == 1
    _, enums = sim.qrs_json("GET", "/qrs/about/api/enums")
    assert enums["TaskExecutionStatus"]["values"][14] == "14: DistributionRunning"
    _, tags = sim.qrs_json("GET", "/qrs/tag/full")
    assert "finance's Q1" in {t["name"] for t in tags}
    _, results = sim.qrs_json("GET", f"/qrs/executionresult?filter=taskID%20eq%20{FINANCE}")
    assert results[0]["status"] == 8 and {"executionID", "taskID", "appID", "fileReferenceID"} <= set(results[0])


def test_typed_task_endpoints(sim):
    assert sim.qrs("GET", f"/qrs/externalprogramtask/{EXTPROG}")[0] == 200
    assert sim.qrs("GET", f"/qrs/usersynctask/{EXTPROG}")[0] == 404
    assert sim.qrs("GET", f"/qrs/reloadtask/{EXTPROG}")[0] == 200  # Butler relies on this
    sim.control("POST", "/_sim/config", {"reloadtask_serves_all_types": False})
    assert sim.qrs("GET", f"/qrs/reloadtask/{EXTPROG}")[0] == 404
    assert "Nightly backup script" not in names(sim, "", "reloadtask/full")


# ---- faults --------------------------------------------------------------------

START_RE = "^/qrs/task/[^/]+/start$"


def test_fault_status_503_with_retry_after_once(sim):
    add_fault(sim, {"method": "POST", "path_re": START_RE, "times": 1},
              {"type": "status", "status": 503, "body": {"message": "Service Unavailable"},
               "headers": {"Retry-After": "5"}})
    status, headers, body = start(sim, SALES)
    assert status == 503 and headers["retry-after"] == "5"
    assert json.loads(body) == {"message": "Service Unavailable"}
    assert start(sim, SALES)[0] == 204
    call = sim.wait_calls(START_RE, count=2)[0]
    assert call["fault_applied"]["type"] == "status"


def test_fault_drop_before_and_after_processing(sim):
    add_fault(sim, {"path_re": START_RE, "times": 1}, {"type": "drop", "when": "before_response", "how": "rst"})
    with pytest.raises(CONNECTION_FAILURES):
        start(sim, SALES)
    assert sim.control("GET", "/_sim/stats")[1]["starts"] == 0
    add_fault(sim, {"path_re": START_RE, "times": 1}, {"type": "drop", "when": "after_processing", "how": "fin"})
    with pytest.raises(CONNECTION_FAILURES):
        start(sim, SALES)
    assert sim.control("GET", "/_sim/stats")[1]["starts"] == 1


def test_fault_status_after_processing_starts_then_answers_the_status(sim):
    """A gateway that forwarded the start and answered 502 itself: the task started."""
    add_fault(sim, {"method": "POST", "path_re": START_RE, "times": 1},
              {"type": "status", "status": 502, "body": "<html>Bad Gateway</html>",
               "content_type": "text/html", "when": "after_processing"})
    status, _, body = start(sim, SALES)
    assert status == 502 and body == b"<html>Bad Gateway</html>"
    assert sim.control("GET", "/_sim/stats")[1]["starts"] == 1
    # The default still refuses before anything is handled.
    add_fault(sim, {"method": "POST", "path_re": START_RE, "times": 1},
              {"type": "status", "status": 502})
    assert start(sim, SALES)[0] == 502
    assert sim.control("GET", "/_sim/stats")[1]["starts"] == 1


def test_fault_delay_and_nth(sim):
    add_fault(sim, {"path_re": "^/qrs/about$", "nth": 2, "times": 1}, {"type": "delay", "ms": 500})
    t0 = time.monotonic()
    assert sim.qrs("GET", "/qrs/about")[0] == 200
    t1 = time.monotonic()
    assert sim.qrs("GET", "/qrs/about")[0] == 200
    t2 = time.monotonic()
    assert t1 - t0 < 0.4 and t2 - t1 >= 0.5
    assert sim.control("GET", "/_sim/faults")[1]["faults"][0]["applied"] == 1


def test_fault_delay_after_processing_starts_then_answers_late(sim):
    """The start happens at once; only the answer waits (QRS accepted it, the client timed out)."""
    import threading

    add_fault(sim, {"method": "POST", "path_re": START_RE, "times": 1},
              {"type": "delay", "ms": 3000, "when": "after_processing"})
    status = {}
    thread = threading.Thread(target=lambda: status.update(code=start(sim, SALES)[0]))
    thread.start()
    deadline = time.monotonic() + 5
    while sim.control("GET", "/_sim/stats")[1]["starts"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    # Started while the caller still waits for its answer.
    assert sim.control("GET", "/_sim/stats")[1]["starts"] == 1 and "code" not in status
    thread.join(10)
    assert status["code"] == 204


@pytest.mark.parametrize("action,check", [
    ({"type": "empty_body"}, lambda s, h, b: s == 200 and b == b""),
    ({"type": "wrong_content_type"}, lambda s, h, b: h["content-type"].startswith("text/html")),
    ({"type": "flip_xrf"}, lambda s, h, b: (s, b) == (403, XRF_TEXT)),
    ({"type": "malformed_json"}, lambda s, h, b: s == 200 and not _is_json(b)),
    ({"type": "shape", "remove": ["operational.lastExecutionResult"]},
     lambda s, h, b: "lastExecutionResult" not in json.loads(b)["operational"]),
])
def test_response_faults(sim, action, check):
    add_fault(sim, {"path_re": "^/qrs/reloadtask/"}, action)
    assert check(*sim.qrs("GET", f"/qrs/reloadtask/{SALES}"))


def _is_json(data):
    try:
        json.loads(data)
        return True
    except ValueError:
        return False


def test_transport_faults(sim):
    add_fault(sim, {"path_re": "^/qrs/about$", "times": 1}, {"type": "truncate"})
    with pytest.raises(http.client.IncompleteRead):
        sim.qrs("GET", "/qrs/about")
    add_fault(sim, {"path_re": "^/qrs/about$", "times": 1}, {"type": "slow_body", "bytes_per_sec": 1000, "chunk": 50})
    t0 = time.monotonic()
    status, _, body = sim.qrs("GET", "/qrs/about")
    assert status == 200 and json.loads(body) and time.monotonic() - t0 >= len(body) / 1000 * 0.8
    add_fault(sim, {"path_re": "^/qrs/about$", "times": 1}, {"type": "hang"})
    with pytest.raises(TimeoutError):
        sim.qrs("GET", "/qrs/about", timeout=0.5)
    add_fault(sim, {"times": 1}, {"type": "tls_abort"})
    with pytest.raises(CONNECTION_FAILURES):
        sim.qrs("GET", "/qrs/about")
    assert sim.qrs("GET", "/qrs/about")[0] == 200


# ---- control API ---------------------------------------------------------------

def test_patch_status_fixture_and_config_validation(sim, tmp_path):
    patch(sim, SALES, {"status": 8, "tags": ["weekly"]})
    _, tasks = sim.qrs_json("GET", f"/qrs/task/full?filter=id%20eq%20{SALES}")
    assert tasks[0]["operational"]["lastExecutionResult"]["status"] == 8
    assert [t["name"] for t in tasks[0]["tags"]] == ["weekly"]

    assert sim.control("POST", "/_sim/config", {"no_such_knob": 1})[0] == 400
    bad = {"customPropertyDefinitions": [{"name": "X", "objectTypes": ["App"]}],
           "tasks": [{"name": "T", "taskType": 1, "customProperties": [{"name": "X", "value": "1"}]}]}
    status, body = sim.control("POST", "/_sim/fixture", bad)
    assert status == 400 and "does not apply" in body["error"]
    status, body = sim.control("POST", "/_sim/fixture", {"tasks": [{"name": "Only", "taskType": 2}]})
    assert (status, body["tasks"]) == (200, 1)
    assert names(sim, "") == ["Only"]


def test_bad_fixture_refuses_to_start(tmp_path):
    with pytest.raises(RuntimeError, match="is not defined"):
        with start_qrs_sim(tmp_path, fixture={"tasks": [{"name": "T", "taskType": 2,
                                                         "customProperties": [{"name": "Nope", "value": "x"}]}]}):
            pass


# ---- licences (E16), users for the release rules, version changes ----------------

def _iso_days_ago(days):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - days * 86400))


def _unused_since(sim, kind, days):
    flt = quote(f"lastUsed le '{_iso_days_ago(days)}'", safe="")
    status, body = sim.qrs_json("GET", f"/qrs/license/{kind}accesstype/full?filter={flt}")
    assert status == 200, body
    return body


def test_server_license_has_a_valid_to_line(sim):
    status, body = sim.qrs_json("GET", "/qrs/license")
    assert status == 200 and body["isExpired"] is False and body["schemaPath"] == "License"
    assert "\nValid To: 2027-06-30\n" in body["keyDetails"]


def test_access_type_overview_counts_the_allocations(sim):
    status, body = sim.qrs_json("GET", "/qrs/license/accesstypeoverview")
    assert status == 200
    # sense-interfaces.md 7.1: "...Access" members; "...AccessType" is the older accesstypeinfo.
    assert not [k for k in body if k.endswith("AccessType")]
    pro, analyzer = body["professionalAccess"], body["analyzerAccess"]
    assert (pro["total"], pro["allocated"], pro["used"], pro["quarantined"], pro["available"]) == (10, 8, 7, 1, 2)
    assert (analyzer["total"], analyzer["allocated"], analyzer["available"], analyzer["excess"]) == (5, 4, 1, 0)
    assert body["loginAccess"]["enabled"] is True and body["loginAccess"]["usedTokens"] == 3


def test_allocations_filtered_by_last_use(sim):
    old_pro = _unused_since(sim, "professional", 30)
    assert sorted(a["id"][-2:] for a in old_pro) == ["02", "03", "04", "05", "06", "07", "08"]
    quarantined = [a for a in old_pro if a["quarantined"]]
    assert [a["user"]["userId"] for a in quarantined] == ["quarantined_pro"]
    assert old_pro[0]["schemaPath"] == "License.ProfessionalAccessType"
    assert sorted(a["user"]["userId"] for a in _unused_since(sim, "analyzer", 30)) == \
        ["asmith", "ext_viewer", "old_analyzer"]
    status, _, body = sim.qrs("GET", "/qrs/license/analyzeraccesstype/full?filter="
                              + quote("lastSeen le '2020-01-01'", safe=""))
    assert status == 400 and body.decode().startswith("Cannot parse the expression")


def test_license_endpoints_check_the_xrfkey(sim):
    status, _, body = sim.qrs("GET", "/qrs/license/accesstypeoverview", xrfkey=None)
    assert status == 403 and body == XRF_TEXT


def test_allocation_delete_is_recorded_and_removes_it(sim):
    alloc = "f2000000-0000-4000-8000-000000000002"
    status, _, _ = sim.qrs("DELETE", f"/qrs/license/professionalaccesstype/{alloc}")
    assert status == 204
    call = sim.wait_calls("^/qrs/license/professionalaccesstype/", method="DELETE")[0]
    assert call["route"] == "license.professional.delete" and call["response"]["status"] == 204
    assert sim.qrs("DELETE", f"/qrs/license/professionalaccesstype/{alloc}")[0] == 404
    assert sim.qrs("DELETE", "/qrs/license/professionalaccesstype/not-a-guid")[0] == 400
    assert sim.qrs("GET", f"/qrs/license/professionalaccesstype/{alloc}")[0] == 404
    _, left = sim.control("GET", "/_sim/licenses")
    assert alloc not in [a["id"] for a in left["professional"]] and len(left["professional"]) == 7
    _, body = sim.qrs_json("GET", "/qrs/license/accesstypeoverview")
    assert body["professionalAccess"]["allocated"] == 7
    sim.control("POST", "/_sim/reset")
    assert sim.qrs("GET", f"/qrs/license/professionalaccesstype/{alloc}")[0] == 200


def test_users_carry_tags_custom_properties_and_flags(sim):
    _, users = sim.qrs_json("GET", "/qrs/user/full?filter=" + quote("tags.name eq 'LicenseKeep'", safe=""))
    assert [u["userId"] for u in users] == ["tagged_keep"]
    _, users = sim.qrs_json("GET", "/qrs/user/full?filter=" + quote(
        "customProperties.definition.name eq 'LicenseKeep' and customProperties.value eq 'Yes'", safe=""))
    assert [u["userId"] for u in users] == ["cp_keep"]
    _, user = sim.qrs_json("GET", "/qrs/user/e1000000-0000-4000-8000-000000000005")
    assert user["inactive"] is True and user["blacklisted"] is False
    _, user = sim.qrs_json("GET", "/qrs/user/e1000000-0000-4000-8000-000000000009")
    assert user["blacklisted"] is True and user["removedExternally"] is False


def test_version_changes_through_the_control_api(sim):
    assert sim.qrs_json("GET", "/qrs/about")[1]["buildVersion"] == "14.187.4"
    status, about = sim.control("POST", "/_sim/about", {"buildVersion": "14.195.2"})
    assert status == 200 and about["buildVersion"] == "14.195.2"
    assert sim.qrs_json("GET", "/qrs/about")[1]["buildVersion"] == "14.195.2"
    assert sim.control("POST", "/_sim/about", [])[0] == 400
    sim.control("POST", "/_sim/reset")
    assert sim.qrs_json("GET", "/qrs/about")[1]["buildVersion"] == "14.187.4"
