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
    proxy = ClosingProxy(broker.port)
    butler = Butler(workdir, types.SimpleNamespace(port=proxy.port))
    # Each drop doubles the delay: 100, 200, ... 3200 ms (half of it jitter).
    set_mqtt_lines(butler, {"reconnect_min_ms": 100, "reconnect_max_ms": 3200})
    try:
        butler.start(wait_online=False)
        wait_until(lambda: len(proxy.connections) >= 1, 15, message="a first connection")
        first = proxy.connections[0]
        wait_until(lambda: time.monotonic() - first >= 8, 15, message="8 s of flapping")
        flapping = sum(1 for t in proxy.connections if t - first < 8)
        # A reset at every CONNACK would reconnect every ~0.4 s (about 20 in 8 s);
        # the growing backoff allows at most 8 connections in 8 s.
        assert flapping <= 10, f"{flapping} connections in 8 s: the backoff did not grow"
        # Now one connection stays up past STABLE_CONNECTION_MS, then drops.
        proxy.hold_s = 11.0
        count = len(proxy.connections)
        wait_until(lambda: len(proxy.connections) > count, 15, message="the long connection")
        long_started = proxy.connections[count]
        proxy.hold_s = 0.3
        wait_until(lambda: time.monotonic() - long_started >= 11, 15,
                   message="the long connection held 11 s")
        wait_until(lambda: len(proxy.connections) > count + 1, 10,
                   message="a reconnect after the long connection")
        after = proxy.connections[count + 1]
        # Reset: the next delays are 50-100, 100-200, 200-400 ms again, so more
        # connections come within 2 s of the drop; without the reset the
        # delay stays at 1.6-3.2 s and at most one more does.
        wait_until(lambda: time.monotonic() - after >= 2, 5, message="2 s after the reconnect")
        quick = sum(1 for t in proxy.connections if after < t <= after + 2)
        assert quick >= 2, f"only {quick} reconnects within 2 s: the backoff was not reset"
    finally:
        proxy.close()
        assert butler.stop() == 0
