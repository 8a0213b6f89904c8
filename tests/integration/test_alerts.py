"""Alerts right, sent once, never silently dropped (issue 25) and templates
escaped for the body they go into (issue 24 §4): the real binary, a real
broker, the QRS simulator, the HTTP sink and the SMTP sink. Every wait polls
with a deadline."""
import json
import time

from conftest import wait_until
from test_events import (Udp, butlers, datagram, events, guid, metric,  # noqa: F401 (fixtures)
                         smtp_sink, wait_event)


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
