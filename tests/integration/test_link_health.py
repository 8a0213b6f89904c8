"""The MQTT link's health and reconnect backoff, end to end (issue 22 sections
1 and 4; tests for merged work).

(a) /health answers 503 while the MQTT network loop is stalled, although the
    connection is still nominally up: the loop blocks in the spool write of an
    incoming message (the spool_faults shim's "stall" switch: a hung disk
    under the network thread), and /health goes by the time since the last
    loop iteration (bridge/link/mqtt_link.c mqtt_link_connected), not by the
    flag only that thread clears. It answers 200 again once the loop runs.
(b) The reconnect backoff is reset only after a connection stayed up
    STABLE_CONNECTION_MS (10 s): a proxy in front of Mosquitto that closes
    every connection 0.3 s after the broker accepted it sees the backoff grow
    (few connections), and after one connection held for 11 s the next
    reconnect comes at the minimum delay again.
"""
import re
import http.client
import json
import os
import socket
import threading
import time
import types

from conftest import Butler, Client, wait_until
from test_exactly_once_starts import SHIM


def health(butler):
    conn = http.client.HTTPConnection("127.0.0.1", butler.http_port, timeout=5)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def set_mqtt_lines(butler, replacements):
    """Replace `  key: value` lines of the generated config's mqtt section."""
    with open(butler.config_path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        key = line.strip().split(":")[0]
        if line.startswith("  ") and key in replacements:
            continue
        out.append(line)
        if line == "mqtt:":
            out += [f"  {k}: {v}" for k, v in replacements.items()]
    with open(butler.config_path, "w") as f:
        f.write("\n".join(out) + "\n")


def test_health_503_while_the_network_loop_is_stalled(workdir, broker):
    assert os.path.exists(SHIM), f"{SHIM} not built"
    faults = os.path.join(workdir, "faults")
    os.makedirs(faults)
    butler = Butler(workdir, broker, http_yaml=[],
                    extra_yaml="file: { enable: true, delete: [/nonexistent-root] }\n",
                    env={"LD_PRELOAD": SHIM, "BUTLER_SPOOL_FAULTS": faults,
                         "ASAN_OPTIONS": ":".join(filter(None, [
                             os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))})
    set_mqtt_lines(butler, {"keepalive_s": 5})  # stale after 2.5 s without a loop
    butler.start()
    client = Client(broker)
    stall = os.path.join(faults, "stall")
    try:
        wait_until(lambda: health(butler) == 200, 10, message="/health 200 while connected")
        open(stall, "w").close()
        # Spooled on the network thread before its PUBACK: the write hangs there.
        client.publish("butler/file/delete",
                       json.dumps({"requestId": "stall-1", "deleteFile": "/nonexistent-root/x"}))
        wait_until(lambda: health(butler) == 503, 20,
                   message="/health 503 while the network loop is stalled")
        assert butler.process.poll() is None
        os.unlink(stall)
        wait_until(lambda: health(butler) == 200, 30,
                   message="/health 200 again once the loop runs")
    finally:
        if os.path.exists(stall):
            os.unlink(stall)
        client.close()
        assert butler.stop() == 0


class ClosingProxy:
    """TCP proxy to the broker that closes each connection `hold_s` after it
    was opened (long enough for CONNECT/CONNACK), and records when each came."""

    def __init__(self, broker_port):
        self.broker_port = broker_port
        self.hold_s = 0.3
        self.connections = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(time.monotonic())
            threading.Thread(target=self._serve, args=(client, self.hold_s), daemon=True).start()

    def _serve(self, client, hold_s):
        upstream = socket.create_connection(("127.0.0.1", self.broker_port))
        deadline = time.monotonic() + hold_s
        pair = {client: upstream, upstream: client}
        for s in pair:
            s.settimeout(0.05)
        try:
            while time.monotonic() < deadline and not self.stopping:
                for source, target in pair.items():
                    try:
                        data = source.recv(65536)
                    except socket.timeout:
                        continue
                    if not data:
                        raise OSError("closed")
                    target.sendall(data)
        except OSError:
            pass
        for s in pair:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.stopping = True
        self.listener.close()


def test_backoff_grows_while_connections_drop_and_resets_after_a_stable_one(workdir, broker):
    # Read from Butler's own log line (the backoff step it chose), not from how
    # many connections fit in a time window: the outcome, not a timing.
    proxy = ClosingProxy(broker.port)
    butler = Butler(workdir, types.SimpleNamespace(port=proxy.port))
    set_mqtt_lines(butler, {"reconnect_min_ms": 100, "reconnect_max_ms": 3200})

    def steps():
        return [int(s) for s in re.findall(r"reconnecting in \d+ ms \(backoff step (\d+)\)", butler.log())]

    try:
        butler.start(wait_online=False)
        # Connections that drop at once make the step grow: 1, 2, 3, 4 ...
        wait_until(lambda: len(steps()) >= 4, 30, message="four short connections")
        assert steps()[:4] == [1, 2, 3, 4], steps()
        # One connection stays up past STABLE_CONNECTION_MS (10 s), then drops:
        # the next delay starts again at step 1.
        proxy.hold_s = 11.0
        count = len(proxy.connections)
        wait_until(lambda: len(proxy.connections) > count, 15, message="the long connection")
        before = len(steps())
        wait_until(lambda: len(steps()) > before, 30, message="the long connection to drop")
        proxy.hold_s = 0.3
        assert steps()[before] == 1, f"after a stable connection the step was {steps()[before]}"
        # And short ones after it grow again from there.
        wait_until(lambda: len(steps()) > before + 1, 30, message="a short connection after it")
        assert steps()[before + 1] == 2, steps()
    finally:
        proxy.close()
        assert butler.stop() == 0
