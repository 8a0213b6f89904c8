"""Sense events end to end (contract 3.2-3.4, 5, 7): the real binary, a real
broker, the QRS simulator, the log-appender emulator, the HTTP sink and an
SMTP sink. Every wait polls with a deadline."""
import json
import os
import random
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ElementTree

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
import pytest

from conftest import ROOT, TASK_SALES, Butler, Client, free_port, recorded_qrs_sim, wait_until
import appender_emu

TASK_FINANCE = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
TASK_HR = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
APP_SALES = "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34"
APP_FINANCE = "9e8d7c6b-5a49-4382-a716-0f5e4d3c2b1a"
APP_HR = "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910"
TASK_FIELDS = {"type", "host", "taskName", "appName", "user", "taskId", "appId", "logTimestamp",
               "level", "executionId", "message", "receivedAt"}
QRS_FIELDS = {"taskType", "taskTags", "taskCustomProperties", "appTags", "appCustomProperties",
              "appOwner", "executionStatus", "scriptLogTail"}

_generator = appender_emu.Generator(seed=4242)


def guid():
    return _generator.guid()


def datagram(profile, event, **fields):
    fields.setdefault("execution_id", guid())
    return appender_emu.render(profile, event, fields, generator=_generator)


class Udp:
    def __init__(self, port):
        self.target = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, data, source=None):
        if source:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((source, 0))
                s.sendto(data, self.target)
        else:
            self.sock.sendto(data, self.target)


