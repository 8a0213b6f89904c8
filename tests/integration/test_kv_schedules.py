"""Key-value store and schedules on the broker, end to end: the real butler
binary, a real Mosquitto and the QRS simulator. Every wait polls with a
deadline; nothing sleeps for a fixed time to let something happen."""
import http.client
import json
import os
import time

import pytest

from conftest import TASK_SALES, Butler, Client, start_calls, wait_until


def request(butler, method, path, body=None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", butler.http_port, timeout=15)
    data = json.dumps(body).encode() if body is not None else None
    all_headers = {"Content-Type": "application/json"} if data is not None else {}
    all_headers.update(headers or {})
    connection.request(method, path, body=data, headers=all_headers)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    content_type = response.getheader("Content-Type") or ""
    parsed = json.loads(raw) if raw and "json" in content_type else raw.decode()
    return response.status, parsed


def make_butler(workdir, broker, qrs=None, name="a", extra_yaml=""):
    directory = os.path.join(workdir, name)
    os.makedirs(directory, exist_ok=True)
    return Butler(directory, broker, qrs=qrs, http_yaml=[], extra_yaml=extra_yaml)


def kv_value(butler, namespace, key):
    status, body = request(butler, "GET", f"/v4/keyvalues/{namespace}?key={key}")
    return body.get("value") if status == 200 else None


# ---- key-value store ----


def test_kv_api_shapes_and_codes(workdir, broker):
    butler = make_butler(workdir, broker).start()
    try:
        assert request(butler, "GET", "/v4/keyvaluesnamespaces") == (200, [])
        status, body = request(butler, "POST", "/v4/keyvalues/Sales%20ETL",
                               {"key": "last", "value": "2020-09-29", "ttl": 0})
        assert status == 201
        assert body == {"namespace": "Sales ETL", "key": "last", "value": "2020-09-29", "ttl": 0}
        assert request(butler, "GET", "/v4/keyvalues/Sales%20ETL?key=last") == (
            200, {"namespace": "Sales ETL", "key": "last", "value": "2020-09-29"})
        assert request(butler, "GET", "/v4/keyvaluesnamespaces") == (200, ["Sales ETL"])
        assert request(butler, "GET", "/v4/keyvalues/Sales%20ETL/keyexists?key=last")[1] == {
            "keyExists": True,
            "keyValue": {"namespace": "Sales ETL", "key": "last", "value": "2020-09-29"}}
        assert request(butler, "GET", "/v4/keyvalues/Sales%20ETL/keyexists?key=nope") == (
            200, {"keyExists": False, "keyValue": {}})
        assert request(butler, "GET", "/v4/keylist/Sales%20ETL") == (
            200, {"namespace": "Sales ETL", "keys": [{"key": "last"}]})
        # Errors: missing key parameter, unknown namespace/key -> 400 JSON.
        for path in ("/v4/keyvalues/Sales%20ETL", "/v4/keyvalues/nons?key=x",
                     "/v4/keyvalues/Sales%20ETL?key=nope", "/v4/keylist/nons",
                     "/v4/keyvalues/nons/keyexists?key=x"):
            status, body = request(butler, "GET", path)
            assert status == 400 and body["statusCode"] == 400, path
        assert request(butler, "POST", "/v4/keyvalues/x", {"value": "no key"})[0] == 400
        assert request(butler, "POST", "/v4/keyvalues/x", {"key": "a/b", "value": "1"})[0] == 400
        assert request(butler, "POST", "/v4/keyvalues/x", {"key": "k", "ttl": -1})[0] == 400
        # DELETE a key (204, no body), then the namespace; POST with the override header.
        assert request(butler, "POST", "/v4/keyvalues/Sales%20ETL", {"key": "k2", "value": "v"})[0] == 201
        assert request(butler, "DELETE", "/v4/keyvalues/Sales%20ETL/k2") == (204, "")
        assert request(butler, "DELETE", "/v4/keyvalues/Sales%20ETL/k2")[0] == 400
        assert request(butler, "POST", "/v4/keyvalues/Sales%20ETL", None,
                       {"X-HTTP-Method-Override": "DELETE"}) == (204, "")
        assert request(butler, "GET", "/v4/keyvaluesnamespaces") == (200, [])
        assert request(butler, "DELETE", "/v4/keyvalues/Sales%20ETL")[0] == 400
    finally:
        butler.stop()


def test_kv_namespace_limit_evicts_oldest(workdir, broker):
    butler = make_butler(workdir, broker, extra_yaml="kv: { max_keys_per_namespace: 3 }\n").start()
    try:
        for i in range(4):
            assert request(butler, "POST", "/v4/keyvalues/lim", {"key": f"k{i}", "value": str(i)})[0] == 201
        keys = {k["key"] for k in request(butler, "GET", "/v4/keylist/lim")[1]["keys"]}
        assert keys == {"k1", "k2", "k3"}
    finally:
        butler.stop()


def test_kv_ttl_survives_restart_expires_and_is_shared(workdir, broker):
    watcher = Client(broker)
    watcher.subscribe("butler/kv/#")
    first = make_butler(workdir, broker, name="first").start()
    second = make_butler(workdir, broker, name="second").start()
    try:
        assert request(first, "POST", "/v4/keyvalues/shared",
                       {"key": "long", "value": "kept", "ttl": 60000})[0] == 201
        started = time.monotonic()
        assert request(first, "POST", "/v4/keyvalues/shared",
                       {"key": "short", "value": "soon gone", "ttl": 3000})[0] == 201
        # The retained record on the broker has the documented format.
        record = json.loads(watcher.wait_for(lambda m: m["topic"] == "butler/kv/shared/short")[0]["payload"])
        assert set(record) == {"namespace", "key", "value", "ttl", "createdAt", "expiresAt"}
        # Visible from the second instance.
        wait_until(lambda: kv_value(second, "shared", "short") == "soon gone", 5,
                   message="second instance to see the key")
        # Restart the first: still there.
        first.stop()
        first.start()
        wait_until(lambda: kv_value(first, "shared", "long") == "kept", 5,
                   message="the key after a restart")
        # Expires on time (3 s), on both instances.
        wait_until(lambda: kv_value(first, "shared", "short") is None
                   and kv_value(second, "shared", "short") is None, 6,
                   message="the short key to expire")
        assert time.monotonic() - started >= 2.9
        assert kv_value(first, "shared", "long") == "kept"
    finally:
        first.stop()
        second.stop()
        watcher.close()


def test_kv_items_of_a_task_start_are_readable(workdir, broker, qrs):
    butler = make_butler(workdir, broker, qrs=qrs).start()
    client = Client(broker)
    client.subscribe("butler/task/result")
    try:
        client.publish("butler/task/start", json.dumps({
            "taskId": TASK_SALES, "requestId": "kv-from-start",
            "kv": [{"namespace": "etl", "key": "param1", "value": "42", "ttl": 60000}]}))
        assert client.wait_result("kv-from-start")["status"] == "started"
        wait_until(lambda: kv_value(butler, "etl", "param1") == "42", 5,
                   message="the task-start key over HTTP")
    finally:
        client.close()
        butler.stop()


# ---- schedules ----


def schedule_body(cron="*/2 * * * * *", state="started"):
    return {"name": "every two seconds", "cronSchedule": cron, "timezone": "Europe/Stockholm",
            "qlikSenseTaskId": TASK_SALES, "startupState": state, "tags": ["test"]}


def test_schedule_api_shapes_and_validation(workdir, broker):
    butler = make_butler(workdir, broker).start()
    try:
        status, created = request(butler, "POST", "/v4/schedules", schedule_body("0 6 * * 1-5", "stopped"))
        assert status == 201 and isinstance(created, dict)
        assert set(created) == {"id", "created", "name", "cronSchedule", "timezone", "qlikSenseTaskId",
                                "startupState", "tags", "lastKnownState"}
        assert created["lastKnownState"] == "stopped"
        sid = created["id"]
        assert request(butler, "GET", f"/v4/schedules?id={sid}") == (200, [created])
        assert request(butler, "GET", "/v4/schedules?id=nope")[0] == 400
        status, started = request(butler, "PUT", f"/v4/schedules/{sid}/start")
        assert status == 200 and len(started) == 1 and started[0]["lastKnownState"] == "started"
        status, text = request(butler, "GET", "/v4/schedules/status")
        assert status == 200 and f"{sid}: cron status: Running" in text
        status, stopped = request(butler, "PUT", "/v4/schedules/stopall")
        assert status == 200 and all(s["lastKnownState"] == "stopped" for s in stopped)
        assert request(butler, "PUT", "/v4/schedules/nope/start")[0] == 400
        for bad, needle in ((dict(schedule_body(), cronSchedule="61 * * * *"), "out of range"),
                            (dict(schedule_body(), timezone="Mars/Olympus"), "time zone"),
                            (dict(schedule_body(), qlikSenseTaskId="x"), "GUID"),
                            ({"name": "x"}, "required")):
            status, body = request(butler, "POST", "/v4/schedules", bad)
            assert status == 400 and needle in body["message"], body
        assert request(butler, "DELETE", f"/v4/schedules/{sid}") == (204, "")
        assert request(butler, "DELETE", f"/v4/schedules/{sid}")[0] == 400
        assert request(butler, "GET", "/v4/schedules") == (200, [])
    finally:
        butler.stop()


def test_schedule_fires_survives_restart_stops_and_reports_missed(workdir, broker, qrs):
    client = Client(broker)
    client.subscribe("butler/#")
    butler = make_butler(workdir, broker, qrs=qrs).start()
    try:
        status, created = request(butler, "POST", "/v4/schedules", schedule_body())
        assert status == 201
        sid = created["id"]

        def schedule_results():
            return [r for r in client.results() if r["requestId"].startswith(f"schedule-{sid}-")]

        # It fires through the normal task-start path: QRS sees the start and
        # the result carries requestId schedule-<id>-<epoch>.
        wait_until(lambda: len(schedule_results()) >= 2, 10, message="two firings")
        assert all(r["status"] == "started" for r in schedule_results())
        assert len(start_calls(qrs, TASK_SALES)) >= 2
        epochs = sorted(int(r["requestId"].rsplit("-", 1)[1]) for r in schedule_results())
        assert all(e % 2 == 0 for e in epochs)

        # Stop: no more firings (judged over a window of 3 firing periods).
        assert request(butler, "PUT", f"/v4/schedules/{sid}/stop")[0] == 200
        count = len(schedule_results())
        deadline = time.monotonic() + 4
        wait_until(lambda: time.monotonic() > deadline, 6, message="a quiet window")
        assert len(schedule_results()) <= count + 1  # one may have been in flight
        stopped_count = len(schedule_results())
        assert request(butler, "PUT", f"/v4/schedules/{sid}/start")[0] == 200
        wait_until(lambda: len(schedule_results()) > stopped_count, 6, message="firing after start")

        # Butler down across firing times: reported as missed, not replayed.
        butler.stop()
        down_at = time.time()
        wait_until(lambda: time.time() > down_at + 6.5, 10, message="firing times to pass")
        fired_before = len(schedule_results())
        butler.start()
        missed = client.wait_for(lambda m: m["topic"] == f"butler/events/schedule/missed/{sid}", 10)
        event = json.loads(missed[0]["payload"])
        # At least 3 firing times fell while it was down; one due right at
        # start-up may be fired instead of reported.
        assert event["count"] >= 2 and len(event["missed"]) == event["count"], event
        assert all(m.endswith("Z") for m in event["missed"])
        assert event["schedule"]["id"] == sid
        # Still there after the restart, and firing again.
        assert request(butler, "GET", f"/v4/schedules?id={sid}")[1][0]["lastKnownState"] == "started"
        wait_until(lambda: len(schedule_results()) > fired_before, 6, message="firing after restart")
        assert request(butler, "DELETE", f"/v4/schedules/{sid}")[0] == 204
    finally:
        butler.stop()
        client.close()


def _epoch_ms(iso):
    """'2026-12-07T02:30:04.497Z' -> epoch milliseconds."""
    import calendar
    seconds, _, fraction = iso.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S")) * 1000 + int((fraction or "0")[:3])


def _early_in_a_second():
    """Wait until the wall clock is 0.15..0.6 s into a second, so a second that began before
    the next action is distinct from the next slot (no fixed sleep: a bounded poll)."""
    wait_until(lambda: 0.15 <= time.time() % 1.0 <= 0.6, 3, interval=0.005, message="early in a second")


def test_schedule_first_fires_for_a_slot_after_it_was_created_or_changed(workdir, broker):
    """Issue 23: '*/2 * * * * *' created at :04.497 fired for the slot :04.000, a second that
    began before it existed. The first firing is the first slot strictly after creation, and
    the same after the cron expression of the retained record changes."""
    client = Client(broker)
    client.subscribe("butler/task/start")
    client.subscribe("butler/schedules/#")
    butler = make_butler(workdir, broker).start()
    try:
        def slots(sid):
            prefix = f"schedule-{sid}-"
            out = []
            with client.lock:
                for m in client.messages:
                    if m["topic"] == "butler/task/start":
                        rid = json.loads(m["payload"]).get("requestId", "")
                        if rid.startswith(prefix):
                            out.append(int(rid[len(prefix):]))
            return out

        _early_in_a_second()
        status, created = request(butler, "POST", "/v4/schedules", schedule_body("* * * * * *"))
        assert status == 201
        sid, created_ms = created["id"], _epoch_ms(created["created"])
        wait_until(lambda: slots(sid), 10, message="the first firing")
        assert slots(sid)[0] * 1000 > created_ms, (slots(sid), created["created"])

        # A schedule that will not fire for months, then its expression changed on the broker.
        status, quiet = request(butler, "POST", "/v4/schedules", schedule_body("0 0 1 1 *"))
        assert status == 201
        qid = quiet["id"]
        record = client.wait_for(lambda m: m["topic"] == f"butler/schedules/{qid}" and m["payload"],
                                 what="the schedule record")[-1]
        changed = dict(json.loads(record["payload"]), cronSchedule="* * * * * *")
        # In a later second than its creation (which the record's lastRunAt holds).
        wait_until(lambda: time.time() >= _epoch_ms(quiet["created"]) / 1000 + 1, 3,
                   message="a second after the creation")
        _early_in_a_second()
        changed_ms = int(time.time() * 1000)
        client.publish(f"butler/schedules/{qid}", json.dumps(changed), retain=True)
        wait_until(lambda: slots(qid), 10, message="the first firing after the change")
        assert slots(qid)[0] * 1000 > changed_ms, (slots(qid), changed_ms)
        for s in (sid, qid):
            assert request(butler, "DELETE", f"/v4/schedules/{s}")[0] == 204
    finally:
        butler.stop()
        client.close()
