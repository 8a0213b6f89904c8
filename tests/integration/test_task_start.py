"""Task start over MQTT, end to end: real broker, real butler, QRS simulator.

Every case of contract 3.1: each payload form, the topic form, requestId echo and
de-duplication, the allow-list, the Response Topic with Correlation Data, the
legacy topic, hostile payloads, QRS failures with a dead letter, and a broker
restart.
"""
import json
import os
import signal
import uuid

import pytest

from conftest import TASK_SALES, TIMEOUT_SCALE, Butler, Client, start_calls, wait_until

TASK_FINANCE_TAGGED = "nightly"
UNKNOWN_TASK = "0b0b0b0b-1111-4222-8333-444455556666"


@pytest.fixture
def butler(workdir, broker, qrs):
    b = Butler(workdir, broker, qrs).start()
    yield b
    code = b.stop()
    assert code == 0, f"butler exit code {code}\n{b.log()[-3000:]}"


def request(client, payload, request_id=None, topic="butler/task/start", **kwargs):
    if request_id is None:
        request_id = str(uuid.uuid4())
    if isinstance(payload, dict):
        payload = dict(payload, requestId=request_id)
        payload = json.dumps(payload)
    client.publish(topic, payload, **kwargs)
    return request_id


def test_status_online_retained_and_offline_on_stop(workdir, broker, qrs, client):
    b = Butler(workdir, broker, qrs).start()
    online = client.wait_for(lambda m: m["topic"] == "butler/status"
                             and json.loads(m["payload"])["state"] == "online")
    body = json.loads(online[0]["payload"])
    assert body["version"] and body["startedAt"]
    assert b.stop() == 0
    client.wait_for(lambda m: m["topic"] == "butler/status"
                    and json.loads(m["payload"])["state"] == "offline")
    # A late subscriber sees the retained state.
    late = Client(broker)
    late.subscribe("butler/status")
    late.wait_for(lambda m: m["retain"] and json.loads(m["payload"])["state"] == "offline")
    late.close()


def test_bare_guid_starts_task(butler, client, qrs):
    client.publish("butler/task/start", TASK_SALES)
    result = json.loads(client.wait_for(lambda m: m["topic"] == "butler/task/result")[0]["payload"])
    assert result["status"] == "started"
    assert result["started"][0]["taskId"] == TASK_SALES
    assert result["started"][0]["taskName"] == "Reload Sales Dashboard"
    assert len(result["requestId"]) == 36  # generated
    assert len(start_calls(qrs, TASK_SALES)) == 1


def test_json_forms(butler, client, qrs):
    rid = request(client, {"taskId": TASK_SALES})
    assert client.wait_result(rid)["status"] == "started"

    rid = request(client, {"taskName": "Reload Sales Dashboard"})
    result = client.wait_result(rid)
    assert result["status"] == "started"
    assert [t["taskId"] for t in result["started"]] == [TASK_SALES]

    rid = request(client, {"tag": "nightly"})
    result = client.wait_result(rid)
    assert result["status"] == "started"
    assert len(result["started"]) >= 2, result
    assert all(t["via"] == "tag" for t in result["started"])

    rid = request(client, {"customProperty": {"name": "Department", "value": "HR"}})
    result = client.wait_result(rid)
    assert result["status"] == "started", result
    assert len(result["started"]) >= 1
    assert len(start_calls(qrs)) >= 5