def metrics(butler):
    with urllib.request.urlopen(f"http://127.0.0.1:{butler.http_port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(butler, name, labels=None, text=None):
    """Sum of a metric's samples whose labels include all of `labels`."""
    text = text if text is not None else metrics(butler)
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        sample = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(sample.get(k) == v for k, v in (labels or {}).items()):
            total += float(m.group(3))
    return total


def dropped(butler, reason):
    return metric(butler, "butler_udp_dropped_total", {"reason": reason})


@pytest.fixture
def butlers(workdir, broker):
    started = []

    def make(directory=None, **kwargs):
        kwargs.setdefault("http_yaml", [])
        kwargs.setdefault("udp", True)
        b = Butler(directory or workdir, broker, **kwargs)
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop(signal.SIGKILL)


@pytest.fixture
def events(broker):
    c = Client(broker)
    c.subscribe("butler/#")
    c.subscribe("qliksense/#")
    c.subscribe("alerts/#")
    yield c
    c.close()


def event_messages(client, topic_prefix="butler/events/"):
    with client.lock:
        return [m for m in client.messages if m["topic"].startswith(topic_prefix)]


def wait_event(client, topic, timeout=10.0):
    found = client.wait_for(lambda m: m["topic"] == topic, timeout, what=topic)
    return json.loads(found[0]["payload"])


# ---------------------------------------------------------------- layouts


LAYOUTS = [
    ("butler-v15", "task-failed", "failed", {}),
    ("butler-v15", "task-aborted", "aborted", {}),
    ("butler-v15", "task-success", "success", {}),  # "/scheduler-task-success//" as shipped
    ("butler-v15", "task-success", "success", {"fix": True}),
    ("butler-v15", "distribute", "distribute", {}),
    ("butler-v12", "reload-failed", "failed", {}),
    ("butler-v12", "reload-aborted", "aborted", {}),
    ("butler-v12", "reloadtask-success", "success", {}),
    ("butler-v9", "reloadtask-success", "success", {}),
]


def test_every_layout_becomes_its_event(butlers, events):
    butler = butlers()
    udp = Udp(butler.udp_port)
    for profile, event, outcome, options in LAYOUTS:
        task_id, execution_id = guid(), guid()
        fields = {"task_id": task_id, "execution_id": execution_id, "host": "sense-node-07"}
        data = appender_emu.render(profile, event, fields, generator=_generator,
                                   fix_success_prefix=options.get("fix", False))
        udp.send(data)
        body = wait_event(events, f"butler/events/task/{outcome}/{task_id}")
        assert TASK_FIELDS <= set(body), (profile, event, body)
        assert body["type"] == outcome and body["executionId"] == execution_id
        assert body["host"] == "sense-node-07" and "qrs" not in body
    # distribute with 12+ fields: the message is re-joined with ';'
    task_id = guid()
    udp.send(datagram("butler-v15", "distribute", task_id=task_id,
                      message="Exiting execute of Distribute task request.; Result; Success"))
    body = wait_event(events, f"butler/events/task/distribute/{task_id}")
    assert body["message"] == "Exiting execute of Distribute task request.; Result; Success"
    # engine reload failed: 9 fields
    app_id = guid()
    udp.send(datagram("engine", "engine-reload-failed", app_id=app_id))
    body = wait_event(events, f"butler/events/engine/reload-failed/{app_id}")
    assert body["type"] == "engine-reload-failed" and body["appId"] == app_id
    assert {"host", "sessionId", "userDirectory", "userId", "logTimestamp", "level",
            "message", "receivedAt"} <= set(body)


# Expected outcome per variant with udp.max_message_bytes 1024 and an allow-list
# of 127.0.0.1: a drop reason, or "event" for the variants Butler accepts.
VARIANT_EXPECT = {
    "M01": {"field_count": 1}, "M02": {"field_count": 1}, "M03": {"prefix": 3},
    "M06": {"prefix": 3}, "M07": {"empty": 3}, "M08": {"size": 2},
    # 14 variants of one datagram (one ExecutionId): the first is decoded with U+FFFD and
    # goes out, the other 13 are its duplicates.
    "M09": {"duplicate": 13},
    "M10": {"prefix": 1}, "M13": {"guid": 2}, "M22": {"source": 1}, "M23": {"prefix": 1},
    "M04": "event", "M05": "event", "M11": "event", "M14": "event",
    "M15": "event", "M20": "event",
    # 501 characters fit the 1024-byte limit (truncated to 500, accepted); the others do not.
    "M12": {"size": 3},
}


def test_rejected_variants_are_counted_by_reason(butlers, events):
    butler = butlers(udp_yaml=["max_message_bytes: 1024", "allowed_sources: [127.0.0.1/32]"])
    udp = Udp(butler.udp_port)
    for variant, expect in VARIANT_EXPECT.items():
        before = metrics(butler)
        sent = appender_emu.variant_datagrams(variant, profile="butler-v15", event="task-failed",
                                              generator=_generator)
        before_events = len(event_messages(events))
        for data, options in sent:
            udp.send(data, source=options.get("source"))
        if expect == "event":
            wait_until(lambda: len(event_messages(events)) - before_events >= len(sent) or
                       (variant == "M15" and len(event_messages(events)) - before_events >= 2),
                       5, message=f"{variant} accepted")
            continue
        for reason, count in expect.items():
            base = metric(butler, "butler_udp_dropped_total", {"reason": reason}, before)
            wait_until(lambda: dropped(butler, reason) - base >= count, 5,
                       message=f"{variant}: {count} drop(s) with reason {reason}")
            assert dropped(butler, reason) - base == count, variant
    assert butler.process.poll() is None


def expected_text(raw):
    """What Butler makes of a field's bytes: decoded as Python (a standard decoder) does, one
    U+FFFD per invalid sequence, control characters removed."""
    return "".join(c for c in raw.decode("utf-8", "replace") if ord(c) >= 0x20 and c != "\x7f")


def test_invalid_utf8_is_decoded_and_the_alert_goes_out(butlers, events, http_sink):
    """Contract 5: bytes that are not valid UTF-8 are decoded as U+FFFD and counted; the event
    and its alert go out as in the Node.js Butler. Anything else malformed stays dropped."""
    butler = butlers(extra_yaml=f"""
slack: {{ webhook_url: "{http_sink.url}/slack" }}
routes:
  - name: to-slack
    match: butler/events/task/failed/#
    to: slack
    template: "{{{{taskName}}}} | {{{{appName}}}} | {{{{message}}}}"
""")
    udp = Udp(butler.udp_port)
    before = metrics(butler)
    cases = [  # (task name, app name, message) as bytes
        (b"F\xf6rs\xe4ljning", b"Sales", b"Max retries reached"),  # windows-1252
        (b"Reload \xe2\x82", b"\xc0\xaf App", b"surrogate \xed\xa0\x80 and \xf4\x90\x80\x80"),
        (b"\xff" * 400, b"A\xc3", b"end \xf0\x9f\x98"),  # 400 bad bytes: 1200 decoded
    ]
    sent = []
    for task_name, app_name, message in cases:
        task_id, execution_id = guid(), guid()
        data = b";".join([b"/scheduler-task-failed/", b"sense-node-01", task_name, app_name,
                          b"INTERNAL\\sa_scheduler", task_id.encode(), APP_SALES.encode(),
                          b"2026-03-14 02:16:07,482", b"ERROR", execution_id.encode(), message])
        udp.send(data)
        sent.append((task_id, task_name, app_name, message))
    for task_id, task_name, app_name, message in sent:
        body = wait_event(events, f"butler/events/task/failed/{task_id}")  # strict JSON, UTF-8
        name = expected_text(task_name)
        if len(name.encode()) > 500:  # cut on a character boundary at 500 bytes
            name = name.encode()[:498].decode()
        assert body["taskName"] == name, body
        assert body["appName"] == expected_text(app_name), body
        assert body["message"] == expected_text(message), body
        assert "\ufffd" in body["taskName"] + body["appName"] + body["message"]
        text = f"{body['taskName']} | {body['appName']} | {body['message']}"
        alerts = http_sink.wait_for(1, 10, lambda r, text=text: r["path"] == "/slack"
                                    and r["json"]["text"] == text)
        assert alerts, text
    wait_until(lambda: metric(butler, "butler_udp_utf8_replaced_total") -
               metric(butler, "butler_udp_utf8_replaced_total", text=before) == len(cases), 5,
               message="utf8_replaced counted")
    # Valid UTF-8 is not counted; a bad byte where a GUID or the prefix belongs still drops.
    udp.send(datagram("butler-v15", "task-failed", task_name="Försäljning €"))
    base_guid, base_prefix = dropped(butler, "guid"), dropped(butler, "prefix")
    task_id = guid()
    good = datagram("butler-v15", "task-failed", task_id=task_id)
    udp.send(good.replace(task_id.encode(), task_id[:-1].encode() + b"\xff"))
    udp.send(good.replace(b"/scheduler-task-failed/", b"/scheduler-task-\xe4iled/"))
    wait_until(lambda: dropped(butler, "guid") - base_guid == 1 and
               dropped(butler, "prefix") - base_prefix == 1, 5, message="guid and prefix drops")
    text = metrics(butler)
    assert metric(butler, "butler_udp_utf8_replaced_total", text=text) - \
        metric(butler, "butler_udp_utf8_replaced_total", text=before) == len(cases)
    assert 'reason="utf8"' not in text
    assert "not valid UTF-8: decoded with U+FFFD" in butler.log()
    assert butler.process.poll() is None


def test_duplicate_execution_id_is_one_event(butlers, events):
    butler = butlers()
    udp = Udp(butler.udp_port)
    task_id, execution_id = guid(), guid()
    data = datagram("butler-v15", "task-failed", task_id=task_id, execution_id=execution_id)
    for _ in range(3):
        udp.send(data)
    marker = guid()
    udp.send(datagram("butler-v15", "task-failed", task_id=marker))
    wait_event(events, f"butler/events/task/failed/{marker}")
    wait_until(lambda: dropped(butler, "duplicate") >= 2, 5, message="duplicates counted")
    assert len([m for m in event_messages(events) if task_id in m["topic"]]) == 1


# ------------------------------------------------------------------ routes


@pytest.fixture
def smtp_sink():
    from smtp_sink import SmtpSink

    with SmtpSink() as sink:
        yield sink


def test_routes_to_every_sink(butlers, events, http_sink, smtp_sink):
    url = http_sink.url
    routes = f"""
smtp: {{ url: "{smtp_sink.url}", from: "butler@example.com" }}
slack: {{ webhook_url: "{url}/slack" }}
teams: {{ webhook_url: "{url}/teams" }}
routes:
  - name: to-slack
    match: butler/events/task/failed/#
    to: slack
    channel: "#qlik-alerts"
    template: "Reload of {{{{taskName}}}} ({{{{appName}}}}) failed on {{{{host}}}}"
  - name: to-teams
    match: butler/events/task/failed/#
    to: teams
    title: "Sense alert"
  - name: hook-post
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{url}/hook-post"
  - name: hook-put
    match: butler/events/task/failed/#
    to: webhook
    method: PUT
    webhook_url: "{url}/hook-put"
  - name: mail
    match: butler/events/task/failed/#
    to: email
    recipients: [ops@example.com, qlik@example.com]
    subject: "Failed: {{{{taskName}}}}"
  - name: republish
    match: butler/events/task/failed/#
    to: mqtt
    topic: alerts/failed
    template: "{{{{taskName}}}} / {{{{user}}}}"
"""
    butler = butlers(extra_yaml=routes, mqtt_extra=["legacy_topics: true"])
    udp = Udp(butler.udp_port)
    task_id = guid()
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id, task_name="Reload Ops"))
    body = wait_event(events, f"butler/events/task/failed/{task_id}")

    def one(path):
        return http_sink.wait_for(1, 10, lambda r: r["path"] == path)[0]

    slack = one("/slack")
    assert slack["method"] == "POST"
    assert slack["json"]["text"] == "Reload of Reload Ops (Sales Dashboard) failed on sense-node-01"
    assert slack["json"].get("channel") == "#qlik-alerts"
    teams = one("/teams")["json"]
    attachment = teams["attachments"][0]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["content"]["type"] == "AdaptiveCard"
    assert "Reload Ops" in json.dumps(attachment["content"])
    post, put = one("/hook-post"), one("/hook-put")
    assert post["method"] == "POST" and put["method"] == "PUT"
    assert post["json"]["taskId"] == task_id and put["json"]["executionId"] == body["executionId"]
    mail = smtp_sink.wait_for(1, 10)[0]
    assert mail["subject"] == "Failed: Reload Ops"
    assert sorted(mail["rcpt_to"]) == ["ops@example.com", "qlik@example.com"]
    assert mail["mail_from"] == "butler@example.com"
    republished = events.wait_for(lambda m: m["topic"] == "alerts/failed", 10)[0]
    assert republished["payload"].decode() == "Reload Ops / INTERNAL\\sa_scheduler"
    # Node.js Butler topics
    assert events.wait_for(lambda m: m["topic"] == "qliksense/task_failure")[0][
        "payload"] == b"Reload Ops"
    full = json.loads(events.wait_for(lambda m: m["topic"] == "qliksense/task_failure_full")[0][
        "payload"])
    assert full["taskId"] == task_id
    aborted_task = guid()
    udp.send(datagram("butler-v15", "task-aborted", task_id=aborted_task, task_name="Reload Abo"))
    assert events.wait_for(lambda m: m["topic"] == "qliksense/task_aborted")[0][
        "payload"] == b"Reload Abo"
    assert json.loads(events.wait_for(lambda m: m["topic"] == "qliksense/task_aborted_full")[0][
        "payload"])["taskId"] == aborted_task


