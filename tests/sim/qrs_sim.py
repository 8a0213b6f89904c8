#!/usr/bin/python3
"""QRS simulator for Butler's tests: impersonates the Qlik Sense Repository
Service on HTTPS (mutual TLS, Xrfkey, X-Qlik-User), runs tasks through realistic
state changes, optionally emits the matching log-appender UDP datagrams, records
every call and injects faults. Behaviour: reference/sense-interfaces.md section 4.

    qrs_sim.py --server-cert server.pem --server-key server_key.pem --ca root.pem \
               [--fixture fixture.json] [--port 0] [--control-port 0] [--udp-target host:port]

Prints "READY <port> <control-port>" once both listeners accept connections;
SIGTERM or SIGINT stops it. The control API (plain HTTP, loopback) is in
qrssim/control.py.
"""

import argparse
import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qrssim.control import ControlServer  # noqa: E402
from qrssim.core import Simulator  # noqa: E402
from qrssim.model import FixtureError  # noqa: E402
from qrssim.server import QrsServer  # noqa: E402

DEFAULT_FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixture.json")


def parse_args(argv):
    p = argparse.ArgumentParser(description="Qlik Sense Repository Service simulator")
    p.add_argument("--host", default="127.0.0.1", help="QRS listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="QRS HTTPS port (0 = ephemeral)")
    p.add_argument("--control-port", type=int, default=0, help="control API port on 127.0.0.1 (0 = ephemeral)")
    p.add_argument("--server-cert", required=True)
    p.add_argument("--server-key", required=True)
    p.add_argument("--ca", required=True, help="trust anchor for client certificates")
    p.add_argument("--fixture", default=DEFAULT_FIXTURE, help="fixture JSON (default: the bundled fixture.json)")
    p.add_argument("--seed", type=int, default=1, help="seed for generated GUIDs and fault probabilities")
    p.add_argument("--udp-target", help="host:port to send log-appender datagrams to")
    p.add_argument("--record-file", help="also append every call record to this JSONL file")
    p.add_argument("--no-strict", dest="strict", action="store_false",
                   help="accept OData-style '' inside filter literals")
    p.add_argument("--log", action="store_true", help="log each request to stderr")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        with open(args.fixture, encoding="utf-8") as f:
            fixture = json.load(f)
        sim = Simulator(fixture, args.seed, args.server_cert, args.server_key, args.ca,
                        udp_target=args.udp_target, record_file=args.record_file,
                        strict=args.strict, log=args.log)
        qrs = QrsServer(sim, args.host, args.port)
        control = ControlServer(sim, args.control_port)
    except (OSError, ValueError, FixtureError) as e:  # includes ssl.SSLError and bad JSON
        print(f"qrs_sim: {e}", file=sys.stderr)
        return 2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sim.scheduler.start()
    qrs.start()
    control.start()
    print(f"READY {qrs.port} {control.port}", flush=True)
    while not stop.wait(0.5):
        pass
    qrs.close()
    control.close()
    sim.scheduler.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
