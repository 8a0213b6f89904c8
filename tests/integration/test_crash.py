"""Nothing acknowledged is lost (contract section 7), proved by breaking things.

(a) 300 task-start requests with distinct requestIds, published at QoS 1 by a
    client with a persistent session; Butler is killed with SIGKILL after about
    a fifth of the starts and restarted. Every request must start its task
    exactly once.
(b) The same with the broker stopped and restarted mid-stream.
(c) 300 requests for only six tasks (50 each): after a SIGKILL mid-stream, every
    request the workers had not begun is started by its own QRS call, even
    though other requests started the same task meanwhile. Only the few under
    way at the kill (at most one per worker) may be answered from QRS's state,
    and their answers say so ("replay": "verified").
(f) A spool file with a torn record and garbage is recovered at start.
Each run prints: sent, started, duplicates, lost. Lost and duplicates must be 0.
"""
import json
import os
import signal
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
import pytest

from conftest import Butler, Client, start_calls, wait_until

REQUESTS = 300
APP_ID = "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34"


def crash_fixture():
    """One task per request, so the simulator's calls tell exactly-once apart."""
    with open(os.path.join(os.path.dirname(__file__), "..", "sim", "fixture.json")) as f:
        fixture = json.load(f)
    namespace = uuid.UUID("6c1e6e57-0b37-4c5e-9a8e-1f0c2b3a4d5e")
    fixture["tasks"] = [
        {"id": str(uuid.uuid5(namespace, str(i))), "name": f"Crash test task {i}",
         "taskType": 0, "appId": APP_ID, "tags": [], "customProperties": []}
        for i in range(REQUESTS)
    ]
    return fixture


class PersistentPublisher:
    """A QoS 1 publisher with a persistent session (resends what was not acked)."""

    def __init__(self, broker):
        self.client = mqtt.Client(client_id=f"crash-publisher-{os.getpid()}",
                                  protocol=mqtt.MQTTv5)
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect("127.0.0.1", broker.port, clean_start=False, properties=properties)
        self.client.loop_start()

    def publish_all(self, tasks):
        infos = []
        for i, task in enumerate(tasks):
            payload = json.dumps({"taskId": task["id"], "requestId": f"crash-{i}"})
            infos.append(self.client.publish("butler/task/start", payload, qos=1))
        return infos

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def start_counts(qrs):
    counts = {}
    for call in start_calls(qrs):
        if (call.get("response") or {}).get("status") != 204:
            continue
        task_id = call["path"].split("/")[3]
        counts[task_id] = counts.get(task_id, 0) + 1
    return counts


def report(name, tasks, counts):
    started = sum(1 for t in tasks if counts.get(t["id"], 0) >= 1)
    duplicates = sum(counts.get(t["id"], 0) - 1 for t in tasks if counts.get(t["id"], 0) > 1)
    lost = sum(1 for t in tasks if counts.get(t["id"], 0) == 0)
    print(f"\n{name}: sent={len(tasks)} started={started} duplicates={duplicates} lost={lost}")
    return started, duplicates, lost


def all_answered(client):
    ids = {r["requestId"] for r in client.results() if r["status"] == "started"}
    return all(f"crash-{i}" in ids for i in range(REQUESTS))


@pytest.fixture
def crash_qrs(qrs):
    fixture = crash_fixture()
    status, _ = qrs.control("POST", "/_sim/fixture", fixture)
    assert status in (200, 204)
    # A little QRS latency keeps the stream going long enough to break it in the middle.
    qrs.control("POST", "/_sim/faults", {
        "id": "latency", "match": {"method": "POST", "path_re": "/start(/many)?$", "times": -1},
        "action": {"type": "delay", "ms": 10}})
    yield qrs, fixture["tasks"]
    qrs.control("POST", "/_sim/reset")


def test_sigkill_mid_stream_loses_nothing(workdir, broker, crash_qrs):
    qrs, tasks = crash_qrs
    results = Client(broker)
    results.subscribe("butler/task/result")
    butler = Butler(workdir, broker, qrs).start()
    publisher = PersistentPublisher(broker)
    publisher.publish_all(tasks)
    wait_until(lambda: sum(start_counts(qrs).values()) >= REQUESTS // 5, 60,
               message="a fifth of the starts")
    butler.process.send_signal(signal.SIGKILL)
    butler.process.wait(10)
    butler.process = None
    butler.log_file.close()
    killed_at = sum(start_counts(qrs).values())
    butler.start()
    wait_until(lambda: all_answered(results), 120, interval=0.2, message="every request answered")
    counts = start_counts(qrs)
    started, duplicates, lost = report(f"SIGKILL after {killed_at} starts", tasks, counts)
    assert killed_at < REQUESTS, "the kill landed after the stream: nothing was tested"
    assert "recovered" in butler.log()
    assert butler.stop() == 0
    publisher.close()
    results.close()
    assert lost == 0 and duplicates == 0 and started == REQUESTS