def test_rate_limit_retry_after_and_deadletter(butlers, events, http_sink):
    url = http_sink.url
    routes = f"""
routes:
  - name: limited
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{url}/limited"
    rate_limit: {{ key: "{{{{taskId}}}}", window_s: 300 }}
  - name: flaky
    match: butler/events/task/aborted/#
    to: webhook
    webhook_url: "{url}/flaky"
  - name: broken
    match: butler/events/task/success/#
    to: webhook
    webhook_url: "{url}/broken"
"""
    butler = butlers(extra_yaml=routes)
    udp = Udp(butler.udp_port)
    task_id = guid()
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    other = guid()
    udp.send(datagram("butler-v15", "task-failed", task_id=other))
    http_sink.wait_for(2, 10, lambda r: r["path"] == "/limited")
    wait_until(lambda: metric(butler, "butler_route_deliveries_total",
                              {"route": "limited", "outcome": "rate_limited"}) == 1, 10,
               message="one suppressed delivery")
    limited = [r for r in http_sink.requests if r["path"] == "/limited"]
    assert sorted(r["json"]["taskId"] for r in limited) == sorted([task_id, other])

    # 429 with Retry-After, then 200: delivered once, after the pause.
    http_sink.fail(429, times=1, retry_after=1)
    udp.send(datagram("butler-v15", "task-aborted"))
    flaky = http_sink.wait_for(2, 15, lambda r: r["path"] == "/flaky")
    assert [r["status"] for r in flaky] == [429, 200]
    assert flaky[1]["t"] - flaky[0]["t"] >= 0.9

    # 500 forever: retried, then <root>/deadletter/<topic>.
    http_sink.fail(500, times=1000)
    success_task = guid()
    udp.send(datagram("butler-v15", "task-success", task_id=success_task))
    letter = events.wait_for(lambda m: m["topic"] == (
        f"butler/deadletter/butler/events/task/success/{success_task}"), 20)[0]
    body = json.loads(letter["payload"])
    assert body["attempts"] >= 2 and body["topic"].endswith(success_task) and body["error"]
    assert len([r for r in http_sink.requests if r["path"] == "/broken"]) == body["attempts"]
    assert metric(butler, "butler_route_deliveries_total",
                  {"route": "broken", "outcome": "failed"}) == 1