def test_topic_form_and_typed_items(butler, client, qrs):
    client.publish(f"butler/task/start/{TASK_SALES}", "")
    client.wait_for(lambda m: m["topic"] == "butler/task/result"
                    and json.loads(m["payload"])["status"] == "started")
    items = [
        {"type": "starttaskid", "payload": {"taskId": TASK_SALES}},
        {"type": "starttaskid", "payload": {"taskId": UNKNOWN_TASK}},
        {"type": "starttasktag", "payload": {"tag": "nightly"}},
        {"type": "keyvaluestore", "payload": {"namespace": "chain", "key": "run", "value": "42",
                                              "ttl": 60000}},
    ]
    client.publish("butler/task/start", json.dumps(items))
    result = json.loads(client.wait_for(
        lambda m: m["topic"] == "butler/task/result"
        and json.loads(m["payload"])["status"] == "partial")[0]["payload"])
    assert {"taskId": UNKNOWN_TASK} in result["invalid"]
    assert any(t["taskId"] == TASK_SALES for t in result["started"])
    # The key-value was stored before the tasks started, as a retained message.
    kv = client.wait_for(lambda m: m["topic"] == "butler/kv/chain/run")
    assert json.loads(kv[0]["payload"])["value"] == "42"


def test_more_tasks_than_the_inline_slots(butler, client, qrs):
    """One request choosing every task of the fixture (more than the 8 slots a request
    holds before it grows onto the heap): each is started once and answered once."""
    with open(os.path.join(os.path.dirname(__file__), "..", "sim", "fixture.json")) as f:
        task_ids = [t["id"] for t in json.load(f)["tasks"]]
    assert len(task_ids) > 8
    items = [{"type": "starttaskid", "payload": {"taskId": i}} for i in task_ids]
    items.append({"type": "starttaskid", "payload": {"taskId": task_ids[0]}})  # chosen once
    client.publish("butler/task/start", json.dumps(items))
    result = json.loads(client.wait_for(
        lambda m: m["topic"] == "butler/task/result"
        and len(json.loads(m["payload"])["started"]) > 0)[0]["payload"])
    answered = [t["taskId"] for key in ("started", "invalid", "failed", "denied")
                for t in result.get(key, []) if "taskId" in t]
    assert sorted(answered) == sorted(task_ids), result
    for task_id in (t["taskId"] for t in result["started"]):
        assert len(start_calls(qrs, task_id)) == 1, task_id
    # Not followed: no entry carries an executionId (the heap slots past the inline
    # ones once carried whatever malloc left there).
    assert not [t for t in result["started"] if "executionId" in t], result


def test_response_topic_and_correlation(butler, client, qrs):
    client.subscribe("replies/#")
    rid = request(client, {"taskId": TASK_SALES}, response_topic="replies/me",
                  correlation=b"\x01corr")
    reply = client.wait_for(lambda m: m["topic"] == "replies/me")[0]
    assert reply["correlation"] == b"\x01corr"
    assert json.loads(reply["payload"])["requestId"] == rid
    assert len(client.results(rid)) == 1


def test_duplicate_request_id_starts_once(butler, client, qrs):
    rid = str(uuid.uuid4())
    for _ in range(3):
        request(client, {"taskId": TASK_SALES}, request_id=rid)
    client.wait_for(lambda m: m["topic"] == "butler/task/result"
                    and json.loads(m["payload"])["requestId"] == rid, count=1)
    wait_until(lambda: "already seen" in butler.log(), message="duplicates noticed")
    wait_until(lambda: butler.log().count("already seen") >= 2, message="both duplicates")
    assert len(start_calls(qrs, TASK_SALES)) == 1
    answers = client.results(rid)
    assert all(a == answers[0] for a in answers)


def test_repeat_after_answer_and_restart_gets_the_same_answer(workdir, broker, qrs, client):
    """The requestId window keeps only a reference to the answer, which is read
    back from the spool when a request repeats: after the answer, and after a
    restart."""
    butler = Butler(workdir, broker, qrs).start()
    rid = str(uuid.uuid4())
    request(client, {"taskId": TASK_SALES}, request_id=rid)
    first = client.wait_result(rid)
    assert first["status"] == "started"
    def repeated(count):
        # A repeat that overtakes the broker's acknowledgement of the first
        # answer finds it not yet recorded and is not answered (the first
        # answer is on its way): repeat until one is.
        for _ in range(10):
            request(client, {"taskId": TASK_SALES}, request_id=rid)
            try:
                return wait_until(lambda: len(client.results(rid)) >= count and client.results(rid),
                                  timeout=2, message=f"answer {count}")
            except AssertionError:
                continue
        raise AssertionError("a repeated request was never answered")
    answers = repeated(2)
    assert answers[-1] == first
    assert butler.stop() == 0
    butler.start()
    answers = repeated(3)
    assert answers[-1] == first
    assert len(start_calls(qrs, TASK_SALES)) == 1
    assert butler.stop() == 0


