"""Backpressure without a deadlock (issue 22, section 1).

The MQTT network thread only records a consumed message in the spool and
returns, so its PUBACK goes out; a feeder thread moves spooled work into the
worker queue. Workers that wait for PUBACKs of their own publishes (key-value
items, dead letters, answers) can therefore never wait for a network thread
that waits for them, and the network thread keeps the session alive while
every worker is busy.

- 30 task starts made only of key-value items, one worker and a queue of 2:
  every one answered (before: no answer until SIGTERM);
- a failing webhook's dead letter followed by file commands: all answered;
- slow webhooks keeping the one worker busy, with no room in the queue, for
  longer than the broker waits for a keepalive: the broker never drops
  Butler's session (no will, no reconnect) and /health stays 200;
- a spool at its cap: the link holds intake (disconnected, the broker keeps
  the messages) while answers leave through the outlet connection, and every
  request is answered; SIGTERM during such a hold loses nothing.
"""
import http.client
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Butler, Client, wait_until

TINY_POOL = "task_start: {workers: 1, queue_max: 2, batch_max: 1}\n"


def kv_only_start(request_id, i):
    return json.dumps({"requestId": request_id, "items": [
        {"type": "keyvaluestore",
         "payload": {"namespace": "bp", "key": f"k{i}", "value": str(i), "ttl": 60000}}]})


def test_key_value_only_starts_with_a_tiny_queue_are_all_answered(workdir, broker, client):
    butler = Butler(workdir, broker, extra_yaml=TINY_POOL).start()
    ids = [f"kv-only-{i}" for i in range(30)]
    for i, request_id in enumerate(ids):
        client.publish("butler/task/start", kv_only_start(request_id, i))

    def answered():
        return {r["requestId"] for r in client.results()} >= set(ids)

    wait_until(answered, 30, message="all 30 key-value-only task starts answered")
    for request_id in ids:
        assert len(client.results(request_id)) == 1, request_id
    # Every key was written as a retained message.
    client.wait_for(lambda m: m["topic"].startswith("butler/kv/bp/"), count=30)
    assert butler.stop() == 0


def test_dead_letter_then_file_commands_are_all_answered(workdir, broker, client,
                                                         http_sink):
    tree = os.path.join(workdir, "tree")
    os.makedirs(os.path.join(tree, "made"))
    http_sink.fail(500, times=1000)
    extra = TINY_POOL + f"""file:
  enable: true
  workers: 1
  queue_max: 1
  mkdir: [{tree}/made]
routes:
  - name: hook
    match: nothing/here
    to: webhook
    webhook_url: {http_sink.url}/hook
"""
    butler = Butler(workdir, broker, extra_yaml=extra).start()
    client.publish("butler/webhook/hook", json.dumps({"n": 1}))
    ids = [f"mkdir-{i}" for i in range(20)]
    for request_id in ids:
        client.publish("butler/file/mkdir", json.dumps(
            {"requestId": request_id, "directory": os.path.join(tree, "made", request_id)}))
    client.wait_for(lambda m: m["topic"] == "butler/deadletter/butler/webhook/hook", 30,
                    what="the webhook's dead letter")

    def file_answers():
        out = {}
        for m in list(client.messages):
            if m["topic"] == "butler/file/result":
                body = json.loads(m["payload"])
                out.setdefault(body.get("requestId"), []).append(body)
        return out

    wait_until(lambda: set(file_answers()) >= set(ids), 30, message="all 20 mkdir answers")
    for request_id in ids:
        assert [a["status"] for a in file_answers()[request_id]] == ["done"], request_id
        assert os.path.isdir(os.path.join(tree, "made", request_id))
    assert butler.stop() == 0