# -------------------------------------------------------------- enrichment


def test_enrichment_condition_and_dotted_template(butlers, events, qrs, http_sink):
    routes = f"""
routes:
  - name: finance-only
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{http_sink.url}/finance"
    condition: {{ custom_property: {{ name: Department, value: Finance }} }}
  - name: owner
    match: butler/events/task/failed/#
    to: mqtt
    topic: alerts/owner
    template: "{{{{taskName}}}} owned by {{{{qrs.appOwner.userId}}}} tags {{{{qrs.taskTags}}}}"
"""
    butler = butlers(qrs=qrs, extra_yaml=routes)
    udp = Udp(butler.udp_port)
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_HR, app_id=APP_HR,
                      task_name="Reload HR Headcount"))
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_FINANCE, app_id=APP_FINANCE,
                      task_name="Reload Finance"))
    body = wait_event(events, f"butler/events/task/failed/{TASK_FINANCE}", 10)
    assert QRS_FIELDS <= set(body["qrs"]), body
    assert "nightly" in body["qrs"]["taskTags"]
    assert {"name": "Department", "value": "Finance"} in body["qrs"]["taskCustomProperties"]
    assert body["qrs"]["appOwner"] and body["qrs"]["appOwner"]["userId"]
    wait_event(events, f"butler/events/task/failed/{TASK_HR}", 10)
    finance = http_sink.wait_for(1, 10, lambda r: r["path"] == "/finance")
    wait_until(lambda: metric(butler, "butler_route_deliveries_total",
                              {"route": "finance-only", "outcome": "condition"}) == 1, 10,
               message="HR event filtered by the condition")
    assert [r["json"]["taskId"] for r in http_sink.requests if r["path"] == "/finance"] == [
        TASK_FINANCE]
    assert finance[0]["json"]["qrs"]["taskCustomProperties"]
    owner = events.wait_for(lambda m: m["topic"] == "alerts/owner", 10, count=2)
    texts = sorted(m["payload"].decode() for m in owner)
    assert any(t.startswith("Reload Finance owned by ") and "nightly" in t for t in texts), texts


