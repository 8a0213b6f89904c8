"""QRS change subscriptions as a second event source (docs/qrs-notifications.md):
the real binary, a real broker, the QRS simulator (which calls Butler back), and
the HTTP sink standing in for Slack. Every wait polls with a deadline."""
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from conftest import TASK_SALES, Butler, free_udp_port, recorded_qrs_sim, wait_until
from test_http_api import request as http_request

SECRET = "s3cret-0123456789abcdef"
CHECK_INTERVAL_S = 1


@pytest.fixture(scope="module")
def udp_port():
    return free_udp_port()


@pytest.fixture(scope="module")
def sim(udp_port):
    """A simulator of its own: it sends datagrams to the port the UDP tests give Butler."""
    directory = tempfile.mkdtemp(prefix="butler-notify-")
    with recorded_qrs_sim(directory, udp_target=("127.0.0.1", udp_port)) as s:
        yield s
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def qrs(sim):
    sim.control("POST", "/_sim/reset")
    yield sim


def make_butler(workdir, broker, qrs, http_sink, notifications=True, udp=None,
                check_interval_s=CHECK_INTERVAL_S):
    qrs_yaml = []
    http_yaml = []
    butler = None
    if notifications:
        qrs_yaml = ["notifications:", "  enable: true", "  callback_url: http://127.0.0.1:{port}",
                    f"  secret: {SECRET}", f"  check_interval_s: {check_interval_s}"]
    extra = f"""slack: {{ webhook_url: "{http_sink.url}/slack" }}
routes:
  - name: failed-to-slack
    match: butler/events/task/failed/#
    to: slack
    template: "Reload of {{{{taskName}}}} failed ({{{{executionId}}}})"
"""
    butler = Butler(workdir, broker, qrs=qrs, extra_yaml=extra, http_yaml=http_yaml,
                    udp=udp if udp is not None else False, qrs_yaml=qrs_yaml)
    # The callback URL needs the HTTP port, known only once Butler chose it.
    with open(butler.config_path) as f:
        text = f.read().replace("{port}", str(butler.http_port))
    with open(butler.config_path, "w") as f:
        f.write(text)
    return butler


def subscriptions(qrs):
    status, body = qrs.control("GET", "/_sim/notifications")
    assert status == 200
    return body["subscriptions"]


def deliveries(qrs):
    return qrs.control("GET", "/_sim/notifications")[1]["deliveries"]


def wait_subscriptions(qrs, count, timeout=15.0, butler=None):
    wait_until(lambda: len(subscriptions(qrs)) == count, timeout,
               message=f"{count} subscription(s) in QRS"
                       + (f"; log:\n{butler.log()[-3000:]}" if butler else ""))


def fail_run(qrs, task_id=TASK_SALES):
    """Start a run that fails (no retries) and return nothing; the caller waits for events."""
    status, _ = qrs.control("PATCH", f"/_sim/tasks/{task_id}",
                            {"run": {"outcomes": ["fail"], "durationMs": 150}, "maxRetries": 0})
    assert status == 200
    assert qrs.qrs("POST", f"/qrs/task/{task_id}/start")[0] == 204


def failed_events(client, task_id=TASK_SALES):
    return [m for m in client.messages if m["topic"] == f"butler/events/task/failed/{task_id}"]


