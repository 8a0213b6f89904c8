"""Alerts right, sent once, never silently dropped (issue 25) and templates
escaped for the body they go into (issue 24 §4): the real binary, a real
broker, the QRS simulator, the HTTP sink and the SMTP sink. Every wait polls
with a deadline."""
import json
import signal
import socket
import tempfile
import threading
import time
import urllib.parse

import pytest

import simctl
from conftest import Butler, Client, wait_until
from test_events import (Udp, butlers, datagram, dropped, events, guid,  # noqa: F401 (fixtures)
                         metric, smtp_sink, wait_event)


def deliveries(butler, route, outcome):
    return metric(butler, "butler_route_deliveries_total", {"route": route, "outcome": outcome})


def settle(butler, family_outcome=("routes", "done"), expected=None, timeout=10):
    """Wait until the routes family has finished `expected` messages."""
    wait_until(lambda: metric(butler, "butler_messages_in_total",
                              {"family": family_outcome[0], "outcome": family_outcome[1]})
               >= expected, timeout, message=f"{expected} route message(s) done")


# ------------------------------------------------ 1. overlapping route filters


def test_overlapping_filters_run_each_route_once(butlers, events, http_sink):
    url = http_sink.url
    routes = f"""
routes:
  - name: failed-only
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{url}/failed-only"
  - name: any-task
    match: butler/events/task/+/+
    to: webhook
    webhook_url: "{url}/any-task"
"""
    butler = butlers(extra_yaml=routes)
    udp = Udp(butler.udp_port)
    task_id = guid()
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    wait_event(events, f"butler/events/task/failed/{task_id}")
    http_sink.wait_for(2, 10)
    # A second message, one route only: once it is through, the first is too.
    marker = guid()
    udp.send(datagram("butler-v15", "task-success", task_id=marker))
    http_sink.wait_for(1, 10, lambda r: r["json"] and r["json"].get("taskId") == marker)
    settle(butler, expected=2)
    time.sleep(0.5)  # any second copy would have been handed over by now
    got = [(r["path"], r["json"]["taskId"]) for r in http_sink.requests]
    assert sorted(got) == sorted([("/failed-only", task_id), ("/any-task", task_id),
                                  ("/any-task", marker)]), got
    assert metric(butler, "butler_messages_in_total", {"family": "routes", "outcome": "done"}) == 2


# ------------------------------------- 3. a failed delivery takes no rate key


def test_failed_delivery_does_not_suppress_the_next(butlers, events, http_sink):
    routes = f"""
routes:
  - name: limited
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{http_sink.url}/limited"
    rate_limit: {{ key: "{{{{taskId}}}}", window_s: 300 }}
"""
    butler = butlers(extra_yaml=routes)
    udp = Udp(butler.udp_port)
    task_id = guid()
    http_sink.fail(500, times=3)  # retry.max_attempts is 3: the first alert dead-letters
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    events.wait_for(lambda m: m["topic"].startswith(
        f"butler/deadletter/butler/events/task/failed/{task_id}"), 15)
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    delivered = http_sink.wait_for(1, 15, lambda r: r["status"] == 200)
    assert delivered[0]["json"]["taskId"] == task_id
    # The delivered one took the key: a third is held back.
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    wait_until(lambda: deliveries(butler, "limited", "rate_limited") == 1, 10,
               message="third alert rate-limited")
    assert deliveries(butler, "limited", "delivered") == 1
    assert deliveries(butler, "limited", "failed") == 1


# ------------------------------- 4. conditions: never dropped, one rule


TASK_FINANCE = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
APP_FINANCE = "9e8d7c6b-5a49-4382-a716-0f5e4d3c2b1a"
TASK_HR = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
APP_HR = "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910"


def condition_route(url, name="opt-in", value="finance"):
    # Letter case differs from the fixture's "Finance" on purpose.
    return f"""
routes:
  - name: {name}
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{url}/{name}"
    condition: {{ custom_property: {{ name: department, value: {value} }} }}
"""