@pytest.mark.parametrize("mode", ["slow", "down", "absent"])
def test_enrichment_failure_still_publishes(mode, workdir, butlers, events, qrs):
    target = qrs
    if mode == "slow":
        qrs.control("POST", "/_sim/faults", {"match": {"path_re": "/qrs/"},
                                             "action": {"type": "delay", "ms": 8000}})
    elif mode == "down":
        qrs.control("POST", "/_sim/faults", {"match": {"path_re": "/qrs/"},
                                             "action": {"type": "status", "status": 503}})
    else:
        class Absent:  # nothing listens there
            port = free_port()
            pki_dir = qrs.pki_dir
        target = Absent
    butler = butlers(qrs=target)
    udp = Udp(butler.udp_port)
    started = time.monotonic()
    udp.send(datagram("butler-v15", "task-failed", task_id=TASK_SALES, app_id=APP_SALES))
    body = wait_event(events, f"butler/events/task/failed/{TASK_SALES}", 10)
    elapsed = time.monotonic() - started
    assert body["qrs"] is None and body["enrichError"], body
    assert elapsed < 7, f"{mode}: published after {elapsed:.1f}s"


# ------------------------------------------------- shipped file, simulator


def shipped_pattern(appender):
    path = os.path.join(ROOT, "config", "sense", "LocalLogConfig.xml")
    for node in ElementTree.parse(path).getroot().iter("appender"):
        if node.get("name") == appender:
            for param in node.iter("param"):
                if param.get("name") == "conversionpattern":
                    return param.get("value")
    raise AssertionError(f"{appender} not in {path}")


