"""Following a started task run to its end (contract 9.1, issue 26).

A task start with "follow": true uses the synchronous start, answers with each
task's executionId, then publishes exactly one <root>/task/finished/<taskId>
per started execution (and on the v5 Response Topic) once the QRS simulator's
execution session is gone (404) and its execution result says how it ended.
Runs are shaped per task through the simulator's control API (outcomes,
durations, retries); nothing here depends on timings beyond bounded waits.
"""
import json
import os
import re
import signal
import socket
import time
import uuid

import pytest

from conftest import BUTLER_BINARY, TASK_SALES, Butler, wait_until
from test_exactly_once_starts import ADD, PROGRESS, message_record, spool_record
import appender_emu  # noqa: E402  (tests/sim, on the path through conftest)

TASK_FINANCE = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
TASK_HR = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
TASK_DISABLED = "c2d3e4f5-a6b7-4c8d-9e0f-a1b2c3d4e5f6"
TASK_MARKETING = "4e5f6a7b-8c9d-4e0f-9a1b-2c3d4e5f6a7b"
ZERO = "00000000-0000-0000-0000-000000000000"
SHIM = os.path.join(os.environ.get("BUTLER_BUILD_DIR", os.path.dirname(BUTLER_BINARY)),
                    "libbutler_spool_faults.so")
FOLLOW_YAML = "task_start: { follow: { poll_s: 1, timeout_s: 60 } }\n"


def plan(qrs, task_id, **run):
    body = {"run": run}
    if "maxRetries" in run:
        body["maxRetries"] = run.pop("maxRetries")
    status, answer = qrs.control("PATCH", f"/_sim/tasks/{task_id}", body)
    assert status in (200, 204), answer


def calls(qrs):
    _, body = qrs.control("GET", "/_sim/calls")
    return body.get("calls", body) if isinstance(body, dict) else body


def sync_starts(qrs, task_id):
    return [c for c in calls(qrs) if c["path"] == f"/qrs/task/{task_id}/start/synchronous"]


def filter_of(call):
    value = call["query"].get("filter", "")
    return " ".join(value) if isinstance(value, list) else value


def session_polls(qrs, execution_id):
    """Butler's polls of one run's session: GET /qrs/executionsession/{id}, or the list
    GET /qrs/executionsession?filter=id eq A or id eq B ... naming it."""
    return [c for c in calls(qrs)
            if c["path"] == f"/qrs/executionsession/{execution_id}" or
            (c["path"] == "/qrs/executionsession" and
             execution_id in filter_of(c))]


def listed_ids(call):
    """The execution ids one list call asked about."""
    return re.findall(r"id eq ([0-9a-fA-F-]{36})", filter_of(call))


def list_calls(qrs):
    return [c for c in calls(qrs) if c["path"] == "/qrs/executionsession"]


def wait_polled(qrs, execution_id, timeout=10.0):
    wait_until(lambda: session_polls(qrs, execution_id), timeout=timeout)


def start(client, payload, **kwargs):
    request_id = str(uuid.uuid4())
    client.publish("butler/task/start", json.dumps(dict(payload, requestId=request_id, follow=True)),
                   **kwargs)
    return request_id, client.wait_result(request_id)


def finished(client, request_id=None, count=1, timeout=30.0):
    def match(m):
        if not m["topic"].startswith("butler/task/finished/"):
            return False
        return request_id is None or json.loads(m["payload"]).get("requestId") == request_id
    found = client.wait_for(match, timeout=timeout, count=count, what="finished message")
    return [json.loads(m["payload"]) for m in found]


def finished_now(client):
    with client.lock:
        return [json.loads(m["payload"]) for m in client.messages
                if m["topic"].startswith("butler/task/finished/")]


@pytest.fixture
def butler(workdir, broker, qrs):
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    yield b
    code = b.stop()
    assert code == 0, f"butler exit code {code}\n{b.log()[-3000:]}"


@pytest.fixture
def watcher(client):
    client.subscribe("reply/#")  # the fixture's client has butler/# already
    return client


def test_success_is_followed_to_its_end(butler, watcher, qrs):
    plan(qrs, TASK_SALES, outcomes=["success"], durationMs=1500)
    request_id, answer = start(watcher, {"taskId": TASK_SALES}, response_topic="reply/me",
                               correlation=b"c-1")
    assert answer["status"] == "started", answer
    execution_id = answer["started"][0]["executionId"]
    assert execution_id != ZERO and len(execution_id) == 36
    done = finished(watcher, request_id)[0]
    assert done["status"] == "success" and done["statusCode"] == 7
    assert done["executionId"] == execution_id
    assert done["taskId"] == TASK_SALES and done["taskName"] == "Reload Sales Dashboard"
    assert done["durationMs"] >= 1000 and done["startTime"] and done["stopTime"]
    assert "executingNode" in done
    # The same message on the request's Response Topic with its Correlation Data.
    replies = watcher.wait_for(lambda m: m["topic"] == "reply/me" and
                               json.loads(m["payload"]).get("executionId") == execution_id)
    assert replies[0]["correlation"] == b"c-1"
    # Synchronous start used, the session polled until 404, then the result.
    paths = [c["path"] for c in calls(qrs)]
    assert f"/qrs/task/{TASK_SALES}/start/synchronous" in paths
    assert any(p == f"/qrs/executionsession/{execution_id}" for p in paths)
    assert "/qrs/executionresult/full" in paths
    # Exactly one finished message.
    wait_until(lambda: butler.log().count(f"execution {execution_id} of task") >= 1)
    assert len([f for f in finished_now(watcher) if f["executionId"] == execution_id]) == 1, \
        [m["topic"] for m in watcher.messages]