def test_condition_undecided_is_dead_lettered_not_dropped(butlers, events, qrs, http_sink):
    qrs.control("POST", "/_sim/faults", {"match": {"path_re": "/qrs/"},
                                         "action": {"type": "status", "status": 503}})
    butler = butlers(qrs=qrs, extra_yaml=condition_route(http_sink.url))
    udp = Udp(butler.udp_port)
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_FINANCE, app_id=APP_FINANCE))
    letter = events.wait_for(lambda m: m["topic"] == (
        f"butler/deadletter/butler/events/task/failed/{TASK_FINANCE}"), 20)[0]
    body = json.loads(letter["payload"])
    assert "condition undecided" in body["error"] and "opt-in" in body["error"], body
    assert json.loads(body["payload"])["taskId"] == TASK_FINANCE
    assert deliveries(butler, "opt-in", "condition_undecided") == 1
    assert not http_sink.requests


def test_condition_one_rule_for_both_ways(butlers, events, qrs, http_sink):
    # HR's task gets a second property whose value is the route's value: a QRS
    # filter on name and value matches them on different properties.
    qrs.control("PATCH", f"/_sim/tasks/{TASK_HR}", {"customProperties": [
        {"name": "Department", "value": "HR"}, {"name": "Env", "value": "Yes"}]})
    routes = condition_route(http_sink.url) + condition_route(
        http_sink.url, "env-yes", "yes").replace("routes:\n", "")
    butler = butlers(qrs=qrs, extra_yaml=routes.replace(
        "name: department, value: yes", "name: Department, value: Yes"))
    udp = Udp(butler.udp_port)
    # Enriched: the event carries the properties.
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_FINANCE, app_id=APP_FINANCE))
    http_sink.wait_for(1, 15, lambda r: r["path"] == "/opt-in")
    # Not enriched (its task/full read fails once): the route asks QRS itself.
    qrs.control("POST", "/_sim/faults", {"match": {"path_re": "/qrs/task/full", "times": 1},
                                         "action": {"type": "status", "status": 503}})
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_FINANCE, app_id=APP_FINANCE))
    wait_event(events, f"butler/events/task/failed/{TASK_FINANCE}")
    http_sink.wait_for(2, 15, lambda r: r["path"] == "/opt-in")
    qrs.control("POST", "/_sim/faults", {"match": {"path_re": "/qrs/task/full", "times": 1},
                                         "action": {"type": "status", "status": 503}})
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_HR, app_id=APP_HR))
    wait_until(lambda: deliveries(butler, "env-yes", "condition") == 3, 15,
               message="env-yes never matches (Department is HR, Env is Yes)")
    assert deliveries(butler, "opt-in", "delivered") == 2
    assert not [r for r in http_sink.requests if r["path"] == "/env-yes"]


# ------------------------ issue 24 §4: templates escape for their body


def test_templates_escape_for_their_body(butlers, events, http_sink):
    url = http_sink.url
    routes = f"""
routes:
  - name: hook
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{url}/hook"
    template: '{{"task": "{{{{taskName}}}}", "severity": "low", "id": {{{{taskId}}}}}}'
  - name: chat
    match: butler/events/task/failed/#
    to: slack
    webhook_url: "{url}/slack"
    template: "<!here> failed: {{{{taskName}}}}"
  - name: chat-default
    match: butler/events/task/failed/#
    to: slack
    webhook_url: "{url}/slack-default"
"""
    butler = butlers(extra_yaml=routes)
    udp = Udp(butler.udp_port)
    hostile = 'x", "severity": "critical", "z": "'
    task_id = guid()
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id, task_name=hostile))
    hook = http_sink.wait_for(1, 10, lambda r: r["path"] == "/hook")[0]
    assert hook["json"] == {"task": hostile, "severity": "low", "id": task_id}, hook["body"]
    pinging = "<!channel> & <http://evil.example|click>"
    udp.send(datagram("butler-v15", "task-failed", task_id=guid(), task_name=pinging))
    slack = http_sink.wait_for(1, 10, lambda r: r["path"] == "/slack" and "evil" in str(r["json"]))
    assert slack[0]["json"]["text"] == (
        "<!here> failed: &lt;!channel&gt; &amp; &lt;http://evil.example|click&gt;")
    default = http_sink.wait_for(1, 10, lambda r: r["path"] == "/slack-default"
                                 and "evil" in str(r["json"]))[0]["json"]
    assert "<!channel>" not in default["text"] and "&lt;!channel&gt;" in default["text"]
    assert pinging in json.dumps(default["blocks"], ensure_ascii=False).replace("\\", "") or \
        any(pinging in b["text"]["text"] for b in default["blocks"] if b.get("type") == "section")


# ------------------ 2. wait for QRS to catch up; 5. the run the event names


