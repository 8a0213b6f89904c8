#!/usr/bin/env python3
"""InfluxDB routes against a real influxd (issue 29 targets), all measured in one run:

  1. ceiling A: the broker's own QoS 1 pub->sub rate (`mqtt_load broker`, 200 B, 1000 in flight);
  2. ceiling B: what influxd takes from a plain batched writer (this script: 5000-point bodies
     built beforehand, POST /write on one kept connection, no gzip);
  3. Butler: N messages queued in the broker for Butler's persistent session while it is down,
     then Butler started; rate = N / (exec -> the Nth point counted in influxd) through a route
     `to: influxdb` (3 tags, 4 fields, batch_max 5000). Target: >= 0.8 x min(A, B).
  4. memory: influxd stopped, 100,000 messages through the route, until
     butler_influxdb_points_waiting says all wait; RssAnon then minus RssAnon idle (<= 4 MB).

Usage: bench/influxdb_bench.py [--points N] [--waiting N] [--butler PATH]
Builds a release Butler into build-bench/ (unless --butler) and bench-tools/mqtt_load.
Prints one JSON line per measurement and a summary table. Timings are reported, not asserted.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from influx_server import InfluxServer  # noqa: E402

BATCH = 5000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        text = f.read()
    return (int(re.search(r"VmRSS:\s+(\d+)", text).group(1)),
            int(re.search(r"RssAnon:\s+(\d+)", text).group(1)))


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{}"):
                return float(line.split()[-1])
    return None


def build(args):
    build_dir = os.path.join(ROOT, "build-bench")
    tools = os.path.join(build_dir, "bench-tools")
    os.makedirs(tools, exist_ok=True)
    if not args.butler:
        subprocess.run(["cmake", "-S", ROOT, "-B", build_dir, "-DCMAKE_BUILD_TYPE=Release"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", build_dir, "-j2", "--target", "butler"], check=True,
                       stdout=subprocess.DEVNULL)
        args.butler = os.path.join(build_dir, "butler")
    args.butler = os.path.abspath(args.butler)
    mqtt_load = os.path.join(tools, "mqtt_load")
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-std=gnu11", "-o", mqtt_load,
                    os.path.join(ROOT, "bench", "mqtt_load.c"), "-lmosquitto", "-lpthread"],
                   check=True)
    return mqtt_load


class Run:
    def __init__(self, args, mqtt_load):
        self.args, self.mqtt_load = args, mqtt_load
        self.dir = tempfile.mkdtemp(prefix="butler-influx-bench-")
        self.procs = []
        self.mqtt_port = free_port()
        conf = os.path.join(self.dir, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\n"
                    "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest none\n"
                    "set_tcp_nodelay true\n")
        self.procs.append(subprocess.Popen(["mosquitto", "-c", conf]))
        wait_for(lambda: self.accepts(self.mqtt_port), 10, "mosquitto")
        self.influx = InfluxServer(self.dir).start()

    @staticmethod
    def accepts(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def close(self):
        self.influx.stop()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)
        if not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def run_json(self, argv):
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    # ---- ceilings -----------------------------------------------------------

    def broker_ceiling(self, n):
        return self.run_json([self.mqtt_load, "broker", "127.0.0.1", str(self.mqtt_port), str(n),
                              "1000"])["rate"]

    def influx_ceiling(self, n):
        """Points/s influxd takes from a plain batched writer (bodies built beforehand)."""
        self.influx.query('CREATE DATABASE "ceiling"', db="")
        base = time.time_ns()
        bodies = []
        for start in range(0, n, BATCH):
            lines = [f'reload_failed,host=sense-node-01,task=Reload\\ Sales\\ Dashboard,'
                     f'app=Sales\\ Dashboard level="ERROR",message="Task finished with state '
                     f'FinishedFail.",seq={i},ok=false {base + i}'
                     for i in range(start, min(n, start + BATCH))]
            bodies.append(("\n".join(lines) + "\n").encode())
        connection = http.client.HTTPConnection("127.0.0.1", self.influx.port, timeout=60)
        t0 = time.monotonic()
        for body in bodies:
            connection.request("POST", "/write?db=ceiling&precision=ns", body,
                               {"Content-Type": "text/plain; charset=utf-8"})
            response = connection.getresponse()
            response.read()
            if response.status != 204:
                raise RuntimeError(f"influxd answered {response.status}")
        seconds = time.monotonic() - t0
        connection.close()
        return n / seconds

    # ---- Butler ---------------------------------------------------------------

    def butler_config(self, name):
        self.http_port = free_port()
        path = os.path.join(self.dir, f"butler-{name}.yaml")
        with open(path, "w") as f:
            f.write(f"""log: {{ level: warn }}
mqtt:
  port: {self.mqtt_port}
  client_id: butler-influx-bench-{name}
  session_expiry_s: 600
http: {{ enable: true, listen: 127.0.0.1:{self.http_port} }}
udp: {{ enable: false }}
health: {{ metrics_auth: open }}
spool: {{ dir: {json.dumps(os.path.join(self.dir, 'state-' + name))} }}
influxdb:
  url: {self.influx.url}
  database: bench_{name}
  batch_max: {BATCH}
  flush_ms: 200
routes:
  - name: to-influx
    match: butler/events/task/failed/#
    to: influxdb
    measurement: reload_failed
    tags: {{host: "{{{{host}}}}", task: "{{{{taskName}}}}", app: "{{{{appName}}}}"}}
    fields: {{level: "{{{{level}}}}", message: "{{{{message}}}}", seq: "{{{{seq}}}}", ok: "{{{{ok}}}}"}}