@pytest.mark.parametrize("outcome,status,code", [("fail", "failed", 8), ("abort", "aborted", 6),
                                                 ("skip", "skipped", 9), ("error", "error", 11)])
def test_outcomes_map_to_status(butler, watcher, qrs, outcome, status, code):
    plan(qrs, TASK_FINANCE, outcomes=[outcome], durationMs=300)
    request_id, answer = start(watcher, {"taskId": TASK_FINANCE})
    assert answer["status"] == "started", answer
    done = finished(watcher, request_id)[0]
    assert (done["status"], done["statusCode"]) == (status, code), done
    if status in ("failed", "aborted"):  # the script log's tail comes with these
        assert isinstance(done.get("scriptLogTail"), str) and done["scriptLogTail"].strip(), done
        # The newer call (executionResultId) first; no need for the older one.
        paths = [c["path"] for c in calls(qrs)]
        assert f"/qrs/reloadtask/{TASK_FINANCE}/scriptlogfile" in paths
        assert f"/qrs/reloadtask/{TASK_FINANCE}/scriptlog" not in paths
    else:
        assert "scriptLogTail" not in done


def test_script_log_from_the_older_call_when_the_newer_fails(butler, watcher, qrs):
    plan(qrs, TASK_FINANCE, outcomes=["fail"], durationMs=300)
    qrs.control("POST", "/_sim/faults", {
        "id": "newer404", "match": {"method": "GET", "path_re": "/scriptlogfile$", "times": -1},
        "action": {"type": "status", "status": 404, "body": "Not Found"}})
    request_id, _ = start(watcher, {"taskId": TASK_FINANCE})
    done = finished(watcher, request_id)[0]
    assert done["status"] == "failed" and done["scriptLogTail"].strip()
    paths = [c["path"] for c in calls(qrs)]
    assert paths.index(f"/qrs/reloadtask/{TASK_FINANCE}/scriptlogfile") < \
        paths.index(f"/qrs/reloadtask/{TASK_FINANCE}/scriptlog")


def test_missing_script_log_is_not_an_error(butler, watcher, qrs):
    plan(qrs, TASK_FINANCE, outcomes=["fail"], durationMs=300)
    qrs.control("POST", "/_sim/faults", {
        "id": "nolog", "match": {"method": "GET", "path_re": "^/qrs/reloadtask/.*/scriptlog",
                                 "times": -1},
        "action": {"type": "status", "status": 404, "body": "Not Found"}})
    request_id, _ = start(watcher, {"taskId": TASK_FINANCE})
    done = finished(watcher, request_id)[0]
    assert done["status"] == "failed" and "scriptLogTail" not in done


def test_retries_report_the_newest_result(butler, watcher, qrs):
    """A failing task with 2 retries leaves three results for one execution; the
    older two end in 10 (Retry, not final), so only the newest gives an end."""
    plan(qrs, TASK_HR, outcomes=["fail"], durationMs=200, retryDelayMs=100, maxRetries=2)
    request_id, answer = start(watcher, {"taskId": TASK_HR})
    execution_id = answer["started"][0]["executionId"]
    done = finished(watcher, request_id)[0]
    assert done["status"] == "failed" and done["statusCode"] == 8
    assert done["executionId"] == execution_id
    assert done["durationMs"] < 1000  # the last attempt's, not the whole session's
    assert len(sync_starts(qrs, TASK_HR)) == 1


def test_bare_guid_answer_of_the_synchronous_start(butler, watcher, qrs):
    """sense-interfaces.md 7.2: the synchronous start's body may be a bare JSON string
    (as Qlik's reference page shows) instead of {"value": ..}; the follow works the same,
    and the finished message carries the result's own times and duration."""
    qrs.control("POST", "/_sim/config", {"sync_start_value_shape": "bare"})
    plan(qrs, TASK_FINANCE, outcomes=["success"], durationMs=300)
    request_id, answer = start(watcher, {"taskId": TASK_FINANCE})
    assert answer["status"] == "started", answer
    execution_id = answer["started"][0]["executionId"]
    done = finished(watcher, request_id)[0]
    assert done["executionId"] == execution_id and done["status"] == "success"
    _, results = qrs.qrs_json("GET", "/qrs/executionresult/full?filter=ExecutionId%20eq%20"
                              + execution_id)
    [result] = results
    assert (done["startTime"], done["stopTime"], done["durationMs"]) == \
        (result["startTime"], result["stopTime"], result["duration"])


def test_all_zero_id_is_failed(butler, watcher, qrs):
    request_id, answer = start(watcher, {"taskId": TASK_DISABLED})
    assert answer["status"] == "failed", answer
    assert answer["failed"][0]["taskId"] == TASK_DISABLED
    assert "all-zero" in answer["error"]
    assert not answer["started"]