@pytest.fixture
def sim_with_udp(workdir):
    """A QRS simulator of its own that sends the log-appender datagrams to a
    free UDP port (butler listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        udp_port = s.getsockname()[1]
    simdir = tempfile.mkdtemp(prefix="butler-qrs-udp-", dir=workdir)
    with simctl.start_qrs_sim(simdir, udp_target=f"127.0.0.1:{udp_port}") as sim:
        yield sim, udp_port


@pytest.mark.parametrize("lead_ms, caught_up", [(1200, True), (7000, False)])
def test_enrichment_waits_for_qrs_to_catch_up(lead_ms, caught_up, workdir, broker, events,
                                              sim_with_udp):
    sim, udp_port = sim_with_udp
    butler = Butler(workdir, broker, qrs=sim, udp=udp_port, http_yaml=[]).start()
    try:
        # The datagram goes out lead_ms before QRS shows the run failed.
        sim.control("PATCH", f"/_sim/tasks/{TASK_FINANCE}", {"maxRetries": 0, "run": {
            "outcomes": ["fail"], "durationMs": 100 + lead_ms, "udpLeadMs": lead_ms}})
        status, _, _ = sim.qrs("POST", f"/qrs/task/{TASK_FINANCE}/start")
        assert status in (200, 201, 204), status
        body = wait_event(events, f"butler/events/task/failed/{TASK_FINANCE}", 20)
        assert body["qrs"], body
        assert body["qrs"]["caughtUp"] is caught_up, body["qrs"]
        if caught_up:
            assert body["qrs"]["executionStatus"] == "FinishedFail", body["qrs"]
            assert body["qrs"]["scriptLogTail"], body["qrs"]
        else:
            assert body["qrs"]["executionStatus"] == "Started", body["qrs"]
            assert metric(butler, "butler_enrichment_not_caught_up_total") == 1
    finally:
        butler.stop(signal.SIGKILL)


def test_enrichment_reads_the_run_the_event_names(butlers, events, qrs):
    # Run A fails, then run B of the same task succeeds; the event names A.
    qrs.control("PATCH", f"/_sim/tasks/{TASK_FINANCE}", {"maxRetries": 0, "run": {
        "outcomes": ["fail", "success"], "durationMs": 50}})
    status, _, answer = qrs.qrs("POST", f"/qrs/task/{TASK_FINANCE}/start/synchronous")
    assert status in (200, 201), status
    run_a = json.loads(answer)["value"]

    def finished(execution_id, wanted):
        _, _, body = qrs.qrs("GET", "/qrs/executionresult/full?filter=" + urllib.parse.quote(
            f"ExecutionId eq {execution_id}"))
        return any(r["status"] == wanted for r in json.loads(body))

    wait_until(lambda: finished(run_a, 8), 10, message="run A FinishedFail")
    status, _, answer = qrs.qrs("POST", f"/qrs/task/{TASK_FINANCE}/start/synchronous")
    run_b = json.loads(answer)["value"]
    wait_until(lambda: finished(run_b, 7), 10, message="run B FinishedSuccess")
    butler = butlers(qrs=qrs)
    udp = Udp(butler.udp_port)
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_FINANCE, app_id=APP_FINANCE,
                      execution_id=run_a))
    body = wait_event(events, f"butler/events/task/failed/{TASK_FINANCE}", 15)
    assert body["qrs"]["executionResultSource"] == "executionId", body["qrs"]
    assert body["qrs"]["executionStatus"] == "FinishedFail", body["qrs"]
    # An id QRS has no result for: the task's newest run, said so.
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_FINANCE, app_id=APP_FINANCE,
                      execution_id=guid()))
    events.wait_for(lambda m: m["topic"] == f"butler/events/task/failed/{TASK_FINANCE}", 15,
                    count=2)
    second = [json.loads(m["payload"]) for m in events.messages
              if m["topic"] == f"butler/events/task/failed/{TASK_FINANCE}"][1]
    assert second["qrs"]["executionResultSource"] == "task", second["qrs"]
    assert second["qrs"]["executionStatus"] == "FinishedSuccess", second["qrs"]


# ------------- 11. a success and a distribute of one execution: two events


def test_success_and_distribute_of_one_execution_are_two_events(butlers, events):
    butler = butlers()
    udp = Udp(butler.udp_port)
    task_id, execution_id = guid(), guid()
    udp.send(datagram("butler-v15", "task-success", task_id=task_id, execution_id=execution_id))
    udp.send(datagram("butler-v15", "distribute", task_id=task_id, execution_id=execution_id))
    udp.send(datagram("butler-v15", "distribute", task_id=task_id, execution_id=execution_id))
    wait_event(events, f"butler/events/task/success/{task_id}")
    wait_event(events, f"butler/events/task/distribute/{task_id}")
    wait_until(lambda: metric(butler, "butler_udp_dropped_total", {"reason": "duplicate"}) == 1,
               10, message="the repeated distribute dropped as a duplicate")
    assert len([m for m in events.messages if task_id in m["topic"]]) == 2


# ------------------------------- 7. the tail of a script log of any size


def test_script_log_tail_of_a_log_over_16_mb(butlers, events, qrs):
    line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor " \
           "incididunt ut labore et dolore magna aliqua. \u00e4\u20ac\n"
    big = line * (17 * 1024 * 1024 // len(line.encode())) + "Error: Field 'Amount' not found"
    qrs.control("PATCH", f"/_sim/tasks/{TASK_FINANCE}", {"maxRetries": 0, "run": {
        "outcomes": ["fail"], "durationMs": 50, "scriptLog": big}})
    status, _, answer = qrs.qrs("POST", f"/qrs/task/{TASK_FINANCE}/start/synchronous")
    assert status in (200, 201), status
    run = json.loads(answer)["value"]

    def failed():
        _, _, body = qrs.qrs("GET", "/qrs/executionresult/full?filter=" + urllib.parse.quote(
            f"ExecutionId eq {run}"))
        return any(r["status"] == 8 for r in json.loads(body))

    wait_until(failed, 15, message="the run FinishedFail")
    butler = butlers(qrs=qrs)
    udp = Udp(butler.udp_port)
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_FINANCE, app_id=APP_FINANCE,
                      execution_id=run))
    body = wait_event(events, f"butler/events/task/failed/{TASK_FINANCE}", 15)
    tail = body["qrs"]["scriptLogTail"]
    assert tail and tail.endswith("Error: Field 'Amount' not found"), body["qrs"]
    assert len(tail.encode()) <= 8192 and "\ufffd" not in tail
    assert tail.split("\n")[0] == line.rstrip("\n")  # whole lines, whole characters


# ---------------------- 6. a refused recipient costs the others nothing


def test_refused_recipient_is_dropped_the_others_get_the_mail(butlers, events, smtp_sink):
    smtp_sink.refuse = {"gone@example.com"}
    routes = f"""