@pytest.mark.parametrize("payload,needle", [
    (b"{not json", "not valid JSON"),
    (b"\xc0\xaf\xff", "UTF-8"),
    (b"x" * (1024 * 1024 + 10), "limit"),
    (b"{\"taskId\": \"task-123\"}", "not a valid task selector"),
    (b"[{\"type\": \"rm -rf\", \"payload\": {}}]", "unknown item type"),
    (b"", "empty payload"),
], ids=["malformed-json", "invalid-utf8", "one-megabyte", "non-guid", "unknown-type", "empty"])
def test_hostile_payloads_are_answered_invalid(butler, client, qrs, payload, needle):
    client.publish("butler/task/start", payload)
    result = json.loads(client.wait_for(lambda m: m["topic"] == "butler/task/result")[0]["payload"])
    assert result["status"] == "invalid"
    assert needle in result["error"], result
    assert start_calls(qrs) == []
    # Still alive and working.
    rid = request(client, {"taskId": TASK_SALES})
    assert client.wait_result(rid)["status"] == "started"


def test_unknown_task_is_invalid(butler, client, qrs):
    rid = request(client, {"taskId": UNKNOWN_TASK})
    result = client.wait_result(rid)
    assert result["status"] == "invalid"
    assert result["invalid"] == [{"taskId": UNKNOWN_TASK}]
    rid = request(client, {"tag": "no-such-tag"})
    assert client.wait_result(rid)["status"] == "invalid"


def test_allow_list_denies(workdir, broker, qrs, client):
    b = Butler(workdir, broker, qrs, extra_yaml=(
        "task_start:\n  allow:\n    tags: [finance]\n")).start()
    try:
        rid = request(client, {"taskId": TASK_SALES})
        result = client.wait_result(rid)
        assert result["status"] == "denied", result
        assert result["denied"][0]["taskId"] == TASK_SALES
        assert start_calls(qrs) == []
    finally:
        assert b.stop() == 0


def test_legacy_topic(workdir, broker, qrs, client):
    b = Butler(workdir, broker, qrs, mqtt_extra=["legacy_topics: true"]).start()
    try:
        client.publish("qliksense/start_task", TASK_SALES)
        result = json.loads(client.wait_for(
            lambda m: m["topic"] == "butler/task/result")[0]["payload"])
        assert result["status"] == "started"
        assert len(start_calls(qrs, TASK_SALES)) == 1
    finally:
        assert b.stop() == 0


def test_qrs_failure_goes_to_deadletter(butler, client, qrs):
    qrs.control("POST", "/_sim/faults", {
        "id": "always503",
        "match": {"method": "POST", "path_re": "^/qrs/task/[^/]+/start$", "times": -1},
        "action": {"type": "status", "status": 503, "body": "{\"message\":\"busy\"}"},
    })
    rid = request(client, {"taskId": TASK_SALES})
    result = client.wait_result(rid)
    assert result["status"] == "failed", result
    assert "503" in result["error"]
    letter = json.loads(client.wait_for(
        lambda m: m["topic"] == "butler/deadletter/butler/task/start")[0]["payload"])
    assert letter["attempts"] == 3
    assert json.loads(letter["payload"])["requestId"] == rid
    assert len(start_calls(qrs, TASK_SALES)) == 3


