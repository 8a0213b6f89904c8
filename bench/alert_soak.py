#!/usr/bin/env python3
"""Alert soak (issue 25): failure datagrams across many tasks, two routes whose filters
overlap, QRS slow for a while and the webhook failing for a while. Every alert must end
delivered exactly once per route or dead-lettered with its reason; nothing lost, nothing
twice. Prints the counts (for BENCHMARKS.md) and exits 1 when an alert was lost or
repeated. Not a test: it runs for about a minute and reports, it asserts no timing.

    python3 bench/alert_soak.py [--datagrams 1000] [--tasks 20] [--rate 40]

Uses build/butler (BUTLER_BINARY overrides), Mosquitto, tests/sim/qrs_sim.py and an HTTP
sink of its own on 127.0.0.1; everything runs in a temporary directory.
"""
import argparse
import collections
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))

import appender_emu  # noqa: E402
import simctl  # noqa: E402
from conftest import Broker, Butler, Client  # noqa: E402


class Sink:
    """Records (path, executionId, status); answers 500 while `failing` is set."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = []
        self.failing = False
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    execution_id = json.loads(body)["executionId"]
                except (ValueError, KeyError, TypeError):
                    execution_id = None
                status = 500 if sink.failing else 200
                with sink.lock:
                    sink.records.append((self.path, execution_id, status))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datagrams", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--rate", type=float, default=40.0, help="datagrams per second")
    parser.add_argument("--qrs-slow", default="5:12", help="seconds from:to QRS answers late")
    parser.add_argument("--hook-failing", default="10:16", help="seconds from:to the webhook fails")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()
    slow_from, slow_to = (float(x) for x in args.qrs_slow.split(":"))
    fail_from, fail_to = (float(x) for x in args.hook_failing.split(":"))

    workdir = tempfile.mkdtemp(prefix="butler-alert-soak-")
    generator = appender_emu.Generator(seed=2525)
    tasks = [generator.guid() for _ in range(args.tasks)]
    sink = Sink()
    routes = f"""
routes:
  - name: failed-only
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{sink.url}/failed-only"
  - name: any-task
    match: butler/events/task/+/+
    to: webhook
    webhook_url: "{sink.url}/any-task"
"""
    broker = Broker(workdir).start()
    watcher = Client(broker)
    watcher.subscribe("butler/deadletter/#")
    watcher.subscribe("butler/events/#")
    simdir = os.path.join(workdir, "qrs")
    os.makedirs(simdir)
    butler = None
    exit_code = 1
    try:
        with simctl.start_qrs_sim(simdir) as sim:
            butler = Butler(workdir, broker, qrs=sim, udp=True, http_yaml=[],
                            extra_yaml=routes).start()
            target = ("127.0.0.1", butler.udp_port)
            sent = []
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                started = time.monotonic()

                def fail_window():  # by the clock, not by what was sent
                    time.sleep(fail_from)
                    sink.failing = True
                    time.sleep(fail_to - fail_from)
                    sink.failing = False

                threading.Thread(target=fail_window, daemon=True).start()
                slow_on = fail_on = False
                for i in range(args.datagrams):
                    now = time.monotonic() - started
                    if not slow_on and slow_from <= now < slow_to:
                        sim.control("POST", "/_sim/faults", {"match": {"path_re": "/qrs/"},
                                                             "action": {"type": "delay",
                                                                        "ms": 2500}})
                        slow_on = True
                    if slow_on and now >= slow_to:
                        sim.control("DELETE", "/_sim/faults")
                        slow_on = False
                    execution_id = generator.guid()
                    sent.append(execution_id)
                    udp.sendto(appender_emu.render("butler-v15", "task-failed", {
                        "task_id": tasks[i % len(tasks)], "execution_id": execution_id},
                        generator=generator), target)
                    pause = started + (i + 1) / args.rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                if slow_on:
                    sim.control("DELETE", "/_sim/faults")
                send_seconds = time.monotonic() - started

            def outcome():
                with sink.lock:
                    records = list(sink.records)
                delivered = {route: collections.Counter() for route in ("failed-only", "any-task")}
                for path, execution_id, status in records:
                    if status == 200:
                        delivered[path.strip("/")][execution_id] += 1
                letters = {route: {} for route in delivered}
                events = set()
                with watcher.lock:
                    messages = list(watcher.messages)
                for m in messages:
                    if m["topic"].startswith("butler/events/task/failed/"):
                        events.add(json.loads(m["payload"])["executionId"])
                    if not m["topic"].startswith("butler/deadletter/"):
                        continue
                    letter = json.loads(m["payload"])
                    execution_id = json.loads(letter["payload"])["executionId"]
                    for route in letters:
                        if letter["error"].startswith(f"route {route}:"):
                            letters[route][execution_id] = letter["error"]
                return delivered, letters, events, len(records)

            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                delivered, letters, events, requests = outcome()
                if all(len(set(delivered[r]) | set(letters[r])) >= len(sent) for r in delivered):
                    break
                time.sleep(0.5)
            delivered, letters, events, requests = outcome()
            print(f"alert soak: {len(sent)} failure datagrams over {args.tasks} tasks in "
                  f"{send_seconds:.1f} s; QRS 2.5 s late from {slow_from:g} to {slow_to:g} s, "
                  f"webhook answering 500 from {fail_from:g} to {fail_to:g} s; "
                  f"{len(events)} events published, {requests} requests at the sink")
            lost = repeated = 0
            for route in delivered:
                once = sum(1 for e in sent if delivered[route][e] == 1)
                twice = sum(1 for e in sent if delivered[route][e] > 1)
                dead = sum(1 for e in sent if e in letters[route] and delivered[route][e] == 0)
                both = sum(1 for e in sent if e in letters[route] and delivered[route][e] > 0)
                missing = sum(1 for e in sent if e not in letters[route] and not delivered[route][e])
                reasons = collections.Counter(
                    letters[route][e].split(": ", 2)[-1][:60] for e in letters[route])
                print(f"  route {route}: delivered once {once}, more than once {twice}, "
                      f"dead-lettered {dead}, delivered and dead-lettered {both}, "
                      f"missing {missing}; reasons {dict(reasons)}")
                lost += missing
                repeated += twice + both
            print(f"  result: {'OK' if lost == 0 and repeated == 0 else 'FAILED'} "
                  f"(lost {lost}, repeated {repeated})")
            exit_code = 0 if lost == 0 and repeated == 0 else 1
    finally:
        if butler is not None:
            butler.stop(signal.SIGTERM)
        watcher.close()
        broker.stop()
        sink.server.shutdown()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