def test_shipped_appender_failed_reload_reaches_slack(butlers, http_sink):
    pattern = shipped_pattern("TaskFailLogger")
    prefix = pattern.split(";", 1)[0]
    # The emulator renders the same layout as the shipped pattern.
    assert appender_emu.PROFILES["butler-v15"]["task-failed"][0] == prefix
    assert pattern.count(";") == 10
    butler = butlers(extra_yaml=f"""
slack: {{ webhook_url: "{http_sink.url}/slack" }}
routes:
  - name: failed-to-slack
    match: butler/events/task/failed/#
    to: slack
""")
    data = datagram("butler-v15", "task-failed", task_id=TASK_SALES, app_id=APP_SALES,
                    host="sense-prod-03", task_name="Reload Sales Dashboard",
                    app_name="Sales Dashboard",
                    message="Task finished with state FinishedFail. Max retries reached.")
    assert data.startswith(prefix.encode() + b";")
    Udp(butler.udp_port).send(data)
    text = http_sink.wait_for(1, 10, lambda r: r["path"] == "/slack")[0]["json"]["text"]
    for needle in ("Reload Sales Dashboard", "Sales Dashboard", "sense-prod-03",
                   "Max retries reached"):
        assert needle in text, (needle, text)
    assert "{" not in text.splitlines()[0], text  # readable, not raw JSON


def test_qrs_simulator_failed_run_end_to_end(workdir, broker, events):
    udp_port = None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        udp_port = s.getsockname()[1]
    simdir = tempfile.mkdtemp(prefix="butler-qrs-udp-")
    with recorded_qrs_sim(simdir, udp_target=f"127.0.0.1:{udp_port}") as sim:
        butler = Butler(workdir, broker, qrs=sim, udp=udp_port, http_yaml=[]).start()
        try:
            sim.control("PATCH", f"/_sim/tasks/{TASK_FINANCE}",
                        {"maxRetries": 0, "run": {"outcomes": ["fail"], "durationMs": 100}})
            status, _, _ = sim.qrs("POST", f"/qrs/task/{TASK_FINANCE}/start")
            assert status in (200, 201, 204), status
            body = wait_event(events, f"butler/events/task/failed/{TASK_FINANCE}", 15)
            assert body["taskId"] == TASK_FINANCE and body["appId"] == APP_FINANCE
            assert body["qrs"] and body["qrs"]["executionStatus"] == "FinishedFail", body
            assert body["qrs"]["scriptLogTail"], body["qrs"]
        finally:
            butler.stop(signal.SIGKILL)


