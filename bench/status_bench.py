#!/usr/bin/env python3
"""GET /v4/status with full recent lists, beside GET /v4/butlerping (issue 30 targets:
p99 <= 2 ms; Butler's RssAnon grows <= 1 MB with the rings full).

One run, side by side: a private Mosquitto and a Butler (UDP + HTTP, no QRS), the recent lists
filled to their cap of 50 (failed-reload datagrams -> events; task starts over MQTT, which fail
without QRS -> task results and dead letters), then `wrk --latency` on both paths with one
connection (service time) and with 8 (under load). RssAnon from /proc/<pid>/status before the
rings were filled and after the load. Prints the figures and their ratios; asserts nothing.

    python3 bench/status_bench.py [--duration 5]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(ROOT, "tests", "integration"), os.path.join(ROOT, "tests", "sim")]
from conftest import Broker, Client, free_port, free_udp_port, rss_anon_kb, wait_until  # noqa: E402
import appender_emu  # noqa: E402


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v4/status", timeout=5) as r:
        return json.loads(r.read()), int(r.headers["Content-Length"])


def wrk(url, connections, duration):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout

    def ms(label):
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value = float(m.group(1))
        return value / 1000 if m.group(2) == "us" else value * 1000 if m.group(2) == "s" else value

    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return {"rate": rate, "p50": ms("50%"), "p99": ms("99%")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--binary", default=os.environ.get(
        "BUTLER_BINARY", os.path.join(ROOT, "build", "butler")))
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="butler-status-bench-")
    broker = Broker(directory).start()
    http_port, udp_port = free_port(), free_udp_port()
    config = os.path.join(directory, "butler.yaml")
    with open(config, "w") as f:
        f.write(f"log: {{ level: warn }}\nmqtt: {{ port: {broker.port} }}\n"
                f"http: {{ enable: true, listen: 127.0.0.1:{http_port} }}\n"
                f"udp: {{ enable: true, listen: 127.0.0.1:{udp_port} }}\n"
                "retry: { max_attempts: 1 }\n"
                f"spool: {{ dir: {os.path.join(directory, 'state')} }}\n")
    log = open(os.path.join(directory, "butler.log"), "wb")
    butler = subprocess.Popen([args.binary, "--config", config], stdout=log, stderr=subprocess.STDOUT,
                              cwd=directory)
    client = None
    try:
        wait_until(lambda: _answers(http_port), 10, message="butler's HTTP API")
        time.sleep(1)
        rss_before = rss_anon_kb(butler.pid)
        empty, empty_bytes = status(http_port)
        # Fill the rings: 60 of each (50 kept).
        generator = appender_emu.Generator(seed=30)
        import socket
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(60):
            sock.sendto(appender_emu.render("butler-v15", "task-failed",
                                            {"execution_id": generator.guid(),
                                             "task_name": f"Reload number {i} " + "x" * 80},
                                            generator=generator), ("127.0.0.1", udp_port))
            time.sleep(0.002)
        client = Client(broker)
        for i in range(60):
            client.publish("butler/task/start", json.dumps({"taskId": generator.guid(),
                                                             "requestId": f"bench-{i}"}))
        wait_until(lambda: len(status(http_port)[0]["recent"]["events"]) == 50 and
                   len(status(http_port)[0]["recent"]["taskResults"]) == 50, 30,
                   message="full rings")
        time.sleep(1)
        rss_full = rss_anon_kb(butler.pid)
        full, full_bytes = status(http_port)
        counts = {k: len(v) for k, v in full["recent"].items()}
        base = f"http://127.0.0.1:{http_port}"
        results = {}
        for connections in (1, 8):
            results[("ping", connections)] = wrk(base + "/v4/butlerping", connections, args.duration)
            results[("status", connections)] = wrk(base + "/v4/status", connections, args.duration)
        rss_after = rss_anon_kb(butler.pid)
        print(f"/v4/status with full rings: {counts}; body {full_bytes} bytes "
              f"(empty: {empty_bytes} bytes)")
        print("| Path | connections | req/s | p50 ms | p99 ms | p99 / ping p99 |")
        print("|---|---:|---:|---:|---:|---:|")
        for connections in (1, 8):
            ping = results[("ping", connections)]
            for name in ("ping", "status"):
                r = results[(name, connections)]
                path = "/v4/butlerping" if name == "ping" else "/v4/status"
                print(f"| {path} | {connections} | {r['rate']:.0f} | {r['p50']:.3f} | "
                      f"{r['p99']:.3f} | {r['p99'] / ping['p99']:.2f} |")
        requests = sum(r['rate'] for r in results.values()) * args.duration
        print(f"RssAnon: {rss_before} kB before filling, {rss_full} kB with the rings full "
              f"(+{rss_full - rss_before} kB), {rss_after} kB after {requests:.0f} requests "
              f"(+{rss_after - rss_before} kB in all)")
        print(f"load average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    finally:
        if client:
            client.close()
        butler.send_signal(signal.SIGTERM)
        butler.wait(30)
        log.close()
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _answers(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v4/butlerping", timeout=1):
            return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