def test_timeout(workdir, broker, qrs, watcher):
    plan(qrs, TASK_MARKETING, outcomes=["hang"])
    b = Butler(workdir, broker, qrs,
               extra_yaml="task_start: { follow: { poll_s: 1, timeout_s: 2 } }\n").start()
    try:
        request_id, answer = start(watcher, {"taskId": TASK_MARKETING})
        assert answer["status"] == "started"
        done = finished(watcher, request_id)[0]
        assert done["status"] == "timeout" and done["statusCode"] == 2, done
    finally:
        qrs.control("POST", f"/_sim/tasks/{TASK_MARKETING}/complete", {"outcome": "success"})
        assert b.stop() == 0


def follow_a_hanging_run_polled_rarely(workdir, broker, qrs, watcher):
    """A Butler with UDP on and poll_s 300 (no regular poll comes within a test) following
    one start of TASK_SALES, which hangs. Returns (butler, requestId, executionId); the
    caller stops the Butler."""
    plan(qrs, TASK_SALES, outcomes=["hang"], maxRetries=0)
    b = Butler(workdir, broker, qrs, udp=True,
               extra_yaml="task_start: { follow: { poll_s: 300, timeout_s: 3600 } }\n").start()
    try:
        request_id, answer = start(watcher, {"taskId": TASK_SALES})
    except BaseException:
        b.stop()
        raise
    return b, request_id, answer["started"][0]["executionId"]


def test_udp_task_event_ends_the_follow_at_once(workdir, broker, qrs, watcher):
    """A Sense task event (the log appender's datagram) naming a followed run's
    execution id makes the follower look at once, not at its next turn: with
    poll_s 300 the run's end is published long before a regular poll."""
    b, request_id, execution_id = follow_a_hanging_run_polled_rarely(workdir, broker, qrs, watcher)
    try:
        qrs.control("POST", f"/_sim/tasks/{TASK_SALES}/complete", {"outcome": "fail"})
        datagram = appender_emu.render("butler-v15", "task-failed", {
            "task_id": TASK_SALES, "execution_id": execution_id,
            "task_name": "Reload Sales Dashboard"})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(datagram, ("127.0.0.1", b.udp_port))
        done = finished(watcher, request_id, timeout=20)[0]
        assert done["executionId"] == execution_id and done["status"] == "failed", done
        # The event went out as well, and the run ended through the session's 404.
        watcher.wait_for(lambda m: m["topic"] == f"butler/events/task/failed/{TASK_SALES}")
        assert any(c["path"] == f"/qrs/executionsession/{execution_id}" and
                   c["response"]["status"] == 404 for c in calls(qrs) if c["response"])
    finally:
        assert b.stop() == 0
    assert len([f for f in finished_now(watcher) if f["executionId"] == execution_id]) == 1


def test_a_task_event_during_its_runs_poll_is_not_lost(workdir, broker, qrs, watcher):
    """A task event that names a run while that run is being polled (the poll's answer may
    predate the end) makes the follower look again right after the poll. With poll_s 300
    nothing else would look for minutes. Staged: a first event while the run still goes on
    gives ten quick looks; the eleventh session poll is answered "running" and held 2 s on
    its way back (under the QRS timeout of 3 s the tests use), and meanwhile the run fails
    and its failed event arrives."""
    b, request_id, execution_id = follow_a_hanging_run_polled_rarely(workdir, broker, qrs, watcher)
    try:
        qrs.control("POST", "/_sim/faults", {
            "id": "heldpoll", "match": {"method": "GET", "path_re": "^/qrs/executionsession",
                                        "nth": 11, "times": 1},
            "action": {"type": "delay", "ms": 2000, "when": "after_processing"}})
        fields = {"task_id": TASK_SALES, "execution_id": execution_id,
                  "task_name": "Reload Sales Dashboard"}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(appender_emu.render("butler-v15", "task-success", fields),
                        ("127.0.0.1", b.udp_port))
            wait_until(lambda: any(f["id"] == "heldpoll" and f["applied"] >= 1 for f in
                                   qrs.control("GET", "/_sim/faults")[1]["faults"]),
                       timeout=20, message="the eleventh poll held")
            time.sleep(0.3)  # ordering: the held poll's "running" answer is made
            qrs.control("POST", f"/_sim/tasks/{TASK_SALES}/complete", {"outcome": "fail"})
            sock.sendto(appender_emu.render("butler-v15", "task-failed", fields),
                        ("127.0.0.1", b.udp_port))
        done = finished(watcher, request_id, timeout=20)[0]
        assert done["executionId"] == execution_id and done["status"] == "failed", done
    finally:
        assert b.stop() == 0
    assert len([f for f in finished_now(watcher) if f["executionId"] == execution_id]) == 1


def test_follow_by_tag_starts_every_task_and_follows_each(butler, watcher, qrs):
    plan(qrs, TASK_SALES, outcomes=["success"], durationMs=300)
    plan(qrs, TASK_FINANCE, outcomes=["fail"], durationMs=300)
    request_id, answer = start(watcher, {"tag": "nightly"})
    # Legacy Budget is tagged too but disabled: all-zero id -> failed; the others started.
    assert answer["status"] == "partial", answer
    started = {s["taskId"]: s["executionId"] for s in answer["started"]}
    assert set(started) == {TASK_SALES, TASK_FINANCE}
    done = finished(watcher, request_id, count=2)
    assert {d["taskId"]: d["status"] for d in done} == {TASK_SALES: "success",
                                                        TASK_FINANCE: "failed"}