# ------------------------------------------------------------ robustness


def test_malformed_flood_keeps_butler_alive(butlers, events):
    butler = butlers(udp_yaml=["max_message_bytes: 1024"])
    udp = Udp(butler.udp_port)
    rng = random.Random(7)
    payloads = []
    for variant in appender_emu.variants():
        if variant["id"] in ("M21", "M22"):
            continue
        payloads += [d for d, _ in appender_emu.variant_datagrams(variant["id"],
                                                                  generator=_generator)]
    while len(payloads) < 2200:
        payloads.append(bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300))))
    payloads += [b"x" * 2000] * 50  # oversize for the 1024-byte limit
    for i, data in enumerate(payloads):
        udp.send(data)
        if i % 200 == 199:  # moderate pace: the test is about parsing, not the kernel buffer
            time.sleep(0.005)
    wait_until(lambda: metric(butler, "butler_udp_received_total") >= len(payloads), 15,
               message="every datagram received")
    text = metrics(butler)
    assert metric(butler, "butler_udp_dropped_total", text=text) >= 2000
    assert metric(butler, "butler_udp_dropped_total", {"reason": "size"}, text) >= 50
    assert butler.process.poll() is None
    task_id = guid()
    udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    wait_event(events, f"butler/events/task/failed/{task_id}")


# --------------------------------------------------------- broker outage


class DurableSubscriber:
    """A persistent-session subscriber: it misses nothing across broker restarts."""

    def __init__(self, broker, topic):
        self.ids, self.count = set(), 0
        self.client = mqtt.Client(client_id=f"durable-{os.getpid()}-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.topic = topic
        self.client.on_connect = lambda c, *a, **k: c.subscribe(topic, 1)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.reconnect_delay_set(1, 2)  # come back soon after the broker restarts
        self.client.connect("127.0.0.1", broker.port, clean_start=False, properties=properties)
        self.client.loop_start()
        wait_until(self.client.is_connected, 10, message="durable subscriber")

    def _on_message(self, client, userdata, message):
        self.count += 1
        self.ids.add(json.loads(message.payload)["executionId"])

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def send_during_outage(butler, udp, count):
    ids = []
    for i in range(count):
        execution_id = guid()
        ids.append(execution_id)
        udp.send(datagram("butler-v15", "task-failed", execution_id=execution_id))
        if i % 50 == 49:
            time.sleep(0.01)  # ~5,000/s: moderate, so the kernel keeps every datagram
    wait_until(lambda: metric(butler, "butler_events_spooled_total") >= count, 10,
               message="every accepted event spooled")
    return ids


@pytest.mark.parametrize("kill", [False, True])
def test_broker_outage_events_published_after_reconnect(kill, workdir, broker, butlers):
    subscriber = DurableSubscriber(broker, "butler/events/#")
    try:
        butler = butlers()
        udp = Udp(butler.udp_port)
        broker.stop()
        wait_until(lambda: metric(butler, "butler_mqtt_connected") == 0, 10,
                   message="butler sees the broker gone")
        count = 500
        ids = send_during_outage(butler, udp, count)
        text = metrics(butler)
        received = metric(butler, "butler_udp_received_total", text=text)
        accepted = metric(butler, "butler_udp_accepted_total", text=text)
        if kill:
            butler.process.send_signal(signal.SIGKILL)
            butler.process.wait(10)
        broker.start()
        if kill:
            butler.process = None
            butler.start()
        wait_until(lambda: subscriber.ids >= set(ids), 30,
                   message=f"{count} events after the outage (got {len(subscriber.ids)})")
        lost = len(set(ids) - subscriber.ids)
        print(f"\noutage kill={kill}: sent={count} received={int(received)} "
              f"accepted={int(accepted)} published={len(subscriber.ids & set(ids))} "
              f"deliveries={subscriber.count} lost={lost}")
        assert received == count and accepted == count and lost == 0
    finally:
        subscriber.close()
