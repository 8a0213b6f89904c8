"""Task starts exactly once when the spool or QRS misbehave (issue 22 section 2).

(a) A replayed request holds its requestId from recovery on: a copy with the
    same requestId that reaches a worker first does not start the task the
    replay's notes say was started (crafted spool).
(b) A full disk (an LD_PRELOAD shim makes writes to spool.log fail with ENOSPC):
    no QRS start goes out before its attempt note is recorded; the work waits,
    and after SIGKILL and a restart every task started exactly once
    (task_start.batch_max 1 and 50).
(c) spool.fsync: true with a failing flush: the attempt notes are flushed before
    the QRS call, so no start goes out while the flush fails.
(d) A start QRS accepted but answered past qrs.timeout_ms is not sent again:
    QRS is asked first whether the task started.
(e) Answers carry no QRS transport errors (hosts, ports).
"""
import json
import os
import signal
import struct
import time
import uuid
import zlib

import pytest

from conftest import BUTLER_BINARY, Butler, Client, start_calls, wait_until

APP_ID = "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34"
BUILD_DIR = os.environ.get("BUTLER_BUILD_DIR", os.path.dirname(BUTLER_BINARY))
SHIM = os.path.join(BUILD_DIR, "libbutler_spool_faults.so")


def fixture_with(qrs, count):
    with open(os.path.join(os.path.dirname(__file__), "..", "sim", "fixture.json")) as f:
        fixture = json.load(f)
    namespace = uuid.UUID("0d6f1c52-7a1e-4f38-9b2d-4c1e8a7f3b60")
    fixture["tasks"] = [
        {"id": str(uuid.uuid5(namespace, str(i))), "name": f"Exactly once task {i}",
         "taskType": 0, "appId": APP_ID, "tags": [], "customProperties": []}
        for i in range(count)
    ]
    status, _ = qrs.control("POST", "/_sim/fixture", fixture)
    assert status in (200, 204)
    return fixture["tasks"]


def starts_of(qrs, task_id):
    return sum(1 for c in start_calls(qrs, task_id)
               if (c.get("response") or {}).get("status") in (200, 201, 204))


def all_starts(qrs):
    return sum(1 for c in start_calls(qrs)
               if (c.get("response") or {}).get("status") in (200, 201, 204))


# ---- (a) the requestId race after a restart ------------------------------------

def spool_record(record_type, record_id, wall_ms, data):
    """One record as bridge/store/spool.c writes it: magic, body length, CRC-32
    of the body; body = type, 3 reserved, id, wall clock ms, data."""
    body = struct.pack("<B3xQQ", record_type, record_id, wall_ms) + data
    return struct.pack("<III", 0x524C5442, len(body), zlib.crc32(body)) + body


def message_record(family, topic, payload, received_ms, packet_id=0):
    """The ADD data as topics_message_record lays it out."""
    def field(value):
        return struct.pack("<I", len(value)) + value
    return (bytes([1, len(family)]) + family.encode() + field(topic.encode()) + field(payload) +
            field(b"") + field(b"") + struct.pack("<QH", received_ms, packet_id))


ADD, PROGRESS = 1, 2