def test_follow_must_be_boolean(butler, watcher):
    request_id = str(uuid.uuid4())
    watcher.publish("butler/task/start",
                    json.dumps({"taskId": TASK_SALES, "requestId": request_id, "follow": "yes"}))
    answer = watcher.wait_result(request_id)
    assert answer["status"] == "invalid" and "follow" in answer["error"]


def test_max_follows_refuses_and_starts_nothing(workdir, broker, qrs, watcher):
    plan(qrs, TASK_MARKETING, outcomes=["hang"])
    b = Butler(workdir, broker, qrs,
               extra_yaml="task_start: { follow: { poll_s: 1, max: 1 } }\n").start()
    try:
        _, first = start(watcher, {"taskId": TASK_MARKETING})
        assert first["status"] == "started"
        _, second = start(watcher, {"taskId": TASK_SALES})
        assert second["status"] == "failed" and "task_start.follow.max" in second["error"]
        assert not any(c["path"].startswith(f"/qrs/task/{TASK_SALES}/start") for c in calls(qrs))
    finally:
        qrs.control("POST", f"/_sim/tasks/{TASK_MARKETING}/complete", {"outcome": "success"})
        assert b.stop() == 0


def test_qrs_failures_are_retried_and_the_follow_kept(butler, watcher, qrs):
    plan(qrs, TASK_SALES, outcomes=["success"], durationMs=1500)
    status, _ = qrs.control("POST", "/_sim/faults", {
        "id": "sess500", "match": {"method": "GET", "path_re": "^/qrs/executionsession/",
                                   "times": 3},
        "action": {"type": "status", "status": 503, "body": "{}"}})
    assert status in (200, 201)
    qrs.control("POST", "/_sim/faults", {
        "id": "resgarbage", "match": {"method": "GET", "path_re": "^/qrs/executionresult",
                                      "times": 2},
        "action": {"type": "malformed_json"}})
    request_id, answer = start(watcher, {"taskId": TASK_SALES})
    assert answer["status"] == "started"
    done = finished(watcher, request_id, timeout=60)[0]
    assert done["status"] == "success"


def test_sigkill_mid_follow_resumes_with_exactly_one_message(workdir, broker, qrs, watcher):
    tasks = [TASK_SALES, TASK_FINANCE, TASK_HR]
    for t in tasks:
        plan(qrs, t, outcomes=["hang"])
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    ids = {}
    for t in tasks:
        request_id, answer = start(watcher, {"taskId": t})
        ids[answer["started"][0]["executionId"]] = request_id
    # Polled at least once each, then killed mid-follow.
    for execution_id in ids:
        wait_polled(qrs, execution_id)
    b.stop(sig=signal.SIGKILL)
    # One run ends while Butler is down: found through executionresult after the restart.
    qrs.control("POST", f"/_sim/tasks/{TASK_HR}/complete", {"outcome": "fail"})
    offset = len(b.log())
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    try:
        wait_until(lambda: "resuming 3 followed task run(s)" in b.log()[offset:])
        done = finished(watcher, count=1, timeout=30)
        assert [d["taskId"] for d in done] == [TASK_HR] and done[0]["status"] == "failed"
        for t in (TASK_SALES, TASK_FINANCE):
            qrs.control("POST", f"/_sim/tasks/{t}/complete", {"outcome": "success"})
        done = finished(watcher, count=3, timeout=30)
        assert sorted(d["executionId"] for d in done) == sorted(ids)
        assert {d["executionId"]: d["requestId"] for d in done} == ids
    finally:
        assert b.stop() == 0
    # Nothing more after another restart: each follow was marked done.
    restart_resumes_nothing(workdir, broker, qrs, b)
    assert len(finished_now(watcher)) == 3


def restart_resumes_nothing(workdir, broker, qrs, previous):
    """Start Butler once more on the same state: every follow was marked done,
    so it resumes none (its log since `previous` stopped says no "resuming")."""
    offset = len(previous.log())
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    try:
        assert "resuming" not in b.log()[offset:]
    finally:
        assert b.stop() == 0


def butler_with_spool_faults(workdir, broker, qrs):
    """Butler under the spool-faults shim (tests/shim/spool_faults.c): the test
    turns switches on and off in the returned directory."""
    assert os.path.exists(SHIM), f"{SHIM} not built"
    faults_dir = os.path.join(workdir, "faults")
    os.makedirs(faults_dir, exist_ok=True)
    env = {"LD_PRELOAD": SHIM, "BUTLER_SPOOL_FAULTS": faults_dir,
           # Under ASan the shim comes before the runtime in the preload list.
           "ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                  "verify_asan_link_order=0"]))}
    return Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML, env=env).start(), faults_dir


