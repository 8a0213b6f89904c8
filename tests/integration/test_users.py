"""Who is on Sense now (contract 9.5, issue 27): the proxy's session and
connection datagrams on udp.proxy_listen become events, the retained active-user
summary, GET /v4/activeusers, the legacy topics, routes on session events, and a
flood on the proxy port that must not cost a single task event on the scheduler
port. The real binary, a real broker and the log-appender emulator; every wait
polls with a deadline."""
import json
import signal
import socket
import threading
import urllib.error
import urllib.request

import pytest

from conftest import Butler, Client, free_udp_port, wait_until
from test_events import DurableSubscriber, Udp, datagram, guid, metric
from test_http_api import OPENAPI, OPENAPI_DOC, validate
import appender_emu

EVENT_FIELDS = {"host", "command", "userDirectory", "userId", "origin", "context", "message",
                "receivedAt"}
ACTIVE = "butler/sense/users/active"

_generator = appender_emu.Generator(seed=2727)


def proxy(profile, event, **fields):
    return appender_emu.render(profile, event, fields, generator=_generator)


@pytest.fixture
def start_butler(workdir, broker):
    started = []

    def make(udp_yaml=(), **kwargs):
        kwargs.setdefault("http_yaml", [])
        port = free_udp_port()
        b = Butler(workdir, broker, udp=True,
                   udp_yaml=[f"proxy_listen: 127.0.0.1:{port}"] + list(udp_yaml), **kwargs)
        b.proxy_port = port
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop(signal.SIGKILL)


@pytest.fixture
def watch(broker):
    c = Client(broker)
    c.subscribe("butler/#")
    c.subscribe("qliksense/#")
    yield c
    c.close()


