#!/usr/bin/env python3
"""Following runs (issue 26 targets), measured side by side in one run against the QRS simulator:

  1. memory: RssAnon of Butler idle, then with N runs followed at once (every task a `hang`
     run in the simulator); the difference (target <= 4 MB for 1,000);
  2. CPU: Butler's user+system CPU over a window while it follows the N runs at poll_s 5,
     as a share of one core (target <= 2 %), printed beside the simulator's own share;
  (The latency target, finished message <= 100 ms after the 404, is not measured here yet.)

Usage: bench/follow_bench.py [--runs N] [--window S]
Uses build/butler (BUTLER_BINARY overrides). Prints JSON lines and a summary; nothing asserted.
"""
import argparse
import json
import os
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))
import tempfile  # noqa: E402

import simctl  # noqa: E402
from conftest import Broker, Butler, Client, rss_anon_kb  # noqa: E402


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def butler_metrics(butler):
    """Butler's /metrics lines, when the HTTP API is on; else nothing."""
    port = getattr(butler, "http_port", None)
    if not port:
        return []
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode().splitlines()
    finally:
        conn.close()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="follow-bench-", dir=os.environ.get("TMPDIR"))
    broker = Broker(directory)
    broker.start()
    with simctl.start_qrs_sim(directory) as sim:
        with open(os.path.join(ROOT, "tests", "sim", "fixture.json")) as f:
            fixture = json.load(f)
        app_id = fixture["apps"][0]["id"]
        namespace = uuid.UUID("7d1f0c52-7a1e-4f38-9b2d-4c1e8a7f3b62")
        fixture["tasks"] = [{"id": str(uuid.uuid5(namespace, str(i))), "name": f"Bench {i}",
                             "taskType": 0, "appId": app_id, "tags": ["bench"],
                             "customProperties": [], "run": {"outcomes": ["hang"]}}
                            for i in range(args.runs)]
        sim.control("POST", "/_sim/fixture", fixture)
        butler = Butler(directory, broker, sim, http_yaml=[], extra_yaml=(
            f"task_start: {{ follow: {{ poll_s: 5, max: {args.runs} }} }}\n")).start()
        client = Client(broker)
        client.subscribe("butler/#")
        pid = butler.process.pid
        time.sleep(3)
        idle_kb = rss_anon_kb(pid)
        client.publish("butler/task/start",
                       json.dumps({"tag": "bench", "requestId": "bench", "follow": True}))
        answer = client.wait_result("bench", timeout=300)
        started = len(answer["started"])
        time.sleep(10)  # every follow polled at least once
        follow_kb = rss_anon_kb(pid)
        sim_pid = sim.proc.pid
        c0, s0, t0 = cpu_s(pid), (cpu_s(sim_pid) if sim_pid else 0), time.monotonic()
        time.sleep(args.window)
        c1, s1, t1 = cpu_s(pid), (cpu_s(sim_pid) if sim_pid else 0), time.monotonic()
        follows = next((line.split()[-1] for line in butler_metrics(butler)
                        if line.startswith("butler_task_follows ")), None)
        butler_cpu = 100.0 * (c1 - c0) / (t1 - t0)
        sim_cpu = 100.0 * (s1 - s0) / (t1 - t0) if sim_pid else None
        for task in fixture["tasks"]:  # end the runs so the simulator stops cleanly
            sim.control("POST", f"/_sim/tasks/{task['id']}/complete", {"outcome": "success"})
        butler.stop()
        client.close()
    broker.stop()
    result = {"runs": started, "rss_idle_kb": idle_kb, "rss_following_kb": follow_kb,
              "rss_delta_kb": follow_kb - idle_kb, "butler_cpu_pct_of_core": round(butler_cpu, 2),
              "sim_cpu_pct_of_core": None if sim_cpu is None else round(sim_cpu, 2),
              "followed_now": follows, "poll_s": 5, "window_s": args.window}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
