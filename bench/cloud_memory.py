#!/usr/bin/env python3
"""RssAnon of Butler with 10,000 Qlik Cloud reload ids remembered (issue 28 target: <= 2 MB
above idle), apart from the effects of concurrent load that bench/cloud_webhook_bench.sh mixes
in: one keep-alive connection posts signed deliveries one after another. Idle is measured after
a warm-up of 500 resends of one delivery (connection, spool, worker at working size).
Usage: bench/cloud_memory.py [BUTLER_BINARY]   (default: build/butler). Needs mosquitto."""
import hashlib
import hmac
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "bench-webhook-secret-0123456789abcdef"
IDS = 10000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_anon_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def metric(port, name):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[-1]))
    return 0


def wait_for(condition, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("timed out")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "butler")
    work = tempfile.mkdtemp(prefix="cloud-memory-")
    processes = []
    try:
        mqtt_port, http_port = free_port(), free_port()
        with open(os.path.join(work, "m.conf"), "w") as f:
            f.write(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n")
        processes.append(subprocess.Popen(["mosquitto", "-c", os.path.join(work, "m.conf")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with open(os.path.join(work, "b.yaml"), "w") as f:
            f.write(f"""log: {{ level: warn }}
mqtt: {{ host: 127.0.0.1, port: {mqtt_port}, client_id: cloud-memory }}
http: {{ listen: 127.0.0.1:{http_port} }}
udp: {{ enable: false }}
spool: {{ dir: {work}/state }}
qlik_cloud:
  tenants:
    - {{name: bench, tenant_id: t-bench, url: "http://127.0.0.1:9", webhook_secret: {SECRET}}}
""")
        butler = subprocess.Popen([binary, "--config", os.path.join(work, "b.yaml")],
                                  stderr=open(os.path.join(work, "b.log"), "w"))
        processes.append(butler)
        handled = 'butler_cloud_events_total{outcome="published"}'
        duplicates = 'butler_cloud_events_total{outcome="duplicate"}'

        def healthy():
            probe = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
            probe.request("GET", "/health")
            status = probe.getresponse().status
            probe.close()
            return status == 200

        wait_for(healthy)
        connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=30)

        def post(i):
            body = json.dumps({
                "specversion": "1.0", "id": f"e-{i:08d}",
                "type": "com.qlik.v1.app.reload.finished", "tenantid": "t-bench",
                "toplevelresourceid": f"app-{i % 50}",
                "data": {"status": "error", "reloadId": f"{i:024x}", "name": "Sales",
                         "duration": 1000, "errors": ["Field not found: <Amount>"]}}).encode()
            signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            connection.request("POST", "/qlik-cloud/webhook", body,
                               {"Content-Type": "application/json", "Qlik-Signature": signature})
            response = connection.getresponse()
            response.read()
            if response.status != 204:
                raise SystemExit(f"answered {response.status}")

        for _ in range(500):
            post(0)
        wait_for(lambda: metric(http_port, handled) + metric(http_port, duplicates) >= 500)
        idle = rss_anon_kb(butler.pid)
        for i in range(1, IDS + 1):
            post(i)
        wait_for(lambda: metric(http_port, handled) >= IDS + 1)
        loaded = rss_anon_kb(butler.pid)
        print(f"RssAnon after warm-up {idle} kB, with {IDS} reload ids remembered {loaded} kB: "
              f"+{loaded - idle} kB (target <= 2048)")
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