def active_users(butler):
    url = f"http://127.0.0.1:{butler.http_port}/v4/activeusers"
    with urllib.request.urlopen(url, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        body = json.loads(r.read())
    # Every answer in the shape docs/api/openapi.json declares.
    declared = OPENAPI.response("GET", "/v4/activeusers", 200)
    validate(body, declared["content"]["application/json"]["schema"], "GET /v4/activeusers",
             document=OPENAPI_DOC)
    return body


def summaries(client):
    with client.lock:
        return [json.loads(m["payload"]) for m in client.messages if m["topic"] == ACTIVE]


def wait_summary(client, predicate, timeout=10.0, what="summary"):
    found = client.wait_for(lambda m: m["topic"] == ACTIVE and predicate(json.loads(m["payload"])),
                            timeout, what=what)
    return json.loads(found[-1]["payload"])


def retained_summary(broker):
    """The summary the broker keeps, as a client that connects now sees it."""
    c = Client(broker)
    try:
        c.subscribe(ACTIVE)
        found = c.wait_for(lambda m: m["topic"] == ACTIVE, 5, what="retained summary")
        assert found[0]["retain"]
        return json.loads(found[0]["payload"])
    finally:
        c.close()


# ------------------------------------------------------------------ layouts


@pytest.mark.parametrize("profile", ["proxy-v5", "butler-sos-user", "proxy-legacy"])
def test_each_layout_becomes_its_event(profile, start_butler, watch):
    butler = start_butler()
    udp = Udp(butler.proxy_port)
    cases = [("session-start", "session/start"), ("connection-open", "connection/open"),
             ("connection-close", "connection/close"), ("session-stop", "session/stop")]
    for event, _ in cases:
        udp.send(proxy(profile, event, user_id="jdoe"))
    for event, path in cases:
        topic = f"butler/events/{path}/CORP/jdoe"
        body = json.loads(watch.wait_for(lambda m: m["topic"] == topic, what=topic)[0]["payload"])
        assert set(body) == EVENT_FIELDS
        assert body["userDirectory"] == "CORP" and body["userId"] == "jdoe"
        assert body["host"] == "sense-proxy-01"
        assert body["command"] == appender_emu.PROXY_COMMANDS[event][0]
        if profile == "proxy-legacy":
            assert body["origin"] == body["context"] == body["message"] == ""
        else:
            assert body["origin"] == "AppAccess"
            assert appender_emu.PROXY_COMMANDS[event][1] in body["message"]
            if event.startswith("connection"):
                # The message keeps the ';' of the UserAgent (M23).
                assert body["message"].endswith("UserAgent: 'Mozilla/5.0 (Windows NT 10.0; "
                                                "Win64; x64)'")
                assert body["context"].startswith("/app/")
    assert metric(butler, "butler_udp_proxy_accepted_total") == 4
    # Nothing of it went to the scheduler port's counters.
    assert metric(butler, "butler_udp_received_total") == 0


def test_topic_levels_and_bad_datagrams_counted_by_reason(start_butler, watch):
    butler = start_butler()
    udp = Udp(butler.proxy_port)
    udp.send(proxy("proxy-v5", "session-start", user_directory="EXT", user_id="a/b+c#d"))
    body = json.loads(watch.wait_for(
        lambda m: m["topic"] == "butler/events/session/start/EXT/a_b_c_d")[0]["payload"])
    assert body["userId"] == "a/b+c#d"
    # Invalid UTF-8 (contract 5): decoded as U+FFFD, the event still goes out, counted.
    udp.send(b"/proxy-session/;h;Start session;CORP;F\xf6rs;o;c;m")
    body = json.loads(watch.wait_for(
        lambda m: m["topic"] == "butler/events/session/start/CORP/F\ufffdrs")[0]["payload"])
    assert body["userId"] == "F\ufffdrs"
    bad = {
        "command": [b"/proxy-session/;h;Begin session;D;u;o;c;m",
                    b"/proxy-connection/;h;Start session;D;u;o;c;m"],
        "user": [b"/proxy-session/;h;Start session;;u;o;c;m", b"h;Start session;D;"],
        "field_count": [b"/proxy-session/;h;Start session;D;u;o;c"],
        "prefix": [datagram("butler-v15", "task-failed"), b"h;Start session;D;u;x"],
        "empty": [b";;;", b" "],
    }
    for datagrams in bad.values():
        for d in datagrams:
            udp.send(d)
    for reason, datagrams in bad.items():
        wait_until(lambda: metric(butler, "butler_udp_proxy_dropped_total",
                                  {"reason": reason}) == len(datagrams), 10,
                   message=f"{len(datagrams)} dropped as {reason}")
    assert metric(butler, "butler_udp_proxy_utf8_replaced_total") == 1
    assert metric(butler, "butler_udp_dropped_total") == 0  # the scheduler port's


def test_each_port_has_its_own_allow_list(start_butler, watch):
    """udp.proxy_allowed_sources guards the proxy port only; the scheduler port keeps
    udp.allowed_sources (empty here: any source)."""
    butler = start_butler(udp_yaml=["proxy_allowed_sources: [127.0.0.3]"])
    udp = Udp(butler.proxy_port)
    udp.send(proxy("proxy-v5", "session-start", user_id="spoofed"))  # from 127.0.0.1
    udp.send(proxy("proxy-v5", "session-start", user_id="allowed"), source="127.0.0.3")
    watch.wait_for(lambda m: m["topic"] == "butler/events/session/start/CORP/allowed")
    wait_until(lambda: metric(butler, "butler_udp_proxy_dropped_total",
                              {"reason": "source"}) == 1, 10, message="one source drop")
    task_id = guid()
    Udp(butler.udp_port).send(datagram("butler-v15", "task-failed", task_id=task_id))
    watch.wait_for(lambda m: m["topic"] == f"butler/events/task/failed/{task_id}")
    assert metric(butler, "butler_udp_dropped_total", {"reason": "source"}) == 0
    assert not [m for m in watch.messages if m["topic"].endswith("/spoofed")]


# --------------------------------------------------------- active users


class KeepAlive:
    """Sends a connection event for each named user every 0.2 s, as a user
    who keeps working does, until the name is dropped or stop() is called."""

    def __init__(self, udp):
        self.udp = udp
        self.users = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.wait(0.2):
            for datagram_bytes in list(self.users.values()):
                self.udp.send(datagram_bytes)

    def stop(self):
        self.stopped.set()
        self.thread.join()


def test_retained_summary_start_stop_and_idle_expiry(start_butler, watch, broker):
    butler = start_butler(udp_yaml=["session_idle_s: 3"])
    udp = Udp(butler.proxy_port)
    keep = KeepAlive(Udp(butler.proxy_port))
    try:
        udp.send(proxy("proxy-v5", "session-start", user_id="jdoe", host="proxy-a"))
        udp.send(proxy("butler-sos-user", "session-start", user_id="asmith", host="proxy-b"))
        udp.send(proxy("proxy-legacy", "session-start", user_directory="EXT", user_id="x",
                       host="proxy-b"))
        keep.users["jdoe"] = proxy("proxy-v5", "connection-open", user_id="jdoe", host="proxy-a")
        keep.users["x"] = proxy("proxy-legacy", "connection-close", user_directory="EXT",
                                user_id="x", host="proxy-b")
        both = wait_summary(watch, lambda s: s["count"] == 3, what="3 active users")
        assert sorted(both["users"]) == ["CORP\\asmith", "CORP\\jdoe", "EXT\\x"]
        assert both["perHost"] == {"proxy-a": 1, "proxy-b": 2}
        assert set(both) == {"count", "users", "perHost", "at"}
        assert retained_summary(broker)["count"] == 3
        assert sorted(active_users(butler)["users"]) == sorted(both["users"])

        # A stop ends a session at once.
        udp.send(proxy("proxy-v5", "session-stop", user_id="asmith", host="proxy-b"))
        two = wait_summary(watch, lambda s: s["count"] == 2, what="asmith gone")
        assert sorted(two["users"]) == ["CORP\\jdoe", "EXT\\x"]
        assert metric(butler, "butler_users_expired_total") == 0
        # EXT\x stops working and expires; jdoe's connections keep him active.
        del keep.users["x"]
        last = wait_summary(watch, lambda s: s["count"] == 1, what="EXT\\x expired")
        assert last["users"] == ["CORP\\jdoe"] and last["perHost"] == {"proxy-a": 1}
        assert metric(butler, "butler_users_expired_total") == 1
    finally:
        keep.stop()
    # Then jdoe too, without any event.
    empty = wait_summary(watch, lambda s: s["count"] == 0, what="no active users")
    assert empty["users"] == [] and empty["perHost"] == {}
    assert active_users(butler)["count"] == 0
    assert retained_summary(broker)["count"] == 0


def test_summary_is_published_at_most_once_a_second(start_butler, watch):
    butler = start_butler()
    udp = Udp(butler.proxy_port)
    import time
    started = time.monotonic()
    for i in range(300):
        udp.send(proxy("proxy-v5", "session-start", user_id=f"user{i:03d}"))
    wait_summary(watch, lambda s: s["count"] == 300, what="300 active users")
    elapsed = time.monotonic() - started
    # 300 changes, but one summary per second at most (+1 for the edges).
    assert len(summaries(watch)) <= int(elapsed) + 2
    assert active_users(butler)["count"] == 300


def test_eviction_at_active_users_max(start_butler, watch):
    butler = start_butler(udp_yaml=["active_users_max: 3"])
    udp = Udp(butler.proxy_port)
    for name in ["u1", "u2", "u3", "u4", "u5"]:
        udp.send(proxy("proxy-v5", "session-start", user_id=name))
        watch.wait_for(lambda m: m["topic"] == f"butler/events/session/start/CORP/{name}")
    wait_until(lambda: active_users(butler)["users"] == ["CORP\\u3", "CORP\\u4", "CORP\\u5"], 5)
    assert metric(butler, "butler_users_evicted_total") == 2


def test_state_rebuilt_from_the_retained_summary_after_restart(start_butler, watch, broker):
    butler = start_butler()
    udp = Udp(butler.proxy_port)
    for name in ["jdoe", "asmith", "bking"]:
        udp.send(proxy("proxy-v5", "session-start", user_id=name))
    wait_summary(watch, lambda s: s["count"] == 3, what="3 active users")
    butler.stop(signal.SIGKILL)
    butler.start()
    # Before any new datagram, the restarted Butler knows who was on.
    wait_until(lambda: active_users(butler)["count"] == 3, 10, message="state rebuilt")
    assert sorted(active_users(butler)["users"]) == ["CORP\\asmith", "CORP\\bking", "CORP\\jdoe"]
    assert active_users(butler)["perHost"] == {"sense-proxy-01": 3}
    # And carries on from there: a stop after the restart is one user less.
    watch.messages.clear()
    udp.send(proxy("proxy-v5", "session-stop", user_id="asmith"))
    after = wait_summary(watch, lambda s: s["count"] == 2, what="asmith gone after restart")
    assert sorted(after["users"]) == ["CORP\\bking", "CORP\\jdoe"]
    assert retained_summary(broker)["count"] == 2


def test_rebuilt_when_a_queued_copy_comes_before_the_retained_summary(start_butler, watch, broker):
    # Killed before its own summary reached it, the last run leaves a copy queued
    # in its persistent session: that copy (no retain flag) arrives before the
    # retained summary the resubscription brings, and must not end the rebuild.
    butler = start_butler()
    udp = Udp(butler.proxy_port)
    udp.send(proxy("proxy-v5", "session-start", user_id="jdoe"))
    wait_summary(watch, lambda s: s["count"] == 1, what="1 active user")
    butler.stop(signal.SIGKILL)
    summary = {"count": 2, "users": ["CORP\\jdoe", "CORP\\asmith"],
               "perHost": {"sense-proxy-01": 2}, "at": "2026-12-07T03:00:00.000Z"}
    publisher = Client(broker, "summary-writer")
    try:
        publisher.publish("butler/sense/users/active", json.dumps(summary), qos=1, retain=True)
    finally:
        publisher.close()
    butler.start()
    wait_until(lambda: active_users(butler)["count"] == 2, 10, message="state rebuilt")
    assert sorted(active_users(butler)["users"]) == ["CORP\\asmith", "CORP\\jdoe"]


def test_activeusers_is_404_without_the_proxy_port(workdir, broker):
    butler = Butler(workdir, broker, http_yaml=[], udp=True).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as error:
            active_users(butler)
        assert error.value.code == 404
    finally:
        butler.stop(signal.SIGKILL)


def test_proxy_port_alone_without_the_scheduler_port(workdir, broker, watch):
    """udp.proxy_listen works with udp.enable false: its own port, events and summary."""
    port = free_udp_port()
    butler = Butler(workdir, broker, http_yaml=[], udp=False)
    with open(butler.config_path) as f:
        text = f.read()
    assert "udp: { enable: false }" in text
    with open(butler.config_path, "w") as f:
        f.write(text.replace("udp: { enable: false }",
                             f"udp: {{ enable: false, proxy_listen: 127.0.0.1:{port} }}"))
    butler.start()
    try:
        Udp(port).send(proxy("proxy-v5", "session-start", user_id="alone"))
        watch.wait_for(lambda m: m["topic"] == "butler/events/session/start/CORP/alone")
        wait_summary(watch, lambda s: s["users"] == ["CORP\\alone"], what="the summary")
        assert active_users(butler)["count"] == 1
    finally:
        butler.stop(signal.SIGKILL)


# ------------------------------------------------------------------ legacy


def test_legacy_topics(start_butler, watch):
    butler = start_butler(mqtt_extra=["legacy_topics: true"])
    udp = Udp(butler.proxy_port)
    expected = {}
    for event, topic in [("session-start", "session/start"), ("session-stop", "session/stop"),
                         ("connection-open", "connection/open"),
                         ("connection-close", "connection/close")]:
        udp.send(proxy("proxy-v5", event, user_id="jdoe", host="sense-proxy-07"))
        expected[f"qliksense/{topic}"] = b"sense-proxy-07: CORP/jdoe"
    for topic, payload in expected.items():
        found = watch.wait_for(lambda m: m["topic"] == topic, what=topic)
        assert found[0]["payload"] == payload


# ------------------------------------------------------------------ routes


def test_route_with_rate_limit_on_session_events(start_butler, watch, http_sink):
    routes = f"""
routes:
  - name: logins
    match: butler/events/session/start/CORP/#
    to: webhook
    webhook_url: "{http_sink.url}/logins"
    rate_limit: {{ key: "{{{{userId}}}}", window_s: 300 }}
"""
    butler = start_butler(extra_yaml=routes)
    udp = Udp(butler.proxy_port)
    for name in ["jdoe", "jdoe", "asmith", "jdoe"]:
        udp.send(proxy("proxy-v5", "session-start", user_id=name))
    udp.send(proxy("proxy-v5", "session-start", user_directory="EXT", user_id="guest"))
    http_sink.wait_for(2, 10, lambda r: r["path"] == "/logins")
    wait_until(lambda: metric(butler, "butler_route_deliveries_total",
                              {"route": "logins", "outcome": "rate_limited"}) == 2, 10,
               message="two suppressed deliveries")
    logins = [r for r in http_sink.requests if r["path"] == "/logins"]
    assert sorted(r["json"]["userId"] for r in logins) == ["asmith", "jdoe"]


# ---------------------------------------------------------- broker outage


class SessionSubscriber(DurableSubscriber):
    """A persistent-session subscriber keeping the userId of each session event."""

    def _on_message(self, client, userdata, message):
        self.count += 1
        self.ids.add(json.loads(message.payload)["userId"])


@pytest.mark.parametrize("kill", [False, True])
def test_broker_outage_session_events_published_after_reconnect(kill, start_butler, broker):
    """Contract 7: while the broker is away session events go to the spool, and are
    published after reconnect, or after a SIGKILL and restart."""
    import time
    subscriber = SessionSubscriber(broker, "butler/events/session/#")
    try:
        butler = start_butler()
        udp = Udp(butler.proxy_port)
        broker.stop()
        wait_until(lambda: metric(butler, "butler_mqtt_connected") == 0, 10,
                   message="butler sees the broker gone")
        users = [f"outage{i:03d}" for i in range(300)]
        for i, name in enumerate(users):
            udp.send(proxy("proxy-v5", "session-start", user_id=name))
            if i % 50 == 49:
                time.sleep(0.01)  # moderate, so the kernel keeps every datagram
        wait_until(lambda: metric(butler, "butler_events_spooled_total") >= len(users), 10,
                   message="every session event spooled")
        assert metric(butler, "butler_udp_proxy_accepted_total") == len(users)
        if kill:
            butler.process.send_signal(signal.SIGKILL)
            butler.process.wait(10)
        broker.start()
        if kill:
            butler.process = None
            butler.start()
        wait_until(lambda: subscriber.ids >= set(users), 30,
                   message=f"{len(users)} session events after the outage "
                           f"(got {len(subscriber.ids)})")
    finally:
        subscriber.close()


# ------------------------------------------------------------------- load


def test_proxy_flood_loses_no_task_event(start_butler, watch):
    """A flood on the proxy port while task events flow on the scheduler port:
    every task event is published (separate sockets, rings and threads)."""
    butler = start_butler()
    flood_target = ("127.0.0.1", butler.proxy_port)
    stop = threading.Event()
    sent = [0]

    def flood():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            payloads = [proxy("proxy-v5", "connection-open", user_id=f"u{i}") for i in range(64)]
            while not stop.is_set():
                for p in payloads:
                    s.sendto(p, flood_target)
                sent[0] += len(payloads)

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        wait_until(lambda: sent[0] >= 20000, 30, message="the flood to be under way")
        udp = Udp(butler.udp_port)
        task_ids = [guid() for _ in range(200)]
        for task_id in task_ids:
            udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
        topics = {f"butler/events/task/failed/{t}" for t in task_ids}
        watch.wait_for(lambda m: m["topic"] in topics, 30, count=200, what="200 task events")
    finally:
        stop.set()
        flooder.join()
    assert metric(butler, "butler_udp_dropped_total") == 0
    assert metric(butler, "butler_udp_accepted_total") == 200
    assert metric(butler, "butler_udp_proxy_received_total") > 0


# ------------------------------------------------------ the appender file


def test_shipped_proxy_appender_patterns_are_accepted(start_butler, watch):
    """config/sense/proxy/LocalLogConfig.xml: each conversion pattern, rendered as
    log4net would (properties substituted, %message last), becomes its event."""
    import os
    import xml.etree.ElementTree as ElementTree
    from conftest import ROOT

    path = os.path.join(ROOT, "config", "sense", "proxy", "LocalLogConfig.xml")
    root = ElementTree.parse(path).getroot()
    patterns = {}
    for node in root.iter("appender"):
        for param in node.iter("param"):
            if param.get("name") == "conversionpattern":
                patterns[node.get("name")] = param.get("value")
    assert set(patterns) == {"SessionLogger", "ConnectionLogger"}
    loggers = {ref.get("ref") for ref in root.find("logger").iter("appender-ref")}
    assert loggers == set(patterns) and root.find("logger").get("name") == "AuditActivity.Proxy"
    butler = start_butler()
    udp = Udp(butler.proxy_port)
    cases = [("SessionLogger", "Start session", "Start session for user 'CORP\\xml'",
              "session/start"),
             ("ConnectionLogger", "Open connection",
              "connection Opened for session 'x'; UserAgent: 'a;b'", "connection/open")]
    for appender, command, message, _ in cases:
        text = (patterns[appender].replace("%hostname", "sense-proxy-09")
                .replace("%property{Command}", command)
                .replace("%property{UserDirectory}", "CORP")
                .replace("%property{UserId}", "xml")
                .replace("%property{Origin}", "AppAccess")
                .replace("%property{Context}", "/hub/")
                .replace("%message", message))
        assert "%" not in text
        udp.send(text.encode("utf-8"))
    for _, command, message, path_part in cases:
        topic = f"butler/events/{path_part}/CORP/xml"
        body = json.loads(watch.wait_for(lambda m: m["topic"] == topic, what=topic)[0]["payload"])
        assert body["command"] == command and body["message"] == message
        assert body["host"] == "sense-proxy-09"