class _SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    delay_s = 10.0

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        time.sleep(self.delay_s)
        self.server.answered += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def slow_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    server.answered = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def health(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_busy_workers_do_not_cost_the_session(workdir, broker, client, slow_server):
    """One worker, a queue of 1, keepalive 5 s (the broker drops a session
    silent for 7.5 s): three webhook posts of 10 s each. The first runs, the
    second waits in the queue, the third has no room for 10 s, during which
    no thread publishes anything. The network thread must keep pinging: the
    broker never sends the 'offline' will, Butler never reconnects, and
    /health stays 200 throughout."""
    port = slow_server.server_address[1]
    extra = """task_start: {workers: 1, queue_max: 1, batch_max: 1}
""" + f"""routes:
  - name: slow
    match: nothing/here
    to: webhook
    webhook_url: http://127.0.0.1:{port}/slow
"""
    butler = Butler(workdir, broker, extra_yaml=extra, mqtt_extra=["keepalive_s: 5"],
                    http_yaml=[]).start()
    client.subscribe("butler/status")
    client.wait_for(lambda m: m["topic"] == "butler/status"
                    and json.loads(m["payload"])["state"] == "online")
    for i in range(3):
        client.publish("butler/webhook/slow", json.dumps({"n": i}))
    statuses = []
    started = time.monotonic()
    while (slow_server.answered < 1 or time.monotonic() - started < 12) \
            and time.monotonic() - started < 40:
        statuses.append(health(butler.http_port)[0])
        time.sleep(0.5)
    assert slow_server.answered >= 1
    offline = [m for m in client.messages if m["topic"] == "butler/status"
               and json.loads(m["payload"])["state"] == "offline"]
    assert offline == [], "the broker dropped Butler's session and published its will"
    log = butler.log()
    assert "lost the broker connection" not in log and "broker connection closed" not in log
    assert set(statuses) == {200}, statuses
    butler.stop()


def full_spool_butler(workdir, broker):
    butler = Butler(workdir, broker, extra_yaml=TINY_POOL)
    # The harness's spool line sets the directory; add the cap to it.
    with open(butler.config_path) as f:
        text = f.read()
    with open(butler.config_path, "w") as f:
        f.write(text.replace("spool: { dir:", "spool: { max_bytes: 65536, dir:"))
    return butler


def publish_full_starts(client, ids):
    filler = "x" * 900
    for i, request_id in enumerate(ids):
        client.publish("butler/task/start", json.dumps({"requestId": request_id, "items": [
            {"type": "keyvaluestore",
             "payload": {"namespace": "full", "key": f"k{i}", "value": filler, "ttl": 60000}}]}))


def test_stopping_during_a_hold_loses_nothing(workdir, broker, client):
    """SIGTERM while the link holds intake (spool full): Butler stops cleanly
    (the outlet too), and the next start answers every request, from its
    spool or from the broker."""
    butler = full_spool_butler(workdir, broker).start()
    ids = [f"stop-{i}" for i in range(150)]
    publish_full_starts(client, ids)
    wait_until(lambda: "intake held" in butler.log(), 30, message="the spool to fill")
    assert butler.stop(timeout=60) == 0
    butler.start()
    wait_until(lambda: {r["requestId"] for r in client.results()} >= set(ids), 90,
               message="all 150 starts answered after the restart")
    assert butler.stop() == 0


def test_a_full_spool_holds_messages_at_the_broker_and_loses_none(workdir, broker, client):
    """spool.max_bytes at its minimum (64 KiB, new work up to 7/8 of it) and
    one worker: 150 key-value-only starts of ~1 KiB each do not fit at once.
    The network thread never waits for room: it holds what the spool refuses
    unacknowledged (cutting the connection; the broker sends it again) while
    the feeder and the worker make room, answering through the outlet
    connection meanwhile. Every request is answered (before: the network
    thread waited for room for ever; aborting without the outlet livelocked,
    each reconnect cut by the broker's resends before an answer got out)."""
    butler = full_spool_butler(workdir, broker).start()
    ids = [f"full-{i}" for i in range(150)]
    publish_full_starts(client, ids)

    def answered():
        return {r["requestId"] for r in client.results()} >= set(ids)

    wait_until(answered, 90, message="all 150 starts answered through a full spool")
    for request_id in ids:
        # An answer in flight when the hold cut the connection is sent again
        # (at least once across a dropped connection); it never differs.
        answers = client.results(request_id)
        assert all(a == answers[0] for a in answers), request_id
    assert "holding it unacknowledged" in butler.log(), "the spool never filled: test too weak"
    assert butler.stop() == 0