smtp: {{ url: "{smtp_sink.url}", from: "butler@example.com" }}
routes:
  - name: mail
    match: butler/events/task/failed/#
    to: email
    recipients: [ops@example.com, gone@example.com, qlik@example.com]
"""
    butler = butlers(extra_yaml=routes)
    udp = Udp(butler.udp_port)
    udp.send(datagram("butler-v15", "task-failed", task_id=guid()))
    mail = smtp_sink.wait_for(1, 15)[0]
    assert sorted(mail["rcpt_to"]) == ["ops@example.com", "qlik@example.com"]
    wait_until(lambda: deliveries(butler, "mail", "delivered") == 1, 10, message="delivered")
    assert metric(butler, "butler_email_recipients_refused_total") == 1
    assert len(smtp_sink.mails) == 1  # one attempt was enough
    # Every recipient refused: dead-lettered at once, not retried.
    smtp_sink.refuse = {"ops@example.com", "gone@example.com", "qlik@example.com"}
    task_id = guid()
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    letter = events.wait_for(lambda m: m["topic"] == (
        f"butler/deadletter/butler/events/task/failed/{task_id}"), 15)[0]
    body = json.loads(letter["payload"])
    assert "every recipient refused" in body["error"] and body["attempts"] == 1, body


# --------------------- 9. Retry-After holds every worker of a destination


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_holds_the_destination_for_every_worker(form, butlers, events, http_sink):
    import email.utils

    routes = f"""
routes:
  - name: chat
    match: butler/events/task/failed/#
    to: slack
    webhook_url: "{http_sink.url}/slack"