def metric(butler, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{butler.http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def assert_one_failure(client, http_sink, source=None, settle_s=1.5):
    """Exactly one failed event and one Slack post: wait for the first, then make
    sure no second arrives within settle_s (the latest time a duplicate could come)."""
    event = client.wait_for(lambda m: m["topic"] == f"butler/events/task/failed/{TASK_SALES}",
                            timeout=20, what="failed event")[0]
    http_sink.wait_for(1, timeout=20, predicate=lambda r: r["path"] == "/slack")
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        assert len(failed_events(client)) == 1, failed_events(client)
        assert len([r for r in http_sink.requests if r["path"] == "/slack"]) == 1
        time.sleep(0.05)
    payload = json.loads(event["payload"])
    assert payload["type"] == "failed" and payload["taskId"] == TASK_SALES
    assert payload["taskName"] == "Reload Sales Dashboard"
    if source is not None:
        assert payload.get("source") == source
    return payload


def test_notifications_only(workdir, broker, client, qrs, http_sink):
    butler = make_butler(workdir, broker, qrs, http_sink).start()
    wait_subscriptions(qrs, 1, butler=butler)
    sub = subscriptions(qrs)[0]
    assert sub["name"].lower() == "executionresult" and sub["change_type"] == 2
    assert sub["url"] == f"http://127.0.0.1:{butler.http_port}/qrs-notification/{SECRET}"
    fail_run(qrs)
    payload = assert_one_failure(client, http_sink, source="qrs")
    assert payload["qrs"]["executionStatus"] == "FinishedFail"
    assert payload["executionId"]
    # The raw notices went through the broker first.
    assert any(m["topic"] == "butler/qrs/notification" for m in client.messages)
    butler.stop()


def test_udp_only(workdir, broker, client, qrs, http_sink, udp_port):
    butler = make_butler(workdir, broker, qrs, http_sink, notifications=False, udp=udp_port).start()
    fail_run(qrs)
    payload = assert_one_failure(client, http_sink)
    assert "source" not in payload  # the UDP event's shape is unchanged
    assert subscriptions(qrs) == []
    butler.stop()


def test_both_sources_one_event(workdir, broker, client, qrs, http_sink, udp_port):
    butler = make_butler(workdir, broker, qrs, http_sink, udp=udp_port).start()
    wait_subscriptions(qrs, 1, butler=butler)
    since = len(deliveries(qrs))
    fail_run(qrs)
    payload = assert_one_failure(client, http_sink, settle_s=2.0)
    # Both sources really fired: the datagram was sent and QRS called back.
    wait_until(lambda: len(deliveries(qrs)) > since, 10, message="a QRS callback")
    status, udp = qrs.control("GET", "/_sim/udp")
    assert any(payload["executionId"] in d["text"] for d in udp["datagrams"])
    assert metric(butler, "butler_qrs_notification_changes_total{outcome=\"duplicate\"}") + \
        metric(butler, "butler_udp_dropped_total{reason=\"duplicate\"}") >= 1
    butler.stop()


def test_clean_restart_leaves_one_subscription(workdir, broker, qrs, http_sink):
    butler = make_butler(workdir, broker, qrs, http_sink, check_interval_s=3600).start()
    wait_subscriptions(qrs, 1, butler=butler)
    butler.stop()
    assert butler.process is None
    wait_subscriptions(qrs, 0)  # removed on clean shutdown
    assert not os.path.exists(os.path.join(workdir, "state", "qrs-notification.handles"))
    butler.start()
    wait_subscriptions(qrs, 1, butler=butler)
    butler.stop()
    wait_subscriptions(qrs, 0)


def test_sigkill_restart_deletes_the_old_subscription(workdir, broker, qrs, http_sink):
    butler = make_butler(workdir, broker, qrs, http_sink, check_interval_s=3600).start()
    wait_subscriptions(qrs, 1, butler=butler)
    old = subscriptions(qrs)[0]["handle"]
    butler.stop(sig=signal.SIGKILL)
    assert [s["handle"] for s in subscriptions(qrs)] == [old]  # a crash cannot clean up
    butler.start()
    # The new one is registered, then the old one (from the handles file) deleted.
    wait_until(lambda: [s["handle"] for s in subscriptions(qrs)] not in ([old], []), 15,
               message="a new subscription")
    wait_subscriptions(qrs, 1, butler=butler)
    assert subscriptions(qrs)[0]["handle"] != old
    butler.stop()
    wait_subscriptions(qrs, 0)


def test_qrs_restart_re_registers(workdir, broker, client, qrs, http_sink):
    butler = make_butler(workdir, broker, qrs, http_sink).start()
    wait_subscriptions(qrs, 1, butler=butler)
    status, body = qrs.control("POST", "/_sim/notifications/forget")
    assert status == 200 and body["forgotten"] >= 1  # 2 while a re-registration is under way
    wait_subscriptions(qrs, 1, butler=butler)  # within check_interval_s
    wait_until(lambda: metric(butler, "butler_qrs_notification_unsubscribe_total{outcome=\"gone\"}")
               >= 1, 10, message="Butler to notice QRS forgot the subscription")
    # Several checks later there is still exactly one, and it still works.
    wait_until(lambda: metric(butler, "butler_qrs_notification_subscribe_total{outcome=\"ok\"}")
               >= 4, 15, message="more periodic checks")
    wait_subscriptions(qrs, 1)
    fail_run(qrs)
    assert_one_failure(client, http_sink, source="qrs")
    butler.stop()
    wait_subscriptions(qrs, 0)


def test_forged_callback_is_refused_and_counted(workdir, broker, client, qrs, http_sink):
    butler = make_butler(workdir, broker, qrs, http_sink).start()
    wait_subscriptions(qrs, 1, butler=butler)
    base = f"http://127.0.0.1:{butler.http_port}/qrs-notification"
    body = json.dumps([{"objectType": "ExecutionResult",
                        "objectID": "11111111-2222-4333-8444-555555555555"}]).encode()
    for url in (base, f"{base}/", f"{base}/wrong-secret-0123456789", f"{base}/{SECRET}x",
                f"{base}/{SECRET[:-1]}", f"{base}/{SECRET}/extra"):
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 404, url
    assert metric(butler, "butler_qrs_notification_refused_total") == 6
    assert not any(m["topic"] == "butler/qrs/notification" for m in client.messages)
    # The real secret is accepted (and published), but only with POST; the answers are
    # checked against docs/api/openapi.json.
    answer = http_request(butler.http_port, "POST", f"/qrs-notification/{SECRET}", body,
                          {"Content-Type": "application/json"})
    assert answer.status == 200 and answer.json == {"status": "accepted"}, answer
    client.wait_for(lambda m: m["topic"] == "butler/qrs/notification", what="the raw notice")
    answer = http_request(butler.http_port, "GET", f"/qrs-notification/{SECRET}")
    assert answer.status == 405 and answer.headers["allow"] == "POST", answer
    assert http_request(butler.http_port, "POST", "/qrs-notification/wrong", body).status == 404
    butler.stop()


def test_slow_and_refused_callbacks(workdir, broker, client, qrs, http_sink):
    """A slow QRS callback still produces the event; a callback QRS never makes is
    covered by later updates of the same execution (or by the UDP source)."""
    butler = make_butler(workdir, broker, qrs, http_sink, check_interval_s=3600).start()
    wait_subscriptions(qrs, 1, butler=butler)
    qrs.control("POST", "/_sim/notifications/config", {"delay_ms": 300, "drop": 1})
    fail_run(qrs)
    assert_one_failure(client, http_sink, source="qrs")
    dropped = [d for d in deliveries(qrs) if d["error"] and "drop" in d["error"]]
    assert len(dropped) == 1
    butler.stop()