def test_broker_restart_mid_stream_loses_nothing(workdir, broker, crash_qrs):
    qrs, tasks = crash_qrs
    butler = Butler(workdir, broker, qrs).start()
    publisher = PersistentPublisher(broker)
    infos = publisher.publish_all(tasks)
    for info in infos:
        info.wait_for_publish(30)
    wait_until(lambda: sum(start_counts(qrs).values()) >= REQUESTS // 5, 60,
               message="a fifth of the starts")
    broker.stop()  # SIGTERM: the broker saves its sessions, as a restarted broker would
    stopped_at = sum(start_counts(qrs).values())
    assert stopped_at < REQUESTS, "the broker stopped after the stream: nothing was tested"
    broker.start()
    results = Client(broker)
    results.subscribe("butler/task/result")
    wait_until(lambda: sum(start_counts(qrs).values()) >= REQUESTS, 120, interval=0.2,
               message="every task started")
    # Give stragglers a chance to show up as duplicates before counting.
    wait_until(lambda: butler.log().count("started task") >= REQUESTS - stopped_at, 30,
               message="butler logged its starts")
    counts = start_counts(qrs)
    started, duplicates, lost = report(f"broker restart after {stopped_at} starts", tasks, counts)
    assert butler.stop() == 0
    publisher.close()
    results.close()
    assert lost == 0 and duplicates == 0 and started == REQUESTS


WORKERS = 4
SHARED_TASKS = 6


@pytest.fixture
def shared_task_qrs(qrs):
    """Six tasks, 50 requests each: starts of one task cannot be told apart by task."""
    fixture = crash_fixture()
    fixture["tasks"] = fixture["tasks"][:SHARED_TASKS]
    status, _ = qrs.control("POST", "/_sim/fixture", fixture)
    assert status in (200, 204)
    qrs.control("POST", "/_sim/faults", {
        "id": "latency", "match": {"method": "POST", "path_re": "/start(/many)?$", "times": -1},
        "action": {"type": "delay", "ms": 10}})
    yield qrs, fixture["tasks"]
    qrs.control("POST", "/_sim/reset")


def latest_answers(client):
    """requestId -> its answer (a redelivered answer repeats the same one)."""
    return {r["requestId"]: r for r in client.results()}


@pytest.mark.parametrize("batch_max", [1, 8])
def test_sigkill_replay_starts_what_no_worker_began(workdir, broker, shared_task_qrs, batch_max):
    """batch_max 1: one QRS call per start; 8: starts that wait together share a
    call (POST /qrs/task/start/many), so up to 8 per worker are under way at once."""
    qrs, tasks = shared_task_qrs
    results = Client(broker)
    results.subscribe("butler/task/result")
    butler = Butler(workdir, broker, qrs,
                    extra_yaml=f"task_start: {{ workers: {WORKERS}, batch_max: {batch_max} }}\n"
                    ).start()
    publisher = PersistentPublisher(broker)
    for i in range(REQUESTS):
        task = tasks[i % SHARED_TASKS]
        publisher.client.publish("butler/task/start", json.dumps(
            {"taskId": task["id"], "requestId": f"shared-{i}"}), qos=1)
    wait_until(lambda: len(latest_answers(results)) >= REQUESTS // 4, 60,
               message="a quarter of the answers")
    butler.process.send_signal(signal.SIGKILL)
    butler.process.wait(10)
    butler.process = None
    butler.log_file.close()
    answered_before = len(latest_answers(results))
    starts_before = sum(start_counts(qrs).values())
    butler.start()
    wait_until(lambda: all(f"shared-{i}" in latest_answers(results) for i in range(REQUESTS)),
               120, interval=0.2, message="every request answered")
    answers = latest_answers(results)
    assert all(answers[f"shared-{i}"]["status"] == "started" for i in range(REQUESTS))
    verified = [rid for rid, a in answers.items()
                if any(entry.get("replay") == "verified" for entry in a["started"])]
    starts = sum(start_counts(qrs).values())
    print(f"\nshared tasks: answered before the kill={answered_before} "
          f"starts before={starts_before} starts total={starts} verified={len(verified)}")
    assert answered_before < REQUESTS, "the kill landed after the stream: nothing was tested"
    assert "recovered" in butler.log()
    # Only what a worker had begun (an attempt noted, no start noted) may be
    # answered from QRS's state: at most one call's starts per worker.
    assert len(verified) <= WORKERS * batch_max
    shared_calls = [c for c in start_calls(qrs) if c.get("many")]
    assert bool(shared_calls) == (batch_max > 1), "starts that waited together share calls"
    # Every other request was started by its own call: no start was shared.
    assert REQUESTS - len(verified) <= starts <= REQUESTS
    assert butler.stop() == 0
    publisher.close()
    results.close()


def test_corrupt_spool_is_recovered(workdir, broker, qrs):
    butler = Butler(workdir, broker, qrs).start()
    assert butler.stop() == 0
    spool = os.path.join(workdir, "state", "spool.log")
    with open(spool, "ab") as f:
        f.write(b"BTLR\xff\xff\xff\x7f garbage that is not a record \x00\x01")
    butler.start()
    wait_until(lambda: "skipped" in butler.log(), message="spool recovery to skip garbage")
    client = Client(broker)
    client.subscribe("butler/task/result")
    client.publish("butler/task/start", json.dumps({"taskId": "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91",
                                                    "requestId": "after-garbage"}))
    assert client.wait_result("after-garbage")["status"] == "started"
    client.close()
    assert butler.stop() == 0