@pytest.mark.parametrize("workers", [1, 2])
def test_replay_holds_its_request_id_against_a_copy(workdir, broker, qrs, workers):
    """The spool holds (1) a blocker whose task lookup QRS answers slowly and (2)
    a request R for task T by name whose notes say T was started before the
    crash; the worker that takes the blocker takes R with it. A copy D of R
    (same requestId and payload, a client's retry) arrives while that worker
    is busy with the blocker's lookup. One worker: before the fix R, needing a
    lookup, went back behind D, and D ran as new and started T again. Two
    workers: the other worker takes D at once; only R's requestId, held since
    recovery, keeps D from starting T (fails without task_start_recovered)."""
    tasks = fixture_with(qrs, 2)
    blocker, target = tasks
    butler = Butler(workdir, broker, qrs,
                    extra_yaml=f"task_start: {{ workers: {workers}, batch_max: 8 }}\n")
    butler.start()  # creates the state directory and Butler's session at the broker
    assert butler.stop() == 0
    now_ms = int(time.time() * 1000)
    request = json.dumps({"taskName": target["name"], "requestId": "race-1"}).encode()
    records = [
        spool_record(ADD, 1, now_ms - 5000, message_record(
            "task_start", "butler/task/start",
            json.dumps({"taskId": blocker["id"], "requestId": "blocker-1"}).encode(),
            now_ms - 5000)),
        spool_record(ADD, 2, now_ms - 4000, message_record(
            "task_start", "butler/task/start", request, now_ms - 4000)),
        spool_record(PROGRESS, 2, now_ms - 3900, f"attempt {target['id']}".encode()),
        spool_record(PROGRESS, 2, now_ms - 3800, f"started {target['id']}".encode()),
    ]
    with open(os.path.join(workdir, "state", "spool.log"), "wb") as f:
        f.write(b"".join(records))
    # Every task lookup takes 2 s: the blocker's keeps the one worker busy
    # while the copy arrives.
    qrs.control("POST", "/_sim/faults", {
        "id": "slow-lookup", "match": {"method": "GET", "path_re": "/task/full$", "times": -1},
        "action": {"type": "delay", "ms": 2000}})
    results = Client(broker)
    results.subscribe("butler/task/result")
    butler.start()
    results.publish("butler/task/start", request)  # the copy D
    wait_until(lambda: any(r["requestId"] == "race-1" for r in results.results()), 30,
               message="race-1 answered")
    wait_until(lambda: any(r["requestId"] == "blocker-1" for r in results.results()), 30,
               message="the blocker answered")
    # Let the copy run through the worker too, if it is going to.
    wait_until(lambda: "already seen" in butler.log() or starts_of(qrs, target["id"]) > 0, 30,
               message="the copy handled")
    time.sleep(0.5)
    answers = results.results("race-1")
    assert butler.stop() == 0
    results.close()
    assert starts_of(qrs, blocker["id"]) == 1
    # The replay's notes say T started before the restart: no new start at all.
    assert starts_of(qrs, target["id"]) == 0, "the copy started the task the replay had started"
    assert answers and all(a["status"] == "started" for a in answers)


# ---- (b), (c) a spool that refuses notes -----------------------------------------

def publish_spooled(client, tasks, prefix):
    """Publish one start per task at QoS 1; Client.publish returns after the
    PUBACK, which Butler sends only once the request is in its spool."""
    for i, task in enumerate(tasks):
        client.publish("butler/task/start",
                       json.dumps({"taskId": task["id"], "requestId": f"{prefix}-{i}"}))


def answered(client, prefix, count):
    ids = {r["requestId"] for r in client.results() if r["status"] == "started"}
    return all(f"{prefix}-{i}" in ids for i in range(count))