def test_qrs_recovers_within_retries(butler, client, qrs):
    qrs.control("POST", "/_sim/faults", {
        "id": "twice503",
        "match": {"method": "POST", "path_re": "^/qrs/task/[^/]+/start$", "times": 2},
        "action": {"type": "status", "status": 503, "headers": {"Retry-After": "0"}},
    })
    rid = request(client, {"taskId": TASK_SALES})
    assert client.wait_result(rid)["status"] == "started"
    assert len(start_calls(qrs, TASK_SALES)) == 3


def test_broker_restart_reconnects(butler, broker, qrs):
    first = Client(broker)
    first.subscribe("butler/#")
    rid = request(first, {"taskId": TASK_SALES})
    assert first.wait_result(rid)["status"] == "started"
    first.close()
    broker.stop(hard=True)
    wait_until(lambda: "lost the broker connection" in butler.log()
               or "broker connection closed" in butler.log(), message="butler to notice")
    broker.start()
    wait_until(lambda: butler.log().count("subscriptions acknowledged") >= 2, 15,
               message="reconnect and resubscribe")
    second = Client(broker)
    second.subscribe("butler/#")
    rid = request(second, {"taskId": TASK_SALES})
    assert second.wait_result(rid)["status"] == "started"
    second.close()


@pytest.mark.parametrize("action,expect", [
    ({"type": "hang"}, "failed"),
    ({"type": "drop", "when": "before_response", "how": "rst"}, "failed"),
    ({"type": "drop", "when": "before_response", "how": "fin"}, "failed"),
], ids=["hang-past-timeout", "reset", "closed"])
def test_qrs_transport_faults_are_retried_then_dead_lettered(workdir, broker, qrs, client, action,
                                                             expect):
    b = Butler(workdir, broker, qrs, extra_yaml="")
    with open(b.config_path) as f:
        text = f.read().replace("timeout_ms: 3000", "timeout_ms: 500")
    with open(b.config_path, "w") as f:
        f.write(text)
    b.start()
    try:
        qrs.control("POST", "/_sim/faults", {
            "id": "fault", "match": {"method": "POST", "path_re": "/start$", "times": -1},
            "action": action})
        rid = request(client, {"taskId": TASK_SALES})
        result = client.wait_result(rid, timeout=30)
        assert result["status"] == expect, result
        client.wait_for(lambda m: m["topic"] == "butler/deadletter/butler/task/start")
        # retry.max_attempts = 3; libcurl itself resends once when a reused
        # connection dies before any answer, so a drop may show one call more
        # per attempt (before each retry Butler asks QRS whether the start got
        # through, so every retry goes out on a reused connection).
        assert 3 <= len(start_calls(qrs, TASK_SALES)) <= 6
        # Once QRS behaves again, so does Butler.
        qrs.control("DELETE", "/_sim/faults")
        rid = request(client, {"taskId": TASK_SALES})
        assert client.wait_result(rid)["status"] == "started"
    finally:
        assert b.stop() == 0


# ---- starts that wait together share one QRS call (task_start.batch_max) ----

FOUR_TASKS = [
    "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91",
    "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
    "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
    "4e5f6a7b-8c9d-4e0f-9a1b-2c3d4e5f6a7b",
]
WAITING = 10


def many_calls(qrs):
    status, body = qrs.control("GET", "/_sim/calls?method=POST&path_re=/task/start/many$")
    return body if isinstance(body, list) else body.get("calls", [])


def wait_fault_applied(qrs, fault_id):
    """Until the simulator applied the fault `fault_id` to a call (an ordering
    wait: it fails only if the fault is never applied)."""
    wait_until(lambda: any(f["id"] == fault_id and f["applied"] >= 1
                           for f in qrs.control("GET", "/_sim/faults")[1]["faults"]),
               timeout=30, message=f"fault {fault_id} applied")


