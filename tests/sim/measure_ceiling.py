#!/usr/bin/python3
"""Measure the QRS simulator's own ceiling for POST /qrs/task/{id}/start, so a
benchmark can compare Butler's task-start rate against it on the same machine.

    /usr/bin/python3 tests/sim/measure_ceiling.py [--requests 5000] [--connections 1 4]

The client is curl (C, libcurl, OpenSSL), reusing mutual-TLS keep-alive
connections: one connection, then N parallel ones. Prints one JSON line per
run: {"connections", "requests", "seconds", "rate", "statuses"}.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simctl import DEFAULT_USER, DEFAULT_XRFKEY, start_qrs_sim  # noqa: E402

TASK = "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91"


def run_curl(sim, workdir, requests, connections):
    url = f"{sim.url}/qrs/task/{TASK}/start?xrfkey={DEFAULT_XRFKEY}"
    config = os.path.join(workdir, "urls.cfg")
    with open(config, "w", encoding="ascii") as f:
        f.write(f'url = "{url}"\noutput = "/dev/null"\n' * requests)
    args = ["curl", "-s", "--cacert", sim.pki("root.pem"), "--cert", sim.pki("client.pem"),
            "--key", sim.pki("client_key.pem"), "-X", "POST", "-d", "{}",
            "-H", "Content-Type: application/json", "-H", f"X-Qlik-Xrfkey: {DEFAULT_XRFKEY}",
            "-H", f"X-Qlik-User: {DEFAULT_USER}", "-w", "%{http_code}\\n", "-K", config]
    if connections > 1:
        args += ["--parallel", "--parallel-max", str(connections)]
    t0 = time.monotonic()
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    seconds = time.monotonic() - t0
    statuses = {}
    for code in out.split():
        statuses[code] = statuses.get(code, 0) + 1
    return {"connections": connections, "requests": requests, "seconds": round(seconds, 3),
            "rate": round(requests / seconds), "statuses": statuses}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as workdir, start_qrs_sim(workdir) as sim:
        run_curl(sim, workdir, 200, 1)  # warm-up: imports, caches, first handshake
        for n in args.connections:
            sim.control("POST", "/_sim/reset")
            print(json.dumps(run_curl(sim, workdir, args.requests, n)), flush=True)


if __name__ == "__main__":
    main()