def refusing_spool(workdir, broker, qrs, switch, batch_max, fsync):
    """Butler under the shim, 40 tasks whose names are cached by a warm-up (so
    that with batch_max > 1 waiting starts share calls); then the spool starts
    refusing notes (`switch`) and 40 new requests arrive. Their ADDs are still
    recorded (the shim fails only notes, or only the flush after a note)."""
    assert os.path.exists(SHIM), f"{SHIM} not built"
    tasks = fixture_with(qrs, 40)
    faults_dir = os.path.join(workdir, "faults")
    os.makedirs(faults_dir)
    butler = Butler(workdir, broker, qrs,
                    extra_yaml=(f"task_start: {{ workers: 1, batch_max: {batch_max} }}\n"
                                f"spool: {{ dir: {json.dumps(os.path.join(workdir, 'state'))}, "
                                f"fsync: {'true' if fsync else 'false'} }}\n"),
                    env={"LD_PRELOAD": SHIM, "BUTLER_SPOOL_FAULTS": faults_dir,
                         # Under ASan the shim comes before the runtime in the preload list.
                         "ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))})
    # The generated config already has a spool line: keep only ours (the last).
    with open(butler.config_path) as f:
        lines = f.read().splitlines()
    del lines[[i for i, line in enumerate(lines) if line.startswith("spool:")][0]]
    with open(butler.config_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    butler.start()
    client = Client(broker, client_id=f"refusing-{os.getpid()}-{time.monotonic_ns()}")
    client.subscribe("butler/task/result")
    publish_spooled(client, tasks, "warm")  # caches the task names
    wait_until(lambda: answered(client, "warm", len(tasks)), 60, message="warm-up answered")
    qrs.control("DELETE", "/_sim/calls")
    open(os.path.join(faults_dir, switch), "w").close()
    publish_spooled(client, tasks, "real")
    return butler, client, tasks, faults_dir


def assert_no_start_while_refused(qrs, butler):
    wait_until(lambda: "the call waits" in butler.log() or
               all_starts(qrs) > 0, 15, message="the starts to wait or go out")
    time.sleep(1.0)  # room for a start that should not happen
    assert all_starts(qrs) == 0, "a start went out while its attempt note was not recorded"


@pytest.mark.parametrize("batch_max", [1, 50])
def test_full_disk_starts_wait_for_their_notes(workdir, broker, qrs, batch_max):
    butler, client, tasks, faults_dir = refusing_spool(workdir, broker, qrs, "enospc",
                                                       batch_max, fsync=False)
    assert_no_start_while_refused(qrs, butler)
    butler.process.send_signal(signal.SIGKILL)
    butler.process.wait(10)
    butler.process = None
    butler.log_file.close()
    os.remove(os.path.join(faults_dir, "enospc"))
    butler.start()
    wait_until(lambda: answered(client, "real", len(tasks)), 60, interval=0.2,
               message="every request answered after the restart")
    counts = {t["id"]: starts_of(qrs, t["id"]) for t in tasks}
    assert butler.stop() == 0
    client.close()
    assert all(n == 1 for n in counts.values()), \
        f"starts per task: {sorted(counts.values())} (duplicates {sum(counts.values()) - 40})"


@pytest.mark.parametrize("batch_max", [1, 50])
def test_fsync_attempt_notes_are_flushed_before_the_call(workdir, broker, qrs, batch_max):
    butler, client, tasks, faults_dir = refusing_spool(workdir, broker, qrs, "eio",
                                                       batch_max, fsync=True)
    assert_no_start_while_refused(qrs, butler)
    os.remove(os.path.join(faults_dir, "eio"))  # the flush works again: the work goes on
    wait_until(lambda: answered(client, "real", len(tasks)), 60, interval=0.2,
               message="every request answered once the flush works")
    counts = {t["id"]: starts_of(qrs, t["id"]) for t in tasks}
    assert butler.stop() == 0
    client.close()
    assert all(n == 1 for n in counts.values())


# ---- (d) a start answered past the timeout ---------------------------------------

def test_start_answered_late_is_not_sent_again(workdir, broker, qrs):
    task = fixture_with(qrs, 1)[0]
    # QRS starts the task at once but answers after 4 s, past qrs.timeout_ms (3 s).
    qrs.control("POST", "/_sim/faults", {
        "id": "late", "match": {"method": "POST", "path_re": "/start$", "times": 1},
        "action": {"type": "delay", "ms": 4000, "when": "after_processing"}})
    butler = Butler(workdir, broker, qrs).start()
    client = Client(broker)
    client.subscribe("butler/task/result")
    client.publish("butler/task/start", json.dumps({"taskId": task["id"], "requestId": "late-1"}))
    answer = client.wait_result("late-1", timeout=30)
    log = butler.log()
    assert butler.stop() == 0
    client.close()
    assert answer["status"] == "started"
    # The simulator's own count: the first call started the task though its
    # answer never reached Butler (the task runs 200 ms, so a second call
    # would start it again).
    started = qrs.control("GET", "/_sim/stats")[1]["starts"]
    assert started == 1, f"{started} starts: the start was sent again after the timeout"
    assert "not sending the start again" in log


# ---- (e) no transport errors in answers ------------------------------------------

def test_answers_carry_no_qrs_hosts_or_ports(workdir, broker, qrs):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    extra = "\n".join([
        "qrs:",
        f"  url: https://127.0.0.1:{closed_port}",
        f"  cert_file: {json.dumps(os.path.join(qrs.pki_dir, 'client.pem'))}",
        f"  key_file: {json.dumps(os.path.join(qrs.pki_dir, 'client_key.pem'))}",
        f"  ca_file: {json.dumps(os.path.join(qrs.pki_dir, 'root.pem'))}",
        "  timeout_ms: 1000",
    ]) + "\n"
    butler = Butler(workdir, broker, None, extra_yaml=extra).start()
    client = Client(broker)
    client.subscribe("butler/task/result")
    client.publish("butler/task/start", json.dumps(
        {"taskId": "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91", "requestId": "no-host-1"}))
    answer = client.wait_result("no-host-1", timeout=30)
    log = butler.log()
    assert butler.stop() == 0
    client.close()
    assert answer["status"] == "failed"
    text = json.dumps(answer)
    assert str(closed_port) not in text and "127.0.0.1" not in text, text
    assert answer["error"] == "QRS could not be reached"
    assert str(closed_port) in log  # the detail stays in the log