def test_sigkill_before_the_follow_is_recorded(workdir, broker, qrs, watcher):
    """Killed after QRS started the run (the synchronous start answered) but
    before the follow record reached the spool: the spool then holds the
    request with its attempt note only. The shim stalls the follow record's
    write (an ADD) so the kill lands in that window. After the restart the
    replay finds the run in QRS by task and time, answers with its
    executionId ("replay": "verified") and follows it to one finished
    message; the task is not started again. Before the fix the answer had no
    executionId and the run's end was never published."""
    plan(qrs, TASK_SALES, outcomes=["success"], durationMs=2000)
    # The answer waits a little, so the stall is on before the worker writes.
    qrs.control("POST", "/_sim/faults", {
        "id": "slow-sync", "match": {"method": "POST", "path_re": "/start/synchronous$",
                                     "times": 1},
        "action": {"type": "delay", "ms": 1000, "when": "after_processing"}})
    b, faults_dir = butler_with_spool_faults(workdir, broker, qrs)
    request_id = str(uuid.uuid4())
    watcher.publish("butler/task/start",
                    json.dumps({"taskId": TASK_SALES, "requestId": request_id, "follow": True}))
    # The simulator counts the start when it handles the call, before the
    # delayed answer: the request is in the spool and the worker waits on QRS.
    wait_until(lambda: qrs.control("GET", "/_sim/stats")[1]["starts"] == 1,
               message="the synchronous start to reach QRS")
    open(os.path.join(faults_dir, "stall"), "w").close()
    wait_until(lambda: any(c.get("response") for c in sync_starts(qrs, TASK_SALES)),
               message="the synchronous start answered")
    time.sleep(0.5)  # the worker reaches the follow record's write and stalls there
    b.stop(sig=signal.SIGKILL)
    assert not watcher.results(request_id), "answered before the follow was recorded"
    os.remove(os.path.join(faults_dir, "stall"))
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    try:
        answer = watcher.wait_result(request_id, timeout=30)
        assert answer["status"] == "started", answer
        entry = answer["started"][0]
        assert entry.get("replay") == "verified" and len(entry.get("executionId", "")) == 36, entry
        done = finished(watcher, request_id)[0]
        assert done["status"] == "success" and done["executionId"] == entry["executionId"]
        assert qrs.control("GET", "/_sim/stats")[1]["starts"] == 1, "started again"
        wait_until(lambda: f"execution {entry['executionId']} of task {TASK_SALES} ended"
                   in b.log())
    finally:
        assert b.stop() == 0
    assert len([f for f in finished_now(watcher) if f["requestId"] == request_id]) == 1


def test_follow_record_refused_still_publishes_the_end(workdir, broker, qrs, watcher):
    """The spool refuses the follow record (the shim fails ADD writes with
    ENOSPC once the request itself is spooled): the run is followed from
    memory, so its finished message still goes out (a restart before the end
    would lose it; docs/guarantees.md). Before, the run was never followed."""
    plan(qrs, TASK_SALES, outcomes=["success"], durationMs=500)
    qrs.control("POST", "/_sim/faults", {
        "id": "slow-sync", "match": {"method": "POST", "path_re": "/start/synchronous$",
                                     "times": 1},
        "action": {"type": "delay", "ms": 1000, "when": "after_processing"}})
    b, faults_dir = butler_with_spool_faults(workdir, broker, qrs)
    try:
        request_id = str(uuid.uuid4())
        watcher.publish("butler/task/start",
                        json.dumps({"taskId": TASK_SALES, "requestId": request_id,
                                    "follow": True}))
        wait_until(lambda: qrs.control("GET", "/_sim/stats")[1]["starts"] == 1,
                   message="the synchronous start to reach QRS")
        open(os.path.join(faults_dir, "enospc_add"), "w").close()
        answer = watcher.wait_result(request_id)
        assert answer["status"] == "started", answer
        done = finished(watcher, request_id)[0]
        assert done["status"] == "success"
        assert done["executionId"] == answer["started"][0]["executionId"]
        assert "followed from memory only" in b.log()
    finally:
        assert b.stop() == 0


@pytest.mark.parametrize("task_id,execution_id,status", [
    (TASK_SALES, "7b3c1d2e-4f5a-4b6c-8d7e-9f0a1b2c3d4e", "started"),
    (TASK_DISABLED, ZERO, "failed")])
def test_replay_answers_the_noted_execution_id(workdir, broker, qrs, watcher, task_id,
                                               execution_id, status):
    """Killed after a followed start's "started" note but before the answer,
    with the follow itself already finished (its record done, so no record to
    read the id from; a crafted spool): the "started" note carries the
    execution id, so the replay's answer has it and the task is not started
    again. An all-zero id noted is answered "failed", as the first time.
    Before the fix the note had no id: the answer lacked the executionId, and
    the disabled task was answered "started"."""
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    assert b.stop() == 0
    now_ms = int(time.time() * 1000)
    request_id = str(uuid.uuid4())
    request = json.dumps({"taskId": task_id, "requestId": request_id, "follow": True}).encode()
    with open(os.path.join(workdir, "state", "spool.log"), "wb") as f:
        f.write(spool_record(ADD, 1, now_ms - 3000, message_record(
            "task_start", "butler/task/start", request, now_ms - 3000)))
        f.write(spool_record(PROGRESS, 1, now_ms - 2900, f"attempt {task_id}".encode()))
        f.write(spool_record(PROGRESS, 1, now_ms - 2800,
                             f"started {task_id} {execution_id}".encode()))
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    try:
        answer = watcher.wait_result(request_id, timeout=30)
    finally:
        assert b.stop() == 0
    assert answer["status"] == status, answer
    if status == "started":
        assert answer["started"][0]["executionId"] == execution_id, answer
    else:
        assert answer["failed"][0]["taskId"] == task_id and "all-zero" in answer["error"]
    assert not any(c["path"].startswith(f"/qrs/task/{task_id}/start") for c in calls(qrs))