""")
        return path

    def start_butler(self, config):
        log = open(os.path.join(self.dir, "butler.log"), "ab")
        p = subprocess.Popen([self.args.butler, "--config", config], cwd=self.dir,
                             stdout=log, stderr=log)
        self.procs.append(p)
        return p

    def wait_healthy(self, p):
        def ok():
            if p.poll() is not None:
                raise RuntimeError("butler exited; see " + os.path.join(self.dir, "butler.log"))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/health",
                                            timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_for(ok, 15, "butler /health")

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            p.send_signal(sig)
            p.wait(30)
        self.procs.remove(p)

    def payload(self):
        path = os.path.join(self.dir, "event.json")
        with open(path, "w") as f:
            json.dump({"type": "failed", "host": "sense-node-01",
                       "taskName": "Reload Sales Dashboard", "appName": "Sales Dashboard",
                       "user": "INTERNAL\\sa_scheduler", "taskId": "t-1", "level": "ERROR",
                       "message": "Task finished with state FinishedFail.", "seq": 1,
                       "ok": False, "receivedAt": "2026-11-27T20:31:54.800Z"}, f)
        return path

    def publish(self, n, payload):
        return self.run_json([self.mqtt_load, "pub", "127.0.0.1", str(self.mqtt_port), str(n),
                              "butler/events/task/failed/t-1", payload, "1000"])

    def count(self, db):
        rows = self.influx.rows('SELECT count("seq") FROM "reload_failed"', db=db)
        return rows[0]["count"] if rows else 0

    def butler_rate(self, n):
        config = self.butler_config("rate")
        p = self.start_butler(config)
        self.wait_healthy(p)
        # Queued in the broker for Butler's session while it is down (a live publisher
        # tops out at the broker's own rate): SIGKILL keeps the subscription.
        self.stop(p, signal.SIGKILL)
        payload = self.payload()
        self.publish(n, payload)
        t0 = time.monotonic()
        p = self.start_butler(config)
        last, last_t = 0, t0
        while last < n and time.monotonic() - last_t < 20:
            time.sleep(0.05)
            now = self.count("bench_rate")
            if now != last:
                last, last_t = now, time.monotonic()
        self.stop(p)
        return last, last_t - t0

    def memory(self, n):
        config = self.butler_config("memory")
        p = self.start_butler(config)
        self.wait_healthy(p)
        time.sleep(1.0)  # idle figures after start-up work settles (not a correctness wait)
        idle = rss(p.pid)
        self.influx.stop()
        payload = self.payload()
        self.publish(n, payload)
        wait_for(lambda: (metric(self.http_port, "butler_influxdb_points_waiting") or 0) >= n,
                 120, f"{n} points waiting", interval=0.2)
        time.sleep(1.0)
        waiting = rss(p.pid)
        spool = metric(self.http_port, "butler_spool_bytes{part=\"file\"}")
        self.stop(p)
        self.influx.start()
        return idle, waiting, spool


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=50000)
    parser.add_argument("--waiting", type=int, default=100000)
    parser.add_argument("--butler")
    args = parser.parse_args()
    mqtt_load = build(args)
    run = Run(args, mqtt_load)
    try:
        broker = run.broker_ceiling(args.points)
        print(json.dumps({"ceiling": "broker_qos1", "rate": round(broker)}), flush=True)
        influx = run.influx_ceiling(args.points)
        print(json.dumps({"ceiling": "influxd_batched_writer", "rate": round(influx)}),
              flush=True)
        points, seconds = run.butler_rate(args.points)
        rate = points / seconds if seconds > 0 else 0
        print(json.dumps({"butler": "route_to_influxdb", "points": points,
                          "seconds": round(seconds, 3), "rate": round(rate)}), flush=True)
        idle, waiting, spool = run.memory(args.waiting)
        print(json.dumps({"memory": "influxd_stopped", "points_waiting": args.waiting,
                          "idle_vmrss_kb": idle[0], "idle_rssanon_kb": idle[1],
                          "waiting_vmrss_kb": waiting[0], "waiting_rssanon_kb": waiting[1],
                          "spool_file_bytes": spool}), flush=True)
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        lower = min(broker, influx)
        delta_mb = (waiting[1] - idle[1]) / 1024
        print()
        print(f"| Measurement | Figure | Target | Met |\n|---|---:|---|---|")
        print(f"| Broker QoS 1 pub->sub (ceiling A) | {broker:.0f} msg/s | | |")
        print(f"| influxd from a plain batched writer (ceiling B) | {influx:.0f} points/s | | |")
        print(f"| Butler: MQTT -> route -> influxd | {rate:.0f} points/s "
              f"({points}/{args.points} in {seconds:.2f} s) = {rate / lower:.2f} x min(A, B) "
              f"| >= 0.8 x | {'yes' if rate >= 0.8 * lower and points == args.points else 'no'} |")
        print(f"| RssAnon, {args.waiting} points waiting, influxd stopped | "
              f"{idle[1] / 1024:.1f} MB idle -> {waiting[1] / 1024:.1f} MB (+{delta_mb:.2f} MB); "
              f"spool file {spool / 1048576 if spool else 0:.0f} MB | <= +4 MB | "
              f"{'yes' if delta_mb <= 4 else 'no'} |")
        print(f"\n1-min load average at the end: {load}")
    finally:
        run.close()


if __name__ == "__main__":
    main()