"""
    butler = butlers(extra_yaml=routes)
    udp = Udp(butler.udp_port)
    retry_after = "2" if form == "seconds" else email.utils.formatdate(time.time() + 3,
                                                                          usegmt=True)
    http_sink.fail(429, times=1, retry_after=retry_after)
    udp.send(datagram("butler-v15", "task-failed", task_id=guid()))
    limited = http_sink.wait_for(1, 10, lambda r: r["status"] == 429)[0]
    # Once Butler has read the answer (the sink records it before Butler sees it):
    wait_until(lambda: "(Retry-After): holding it for every worker" in butler.log(), 10,
               message="the hold")
    # A second alert, on another worker (the first sleeps in its retry).
    udp.send(datagram("butler-v15", "task-failed", task_id=guid()))
    sent = http_sink.wait_for(2, 15, lambda r: r["status"] == 200)
    # Lower bounds only: a slow machine can only make them larger.
    assert all(r["t"] - limited["t"] >= 1.0 for r in sent), [
        round(r["t"] - limited["t"], 2) for r in sent]


# ------------- 8. an event dropped after its claim gives the ExecutionId back


def test_dropped_event_gives_its_execution_id_back(workdir, broker):
    butler = Butler(workdir, broker, udp=True, http_yaml=[])
    with open(butler.config_path) as f:
        text = f.read()
    with open(butler.config_path, "w") as f:  # the smallest spool there is
        f.write(text.replace("spool: { dir: ", "spool: { max_bytes: 65536, dir: "))
    butler.start()
    watcher = None
    try:
        udp = Udp(butler.udp_port)
        broker.stop()
        wait_until(lambda: metric(butler, "butler_mqtt_connected") == 0, 10,
                   message="butler to see the broker gone")
        # Fill the spool while the broker is away; then the event that is lost.
        for _ in range(400):
            udp.send(datagram("butler-v15", "task-failed"))
        wait_until(lambda: dropped(butler, "spool_full") > 0, 20, message="the spool full")
        before = dropped(butler, "spool_full")
        task_id, execution_id = guid(), guid()
        udp.send(datagram("butler-v15", "task-failed", task_id=task_id,
                          execution_id=execution_id))
        wait_until(lambda: dropped(butler, "spool_full") > before, 10,
                   message="the event dropped")
        broker.start()
        wait_until(lambda: metric(butler, "butler_mqtt_connected") == 1, 20,
                   message="butler back on the broker")
        watcher = Client(broker)
        watcher.subscribe("butler/events/#")
        # The same run reported again (a resent datagram here; a QRS
        # notification takes the same window): not taken for a duplicate.
        udp.send(datagram("butler-v15", "task-failed", task_id=task_id,
                          execution_id=execution_id))
        body = wait_event(watcher, f"butler/events/task/failed/{task_id}", 20)
        assert body["executionId"] == execution_id
        assert dropped(butler, "duplicate") == 0
    finally:
        if watcher:
            watcher.close()
        butler.stop(signal.SIGKILL)


# -------- 10. a restart between two routes: the replay sends only the rest


class Hang:
    """Accepts HTTP connections, reads, never answers (a receiver stuck mid-call)."""

    def __init__(self):
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.requests = 0
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.connections.append(connection)
            if connection.recv(65536):
                self.requests += 1

    def close(self):
        self.server.close()
        for connection in self.connections:
            connection.close()


def test_restart_between_two_routes_replays_only_the_rest(workdir, broker, http_sink):
    hang = Hang()
    task_id = guid()
    topic = f"butler/events/task/failed/{task_id}"

    def config(b_url):
        return f"""
routes:
  - name: first
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{http_sink.url}/first"
  - name: second
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{b_url}/second"
"""
    butler = Butler(workdir, broker, extra_yaml=config(hang.url)).start()
    publisher = Client(broker)
    try:
        publisher.publish(topic, json.dumps({"type": "failed", "taskId": task_id}))
        http_sink.wait_for(1, 10, lambda r: r["path"] == "/first")
        wait_until(lambda: hang.requests >= 1, 10, message="the second route's call under way")
        butler.stop(signal.SIGKILL)  # between the two routes' deliveries
        butler = Butler(workdir, broker, extra_yaml=config(http_sink.url)).start()
        http_sink.wait_for(1, 15, lambda r: r["path"] == "/second")
        assert [r["json"]["taskId"] for r in http_sink.requests if r["path"] == "/first"] == [
            task_id]
    finally:
        publisher.close()
        hang.close()
        butler.stop(signal.SIGKILL)