def test_sigkill_between_puback_and_done_repeats_once(workdir, broker, qrs, watcher):
    """The one window left open (docs/guarantees.md): the broker acknowledged
    the finished message but the follow's DONE record is not in the spool when
    Butler dies. The shim refuses the DONE (enospc), so after the PUBACK the
    spool still holds the follow, as if killed between the two; then SIGKILL.
    After the restart the message goes out once more, identical (same
    executionId, status, times); after a further restart no third copy."""
    plan(qrs, TASK_FINANCE, outcomes=["hang"])
    b, faults_dir = butler_with_spool_faults(workdir, broker, qrs)
    request_id, answer = start(watcher, {"taskId": TASK_FINANCE})
    execution_id = answer["started"][0]["executionId"]
    # Polled once: the request's own DONE (written right after its answer) is in.
    wait_polled(qrs, execution_id)
    open(os.path.join(faults_dir, "enospc"), "w").close()
    qrs.control("POST", f"/_sim/tasks/{TASK_FINANCE}/complete", {"outcome": "fail"})
    first = finished(watcher, request_id)[0]
    wait_until(lambda: f"execution {execution_id} of task {TASK_FINANCE} ended" in b.log(),
               message="the follow ended (its DONE refused)")
    b.stop(sig=signal.SIGKILL)
    os.remove(os.path.join(faults_dir, "enospc"))
    offset = len(b.log())
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    try:
        assert "resuming 1 followed task run(s)" in b.log()[offset:]
        both = finished(watcher, request_id, count=2)
        assert both[1] == first, (first, both[1])
        assert first["executionId"] == execution_id and first["status"] == "failed"
        assert first["startTime"] and first["stopTime"] and first["scriptLogTail"]
        wait_until(lambda: b.log()[offset:].count(f"execution {execution_id} of task") >= 1)
    finally:
        assert b.stop() == 0
    restart_resumes_nothing(workdir, broker, qrs, b)
    assert len([f for f in finished_now(watcher) if f["requestId"] == request_id]) == 2


def test_many_followed_runs_at_once(workdir, broker, qrs, watcher):
    """200 follows with one request each: every one gets exactly one finished message."""
    namespace = uuid.UUID("6d1f0c52-7a1e-4f38-9b2d-4c1e8a7f3b61")
    with open(os.path.join(os.path.dirname(__file__), "..", "sim", "fixture.json")) as f:
        fixture = json.load(f)
    app_id = fixture["tasks"][0]["appId"] if "appId" in fixture["tasks"][0] else None
    tasks = [{"id": str(uuid.uuid5(namespace, str(i))), "name": f"Follow {i}", "taskType": 0,
              "appId": app_id or fixture["apps"][0]["id"], "tags": ["many"],
              "customProperties": [], "run": {"durationMs": 2000 + 10 * i}}
             for i in range(200)]
    fixture["tasks"] = tasks
    status, body = qrs.control("POST", "/_sim/fixture", fixture)
    assert status in (200, 204), body
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    try:
        request_id, answer = start(watcher, {"tag": "many"})
        assert answer["status"] == "started" and len(answer["started"]) == 200
        done = finished(watcher, request_id, count=200, timeout=120)
        assert len({d["executionId"] for d in done}) == 200
        assert all(d["status"] == "success" for d in done)
        # Runs due together were asked about together.
        assert any(len(listed_ids(c)) >= 2 for c in list_calls(qrs))
        assert all(len(listed_ids(c)) <= 32 for c in list_calls(qrs))
    finally:
        assert b.stop() == 0
    assert len(finished_now(watcher)) == 200


def test_synchronous_start_answered_late_is_not_sent_again(butler, watcher, qrs):
    """QRS starts the task on the first synchronous call but answers past
    qrs.timeout_ms (3 s). Before sending the start again Butler asks QRS for a
    run of the task created since its first attempt and takes that run's
    execution id: one run in the simulator, one finished message, with the id
    the simulator gave the run. Without the check the start went out twice."""
    plan(qrs, TASK_SALES, outcomes=["success"], durationMs=1500)
    qrs.control("POST", "/_sim/faults", {
        "id": "late-sync", "match": {"method": "POST", "path_re": "/start/synchronous$",
                                     "times": 1},
        "action": {"type": "delay", "ms": 4000, "when": "after_processing"}})
    request_id, answer = start(watcher, {"taskId": TASK_SALES})
    assert answer["status"] == "started", answer
    execution_id = answer["started"][0]["executionId"]
    done = finished(watcher, request_id)[0]
    assert done["status"] == "success" and done["executionId"] == execution_id
    # The simulator's own count: the first call started the task.
    assert qrs.control("GET", "/_sim/stats")[1]["starts"] == 1, "the start was sent again"
    assert len(sync_starts(qrs, TASK_SALES)) == 1
    # The id is that run's: QRS knew its session and result (an id it never
    # heard of ends as "error"), and the lookup asked for runs since the attempt.
    lookups = [c for c in calls(qrs) if c["path"] == "/qrs/executionresult/full" and
               "taskID eq" in (c["query"].get("filter") or [""])[0]]
    assert len(lookups) == 1, lookups
    assert "not sending the start again" in butler.log()
    wait_until(lambda: f"execution {execution_id} of task {TASK_SALES} ended" in butler.log())
    assert len([f for f in finished_now(watcher) if f["requestId"] == request_id]) == 1


