"""The HTTP surface against a hostile browser and a hostile network (issue 24),
and the JSON Butler builds from caller-chosen ids (issue 23's debt): the real
butler binary and a real Mosquitto on loopback.

Requests are made with the standard library (http.client, socket) so every
header (Host, Origin, Content-Type) is exactly what the test says. Nothing here
asserts a duration: waits are bounded and only outcomes are checked.
"""
import http.client
import json
import os
import socket
import uuid

import pytest

from conftest import TASK_SALES, Butler, Client, wait_until


def call(port, method, path, body=None, headers=None, content_type="application/json"):
    """One request on a fresh connection. `headers` replaces nothing unless it names
    the header (a "Host" given here is sent instead of http.client's own)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    data = None
    all_headers = {}
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        if isinstance(data, str):
            data = data.encode()
        if content_type:
            all_headers["Content-Type"] = content_type
    all_headers.update(headers or {})
    connection.request(method, path, body=data, headers=all_headers)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    parsed = None
    if raw and "json" in (response.getheader("Content-Type") or ""):
        parsed = json.loads(raw)
    return response.status, parsed, raw, response


def make_butler(workdir, broker, name="b", http_yaml=(), extra_yaml="", **kwargs):
    directory = os.path.join(workdir, name)
    os.makedirs(directory, exist_ok=True)
    return Butler(directory, broker, http_yaml=list(http_yaml), extra_yaml=extra_yaml, **kwargs)


@pytest.fixture
def butler(workdir, broker):
    b = make_butler(workdir, broker).start()
    yield b
    b.stop()


# =============================================================================
# Issue 23 debt: answers built with cJSON, caller-chosen ids restricted
# =============================================================================

def test_query_request_id_cannot_inject_keys(butler, broker):
    """A '"' in ?requestId= used to be pasted into the 202 answer (adding keys);
    now the id is refused, and an accepted one comes back in well-formed JSON."""
    port = butler.http_port
    injected = '"%2C"status"%3A"done'  # ","status":"done
    status, body, raw, _ = call(port, "PUT",
                                f"/v4/reloadtask/{TASK_SALES}/start?async=true&requestId=a{injected}")
    assert status == 400 and "requestId" in body["message"], raw
    for bad in ("a%20b", "a%22b", "a%7Bb", "x" * 65):
        status, body, raw, _ = call(port, "PUT",
                                    f"/v4/reloadtask/{TASK_SALES}/start?async=true&requestId={bad}")
        assert status == 400, (bad, raw)
    status, body, raw, _ = call(port, "PUT",
                                f"/v4/reloadtask/{TASK_SALES}/start?async=true&requestId=job:1.a_b-c")
    assert status == 202 and body == {"requestId": "job:1.a_b-c"}, raw
    # The file endpoints take the same ids.
    status, body, raw, _ = call(port, "POST", "/v4/createdir?requestId=a%22b", {"directory": "/x"})
    assert status == 400 and "requestId" in body["message"], raw


def schedule_record(client, butler):
    """A schedule record as Butler stores it (created over HTTP, read back from the
    broker), firing every second."""
    status, created, raw, _ = call(butler.http_port, "POST", "/v4/schedules", {
        "name": "every second", "cronSchedule": "* * * * * *", "timezone": "UTC",
        "qlikSenseTaskId": TASK_SALES, "startupState": "stopped", "tags": []})
    assert status == 201, raw
    topic = f"butler/schedules/{created['id']}"
    record = client.wait_for(lambda m: m["topic"] == topic and m["payload"], what="record")[0]
    return created["id"], json.loads(record["payload"])


def test_schedule_ids_are_restricted(workdir, broker):
    """A schedule id over 44 characters made every firing's requestId too long
    (each firing 'invalid'); such records, and ids with characters that need
    escaping, are refused and counted. A 44-character id fires normally."""
    client = Client(broker)
    client.subscribe("butler/#")
    butler = make_butler(workdir, broker).start()
    try:
        sid, record = schedule_record(client, butler)
        record["lastKnownState"] = "started"
        record["startupState"] = "started"
        long_id = "L" * 45
        quoted_id = 'q"uote'
        good_id = "G" * 44
        for bad in (long_id, quoted_id):
            client.publish(f"butler/schedules/{bad}", json.dumps(dict(record, id=bad)), retain=True)
        client.publish(f"butler/schedules/{good_id}", json.dumps(dict(record, id=good_id)),
                       retain=True)
        wait_until(lambda: any(s["id"] == good_id for s in call(butler.http_port, "GET",
                                                                "/v4/schedules")[1]),
                   10, message="the 44-character schedule to be held")
        held = {s["id"] for s in call(butler.http_port, "GET", "/v4/schedules")[1]}
        assert long_id not in held and quoted_id not in held, held
        assert "ignoring schedule record butler/schedules/" + long_id in butler.log()
        # The good one fires a valid task start (its requestId fits).
        starts = client.wait_for(
            lambda m: m["topic"] == "butler/task/start"
            and json.loads(m["payload"]).get("requestId", "").startswith(f"schedule-{good_id}-"),
            timeout=10, what="a firing of the 44-character schedule")
        start = json.loads(starts[0]["payload"])
        assert set(start) == {"taskId", "requestId"} and start["taskId"] == TASK_SALES
        assert len(start["requestId"]) <= 64
        for bad in (long_id, quoted_id):
            assert not [m for m in client.messages if m["topic"] == "butler/task/start"
                        and bad in m["payload"].decode()], bad
        for topic_id in (long_id, quoted_id, good_id, sid):
            client.publish(f"butler/schedules/{topic_id}", b"", retain=True)
    finally:
        butler.stop()
        client.close()


# =============================================================================
# Configuration refused before anything listens
# =============================================================================

def check_config(tmp_path, text, env=None):
    import subprocess
    from conftest import BUTLER_BINARY
    path = tmp_path / "butler.yaml"
    path.write_text(text)
    return subprocess.run([BUTLER_BINARY, "--check-config", str(path)], capture_output=True,
                          text=True, timeout=30, env=dict(os.environ, **(env or {})))


def test_client_certificates_need_every_listener_tls(tmp_path):
    """http.tls.ca_file on a plain listener was accepted and logged as "client
    certificates required" while none were asked for."""
    tls = "  tls: {cert_file: /c.pem, key_file: /k.pem, ca_file: /ca.pem}\n"
    mixed = check_config(tmp_path, "http:\n  listen: 127.0.0.1:8080,127.0.0.1:8443s\n" + tls)
    assert mixed.returncode == 2 and "http.tls.ca_file" in mixed.stderr, mixed.stderr
    only_tls = check_config(tmp_path, "http:\n  listen: 127.0.0.1:8443s\n" + tls)
    assert only_tls.returncode == 0, only_tls.stderr


def test_long_waits_max_must_leave_threads(tmp_path):
    result = check_config(tmp_path, "http:\n  threads: 4\n  long_waits_max: 4\n")
    assert result.returncode == 2 and "http.long_waits_max" in result.stderr, result.stderr
    assert check_config(tmp_path, "http:\n  threads: 4\n  long_waits_max: 3\n").returncode == 0