def queue_behind_a_slow_start(workdir, broker, qrs, client, batch_max=8):
    """One worker, task names cached; the first start is held 1 s by QRS while
    WAITING more requests queue behind it. Returns (butler, [(requestId, taskId)])."""
    butler = Butler(workdir, broker, qrs, extra_yaml=(
        f"task_start: {{ workers: 1, batch_max: {batch_max} }}\n")).start()
    for task_id in FOUR_TASKS:  # names into the cache: the waiting ones need no lookup
        assert client.wait_result(request(client, {"taskId": task_id}))["status"] == "started"
    qrs.control("POST", "/_sim/faults", {
        "id": "hold-first", "match": {"method": "POST", "path_re": "^/qrs/task/[^/]+/start$",
                                      "times": 1},
        "action": {"type": "delay", "ms": 1000 * TIMEOUT_SCALE}})
    request(client, {"taskId": TASK_SALES})
    # The waiting ones go out only once QRS holds the first start: sent earlier,
    # the worker could take the first together with them in one shared call.
    wait_fault_applied(qrs, "hold-first")
    waiting = [(request(client, {"taskId": FOUR_TASKS[i % 4]}), FOUR_TASKS[i % 4])
               for i in range(WAITING)]
    return butler, waiting


def test_waiting_starts_share_one_qrs_call(workdir, broker, qrs, client):
    butler, waiting = queue_behind_a_slow_start(workdir, broker, qrs, client)
    for request_id, task_id in waiting:
        result = client.wait_result(request_id)
        assert result["status"] == "started", result
        assert [t["taskId"] for t in result["started"]] == [task_id], result
    calls = many_calls(qrs)
    sizes = [len(c["body_json"]) for c in calls]
    # Every waiting start went in a shared call, each id once per request, at
    # most batch_max (8) to a call.
    assert sum(sizes) == WAITING and max(sizes) <= 8, sizes
    assert sorted(i for c in calls for i in c["body_json"]) == sorted(t for _, t in waiting)
    assert all(c["response"]["status"] == 204 for c in calls)
    assert butler.stop() == 0


def test_batch_max_one_keeps_one_call_per_start(workdir, broker, qrs, client):
    butler, waiting = queue_behind_a_slow_start(workdir, broker, qrs, client, batch_max=1)
    for request_id, _ in waiting:
        assert client.wait_result(request_id)["status"] == "started"
    assert many_calls(qrs) == []
    assert butler.stop() == 0


def test_refused_shared_call_starts_each_on_its_own(workdir, broker, qrs, client):
    """QRS answers the list with 404 (as for an id it does not know): every task is
    then started with its own call, so each request still learns its own outcome."""
    qrs.control("POST", "/_sim/faults", {
        "id": "refuse-many", "match": {"method": "POST", "path_re": "/task/start/many$",
                                       "times": -1},
        "action": {"type": "status", "status": 404}})
    before = len(start_calls(qrs))
    butler, waiting = queue_behind_a_slow_start(workdir, broker, qrs, client)
    for request_id, task_id in waiting:
        result = client.wait_result(request_id)
        assert result["status"] == "started", result
        assert [t["taskId"] for t in result["started"]] == [task_id], result
    assert many_calls(qrs), "the shared call was tried"
    single = [c for c in start_calls(qrs)[before:] if not c.get("many")]
    assert len(single) >= len(FOUR_TASKS) + 1 + WAITING
    assert butler.stop() == 0


def test_failed_shared_call_fails_each_request(workdir, broker, qrs, client):
    qrs.control("POST", "/_sim/faults", {
        "id": "many503", "match": {"method": "POST", "path_re": "/task/start/many$",
                                   "times": -1},
        "action": {"type": "status", "status": 503, "headers": {"Retry-After": "0"}}})
    butler, waiting = queue_behind_a_slow_start(workdir, broker, qrs, client)
    for request_id, task_id in waiting:
        result = client.wait_result(request_id)
        assert result["status"] == "failed", result
        assert [t["taskId"] for t in result["failed"]] == [task_id], result
        assert "503" in result["error"], result
    letters = client.wait_for(
        lambda m: m["topic"] == "butler/deadletter/butler/task/start", count=WAITING)
    assert len(letters) >= WAITING
    assert butler.stop() == 0