def test_synchronous_start_behind_a_gateway_502_is_not_sent_again(butler, watcher, qrs):
    """A gateway forwards the synchronous start (the task starts) and answers
    502 with an HTML page itself. The check before the resend finds the run;
    the page of the failed attempt is not read as the start's answer (it was:
    the start was then "failed" though the run went on, and nobody followed it)."""
    plan(qrs, TASK_SALES, outcomes=["success"], durationMs=500)
    qrs.control("POST", "/_sim/faults", {
        "id": "gateway", "match": {"method": "POST", "path_re": "/start/synchronous$",
                                   "times": 1},
        "action": {"type": "status", "status": 502, "body": "<html>Bad Gateway</html>",
                   "content_type": "text/html", "when": "after_processing"}})
    request_id, answer = start(watcher, {"taskId": TASK_SALES})
    assert answer["status"] == "started", answer
    done = finished(watcher, request_id)[0]
    assert done["status"] == "success"
    assert done["executionId"] == answer["started"][0]["executionId"]
    assert qrs.control("GET", "/_sim/stats")[1]["starts"] == 1, "the start was sent again"


def start_four_held_behind_a_slow_poll(qrs, watcher):
    """Four hanging runs followed at poll_s 1 while Butler's first session poll takes
    2.5 s: the others fall due meanwhile and are asked about in one list call after it
    (or already were, when their first polls fell together). Returns {executionId: taskId}."""
    qrs.control("POST", "/_sim/faults", {
        "id": "slowpoll", "match": {"method": "GET", "path_re": "^/qrs/executionsession",
                                    "times": 1},
        "action": {"type": "delay", "ms": 2500}})
    tasks = [TASK_SALES, TASK_FINANCE, TASK_HR, TASK_MARKETING]
    for t in tasks:
        plan(qrs, t, outcomes=["hang"])
    runs = {}
    for t in tasks:
        _, answer = start(watcher, {"taskId": t})
        runs[answer["started"][0]["executionId"]] = t
    return runs


def test_runs_due_together_are_polled_with_one_list_call(butler, watcher, qrs):
    """GET /qrs/executionsession?filter=id eq A or id eq B ... asks about every run due in
    one call; a run missing from the answer has ended (as a 404 of its session says) and
    is looked up, the others go on. Each run still ends once, with its own status."""
    runs = start_four_held_behind_a_slow_poll(qrs, watcher)
    wait_until(lambda: any(len(set(listed_ids(c)) & set(runs)) >= 2 for c in list_calls(qrs)),
               timeout=15)
    outcomes = {TASK_SALES: "success", TASK_FINANCE: "fail", TASK_HR: "abort",
                TASK_MARKETING: "success"}
    before = max(c["seq"] for c in calls(qrs))
    for task_id, outcome in outcomes.items():
        qrs.control("POST", f"/_sim/tasks/{task_id}/complete", {"outcome": outcome})
    done = finished(watcher, count=4, timeout=30)
    assert {d["taskId"]: d["status"] for d in done} == {
        TASK_SALES: "success", TASK_FINANCE: "failed", TASK_HR: "aborted",
        TASK_MARKETING: "success"}
    assert {d["executionId"] for d in done} == set(runs)
    # Runs polled in step after the slow poll were asked about together once they had
    # ended: the list left them out and that alone ended their follows.
    assert any(c["seq"] > before and len(set(listed_ids(c)) & set(runs)) >= 2
               for c in list_calls(qrs))
    assert len(finished_now(watcher)) == 4


def test_a_session_list_that_keeps_failing_still_sees_the_ends(workdir, broker, qrs, watcher):
    """The list answers 500 for good (a 5xx is not a refusal of the form): each round then
    asks every session on its own, so the runs end with their real status, not `timeout`."""
    b = Butler(workdir, broker, qrs,
               extra_yaml="task_start: { follow: { poll_s: 1, timeout_s: 20 } }\n").start()
    try:
        runs = start_four_held_behind_a_slow_poll(qrs, watcher)
        wait_until(lambda: any(len(set(listed_ids(c)) & set(runs)) >= 2
                               for c in list_calls(qrs)), timeout=15)
        qrs.control("POST", "/_sim/faults", {
            "id": "list500", "match": {"method": "GET", "path_re": "^/qrs/executionsession$",
                                       "times": -1},
            "action": {"type": "status", "status": 500, "body": "x"}})
        for task_id in runs.values():
            qrs.control("POST", f"/_sim/tasks/{task_id}/complete", {"outcome": "success"})
        done = finished(watcher, count=4, timeout=15)
        assert {d["executionId"]: d["status"] for d in done} == {e: "success" for e in runs}
    finally:
        assert b.stop() == 0
    assert len(finished_now(watcher)) == 4


def test_a_run_a_shared_result_answer_lacks_is_asked_about_alone(butler, watcher, qrs):
    """Three shared result answers come back empty as four runs end together: each run's
    result is then asked for alone, and a miss counts against that run only, so none ends as
    `error` (three misses per run are allowed)."""
    runs = start_four_held_behind_a_slow_poll(qrs, watcher)
    wait_until(lambda: any(len(set(listed_ids(c)) & set(runs)) >= 2 for c in list_calls(qrs)),
               timeout=15)
    qrs.control("POST", "/_sim/faults", {
        "id": "noresults", "match": {"method": "GET", "path_re": "^/qrs/executionresult/full$",
                                     "times": 3},
        "action": {"type": "shape", "json": []}})
    outcomes = {TASK_SALES: ("fail", "failed"), TASK_FINANCE: ("abort", "aborted"),
                TASK_HR: ("success", "success"), TASK_MARKETING: ("fail", "failed")}
    for task_id, (outcome, _) in outcomes.items():
        qrs.control("POST", f"/_sim/tasks/{task_id}/complete", {"outcome": outcome})
    done = finished(watcher, count=4, timeout=30)
    assert {d["taskId"]: d["status"] for d in done} == {t: st for t, (_, st) in outcomes.items()}
    assert len(finished_now(watcher)) == 4


