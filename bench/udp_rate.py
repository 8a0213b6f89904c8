#!/usr/bin/python3
"""UDP ingress rate with the broker up: send N valid, distinct datagrams at a
paced rate and count what Butler received, accepted and published.

    BUTLER_BINARY=build/butler /usr/bin/python3 bench/udp_rate.py [--count 100000] [--rate 25000]

Uses the integration harness (real mosquitto, real binary). Published events
are counted by mosquitto_sub (QoS 1). Prints one JSON line:
{"sent", "seconds_send", "send_rate", "received", "accepted", "published",
 "lost", "dropped"}.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))
from conftest import Broker, Butler, wait_until  # noqa: E402
import appender_emu  # noqa: E402


def metric_sum(text, name):
    total = 0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--rate", type=int, default=25000)
    args = p.parse_args()
    directory = tempfile.mkdtemp(prefix="butler-udp-bench-")
    broker = Broker(directory).start()
    # Debug logging per event would measure the log, not the ingress.
    butler = Butler(directory, broker, udp=True, http_yaml=[], env={"BUTLER_LOG_LEVEL": "info"})
    butler.start()
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(broker.port), "-q", "1", "-t",
                            "butler/events/#", "-C", str(args.count), "-W", "120"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # mosquitto_sub has no readiness signal; not a wait for Butler
    generator = appender_emu.Generator(seed=1)
    datagrams = [appender_emu.render("butler-v15", "task-failed", generator=generator)
                 for _ in range(args.count)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", butler.udp_port)
    t0 = time.monotonic()
    batch = max(1, args.rate // 1000)
    for i in range(0, args.count, batch):
        for d in datagrams[i:i + batch]:
            sock.sendto(d, target)
        ahead = (i + batch) / args.rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    seconds_send = time.monotonic() - t0
    lines = 0
    for _ in sub.stdout:
        lines += 1
    sub.wait()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{butler.http_port}/metrics").read().decode()
    result = {
        "sent": args.count,
        "seconds_send": round(seconds_send, 3),
        "send_rate": round(args.count / seconds_send),
        "received": metric_sum(metrics, "butler_udp_received_total"),
        "accepted": metric_sum(metrics, "butler_udp_accepted_total"),
        "published": lines,
        "spooled": metric_sum(metrics, "butler_events_spooled_total"),
        "dropped": {m.group(1): int(float(m.group(2))) for m in re.finditer(
            r'butler_udp_dropped_total\{reason="([^"]+)"\} (\S+)', metrics) if float(m.group(2))},
    }
    result["lost"] = result["sent"] - result["published"]
    print(json.dumps(result), flush=True)
    butler.stop()
    broker.stop()
    shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