@pytest.mark.parametrize("refusal", [400, 404])
def test_a_refused_session_list_falls_back_to_one_call_per_run(workdir, broker, qrs, watcher,
                                                               refusal):
    """A QRS (or a proxy before it) that refuses the list form: Butler polls each session
    on its own from then on, counts and logs it, and every run still ends once."""
    qrs.control("POST", "/_sim/faults", {
        "id": "nolist", "match": {"method": "GET", "path_re": "^/qrs/executionsession$"},
        "action": {"type": "status", "status": refusal, "body": "Bad Request"}})
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML, http_yaml=[]).start()
    try:
        runs = start_four_held_behind_a_slow_poll(qrs, watcher)
        wait_until(lambda: "polling each session on its own" in b.log(), timeout=15)
        for execution_id in runs:
            wait_until(lambda: any(c["path"] == f"/qrs/executionsession/{execution_id}"
                                   for c in calls(qrs)), timeout=10)
        for task_id in runs.values():
            qrs.control("POST", f"/_sim/tasks/{task_id}/complete", {"outcome": "success"})
        done = finished(watcher, count=4, timeout=30)
        assert {d["executionId"] for d in done} == set(runs)
        assert all(d["status"] == "success" for d in done)
        assert len(list_calls(qrs)) == 1  # not asked again after the refusal
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics", timeout=10) as r:
            assert "butler_task_follow_session_list_refused_total 1" in r.read().decode()
    finally:
        assert b.stop() == 0


def test_session_qrs_never_heard_of_ends_as_error(butler, watcher, qrs):
    """The synchronous start answers an id QRS knows nothing of: the session is
    404 and no result has it, so the follow ends as `error` with the reason."""
    unknown = "9f9f9f9f-1111-4222-8333-444455556666"
    qrs.control("POST", "/_sim/faults", {
        "id": "unknownsid", "match": {"method": "POST", "path_re": "/start/synchronous$",
                                      "times": 1},
        "action": {"type": "status", "status": 201, "body": json.dumps({"value": unknown}),
                   "content_type": "application/json"}})
    request_id, answer = start(watcher, {"taskId": TASK_HR})
    assert answer["started"][0]["executionId"] == unknown
    done = finished(watcher, request_id)[0]
    assert done["status"] == "error" and done["statusCode"] is None
    assert "neither" in done["error"]


# ---- HTTP ?wait=finished ----------------------------------------------------------

def http_call(port, method, path, body=None, timeout=60.0):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def test_http_wait_finished_answers_200_with_the_runs_ends(workdir, broker, qrs, watcher):
    plan(qrs, TASK_SALES, outcomes=["fail"], durationMs=1000)
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML,
               http_yaml=["task_start_timeout_ms: 8000"]).start()
    try:
        status, body = http_call(b.http_port, "PUT",
                                 f"/v4/reloadtask/{TASK_SALES}/start?wait=finished")
        assert status == 200, body
        assert body["tasksId"]["started"][0]["taskId"] == TASK_SALES
        assert len(body["finished"]) == 1
        done = body["finished"][0]
        assert done["status"] == "failed" and done["taskId"] == TASK_SALES
        assert done["requestId"] == body["requestId"]
        # The same end went out on MQTT, once.
        finished(watcher, body["requestId"])
        # Several tasks by typed items on "-": every run's end is in the answer.
        plan(qrs, TASK_FINANCE, outcomes=["success"], durationMs=500)
        status, body = http_call(b.http_port, "POST", "/v4/reloadtask/-/start?wait=finished",
                                 [{"type": "starttaskid", "payload": {"taskId": TASK_FINANCE}},
                                  {"type": "starttaskid", "payload": {"taskId": TASK_HR}}])
        assert status == 200, body
        assert {d["taskId"]: d["status"] for d in body["finished"]} == {
            TASK_FINANCE: "success", TASK_HR: "success"}
        status, body = http_call(b.http_port, "PUT",
                                 f"/v4/reloadtask/{TASK_SALES}/start?wait=soon")
        assert status == 400
    finally:
        assert b.stop() == 0


def test_http_wait_finished_answers_202_after_the_timeout(workdir, broker, qrs, watcher):
    plan(qrs, TASK_MARKETING, outcomes=["hang"])
    b = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML,
               http_yaml=["task_start_timeout_ms: 8000", "task_finish_timeout_s: 2"]).start()
    try:
        status, body = http_call(b.http_port, "POST",
                                 f"/v4/reloadtask/{TASK_MARKETING}/start?wait=finished")
        assert status == 202, body
        assert len(body["executionIds"]) == 1 and body["requestId"]
        # The run ends later: its finished message still goes out on MQTT.
        qrs.control("POST", f"/_sim/tasks/{TASK_MARKETING}/complete", {"outcome": "success"})
        done = finished(watcher, body["requestId"])[0]
        assert done["executionId"] == body["executionIds"][0] and done["status"] == "success"
    finally:
        assert b.stop() == 0
