"""Integration-test harness: real processes on loopback.

- `Broker`: a real Mosquitto on a free port, with its own config and persistence
  directory, that tests can kill and restart.
- `Butler`: the real binary (BUTLER_BINARY, set by ctest) with a YAML config
  written per test.
- `Client`: a paho-mqtt (MQTT v5) client that records what it receives so tests
  wait for messages instead of sleeping.
- the QRS simulator comes from tests/sim/simctl.py.

Nothing here sleeps for a fixed time to let something happen: every wait
polls for the condition with a deadline.
"""
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import contextlib

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))

BUTLER_BINARY = os.environ.get("BUTLER_BINARY", os.path.join(ROOT, "build", "butler"))
VALGRIND = os.environ.get("BUTLER_VALGRIND") == "1"
# Under valgrind Butler runs ~20x slower: every deadline stretches with it.
TIMEOUT_SCALE = 6 if VALGRIND else 1

TASK_SALES = "5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91"

import sense_calls  # noqa: E402  (tests/integration, after the path set-up)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_anon_kb(pid):
    """Resident anonymous memory of a process (kB), from /proc/<pid>/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def wait_until(condition, timeout=10.0, interval=0.02, message="condition"):
    timeout *= TIMEOUT_SCALE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


class Broker:
    """A Mosquitto broker on a free loopback port, restartable with its state."""

    def __init__(self, directory):
        self.directory = directory
        self.port = free_port()
        self.process = None
        self.config_path = os.path.join(directory, "mosquitto.conf")
        with open(self.config_path, "w") as f:
            f.write(
                f"listener {self.port} 127.0.0.1\n"
                "allow_anonymous true\n"
                # The default of 1000 silently drops QoS 1 messages to slow subscribers.
                "max_queued_messages 0\n"
                "max_inflight_messages 0\n"
                "persistence true\n"
                f"persistence_location {directory}/\n"
                "autosave_interval 1\n"
                "user root\n"
                "log_dest none\n"
            )

    def start(self):
        self.process = subprocess.Popen(
            ["mosquitto", "-c", self.config_path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def accepting():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_until(accepting, 10, message="mosquitto to listen")
        return self

    def stop(self, hard=False):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            self.process.wait(10)
        self.process = None


class Client:
    """An MQTT v5 client that records every message it receives."""

    def __init__(self, broker, client_id=None, clean_start=True):
        self.messages = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.client = mqtt.Client(
            client_id=client_id or f"test-{os.getpid()}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.client.on_connect = lambda *a, **k: self.connected.set()
        self.client.connect("127.0.0.1", broker.port, clean_start=clean_start, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(10), "test client could not connect"

    def _on_message(self, client, userdata, message):
        props = getattr(message, "properties", None)
        record = {
            "topic": message.topic,
            "payload": message.payload,
            "retain": message.retain,
            "correlation": getattr(props, "CorrelationData", None) if props else None,
        }
        with self.lock:
            self.messages.append(record)
            self.arrived.notify_all()

    def subscribe(self, topic_filter, qos=1):
        done = threading.Event()
        self.client.on_subscribe = lambda *a, **k: done.set()
        self.client.subscribe(topic_filter, qos)
        assert done.wait(10)

    def publish(self, topic, payload, qos=1, response_topic=None, correlation=None, retain=False):
        properties = None
        if response_topic or correlation:
            properties = Properties(PacketTypes.PUBLISH)
            if response_topic:
                properties.ResponseTopic = response_topic
            if correlation:
                properties.CorrelationData = correlation
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(10)
        return info

    def wait_for(self, predicate, timeout=10.0, count=1, what="message"):
        """Wait until `count` recorded messages satisfy predicate; return them."""
        timeout *= TIMEOUT_SCALE
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                found = [m for m in self.messages if predicate(m)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [(m["topic"], m["payload"][:200]) for m in self.messages[-10:]]
                    raise AssertionError(f"timed out waiting for {what}; last seen: {seen}")
                self.arrived.wait(remaining)

    def results(self, request_id=None):
        out = []
        with self.lock:
            for m in self.messages:
                if m["topic"].endswith("/task/result"):
                    body = json.loads(m["payload"])
                    if request_id is None or body.get("requestId") == request_id:
                        out.append(body)
        return out

    def wait_result(self, request_id, timeout=15.0, topic_suffix="/task/result"):
        def match(m):
            if not m["topic"].endswith(topic_suffix):
                return False
            try:
                return json.loads(m["payload"]).get("requestId") == request_id
            except ValueError:
                return False

        return json.loads(self.wait_for(match, timeout, what=f"result {request_id}")[0]["payload"])

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def yaml_quote(value):
    return json.dumps(value)


# Every butler a test starts; killed at the end of the session so a failed
# test never leaves daemons behind on the machine.
STARTED_PROCESSES = []


@pytest.fixture(scope="session", autouse=True)
def kill_leftover_butlers():
    yield
    for process in STARTED_PROCESSES:
        if process.poll() is None:
            process.kill()
            process.wait(10)


class Butler:
    """The real butler binary with a config written for this test."""

    def __init__(self, directory, broker, qrs=None, extra_yaml="", env=None, mqtt_extra=(),
                 http_yaml=None, udp=False, udp_yaml=(), qrs_yaml=()):
        """http_yaml: None keeps the HTTP API off; a list of YAML lines (or a
        string of lines) turns it on with those lines inside `http:`. Without a
        `listen:` line it listens on 127.0.0.1:<free port>. self.http_port is
        that port (None when the caller chose its own listen line).
        udp: False keeps UDP ingress off; True turns it on at 127.0.0.1:<free
        UDP port> (self.udp_port) with the extra `udp_yaml` lines inside `udp:`.
        qrs_yaml: extra YAML lines inside `qrs:` (with qrs given), e.g.
        "notifications: {enable: true, ...}"."""
        self.directory = directory
        self.broker = broker
        self.config_path = os.path.join(directory, "butler.yaml")
        self.log_path = os.path.join(directory, "butler.log")
        self.process = None
        self.env = dict(os.environ, **(env or {}))
        lines = [
            "log: { level: debug }",
            "shutdown_grace_s: 5",
            "mqtt:",
            f"  port: {broker.port}",
            f"  client_id: butler-test-{os.getpid()}-{time.monotonic_ns()}",
            "  reconnect_min_ms: 50",
            "  reconnect_max_ms: 500",
        ] + [f"  {line}" for line in mqtt_extra] + self._http_lines(http_yaml) + \
            self._udp_lines(udp, udp_yaml) + [
            "retry: { max_attempts: 3, initial_backoff_ms: 20, max_backoff_ms: 100 }",
            f"spool: {{ dir: {yaml_quote(os.path.join(directory, 'state'))} }}",
        ]
        if qrs is not None:
            lines += [
                "qrs:",
                f"  url: https://localhost:{qrs.port}",
                f"  cert_file: {yaml_quote(os.path.join(qrs.pki_dir, 'client.pem'))}",
                f"  key_file: {yaml_quote(os.path.join(qrs.pki_dir, 'client_key.pem'))}",
                f"  ca_file: {yaml_quote(os.path.join(qrs.pki_dir, 'root.pem'))}",
                "  timeout_ms: 3000",
            ] + [f"  {line}" for line in qrs_yaml]
        text = "\n".join(lines) + "\n" + extra_yaml
        with open(self.config_path, "w") as f:
            f.write(text)

    def _udp_lines(self, udp, udp_yaml):
        self.udp_port = None
        if not udp:
            return ["udp: { enable: false }"]
        # An int is a port chosen by the caller (e.g. a simulator's --udp-target).
        self.udp_port = udp if type(udp) is int else free_udp_port()
        return ["udp:", "  enable: true", f"  listen: 127.0.0.1:{self.udp_port}"] + [
            f"  {line}" for line in udp_yaml]

    def _http_lines(self, http_yaml):
        self.http_port = None
        self.http_enabled = http_yaml is not None
        if http_yaml is None:
            return ["http: { enable: false }"]
        if isinstance(http_yaml, str):
            http_yaml = http_yaml.splitlines()
        http_yaml = [line for line in http_yaml if line.strip()]
        lines = ["http:", "  enable: true"]
        if not any(line.strip().startswith("listen:") for line in http_yaml):
            self.http_port = free_port()
            lines.append(f"  listen: 127.0.0.1:{self.http_port}")
        return lines + [f"  {line}" for line in http_yaml]

    def start(self, wait_online=True):
        command = [BUTLER_BINARY, "--config", self.config_path]
        if VALGRIND:
            command = ["valgrind", "--error-exitcode=99", "--leak-check=full",
                       "--errors-for-leak-kinds=definite", "--quiet"] + command
        started_at = len(self.log())
        self.log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        env=self.env, cwd=self.directory)
        STARTED_PROCESSES.append(self.process)
        if wait_online:
            # Only this run's lines: a restarted Butler appends to the same log.
            wait_until(lambda: "subscriptions acknowledged" in self.log()[started_at:]
                       or self.process.poll() is not None,
                       30 if VALGRIND else 10, message="butler to connect")
            assert self.process.poll() is None, f"butler exited early:\n{self.log()}"
            if self.http_enabled:
                wait_until(lambda: "HTTP API listening" in self.log()[started_at:]
                           or self.process.poll() is not None,
                           30 if VALGRIND else 10, message="butler's HTTP API to listen")
                assert self.process.poll() is None, f"butler exited early:\n{self.log()}"
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        self.process = None
        self.log_file.close()
        return code


@pytest.fixture
def workdir():
    directory = tempfile.mkdtemp(prefix="butler-it-")
    yield directory
    if os.environ.get("BUTLER_KEEP_WORKDIR") != "1":  # keep logs for a post-mortem
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def broker(workdir):
    b = Broker(workdir).start()
    yield b
    b.stop()


@contextlib.contextmanager
def recorded_qrs_sim(directory, **kwargs):
    """simctl.start_qrs_sim with every call mirrored to a record file; on exit the requests
    Butler sent are handed to sense_calls (held to docs/sense-calls.md at the session end)."""
    import simctl

    record_file = os.path.join(directory, "qrs_calls.jsonl")
    extra = list(kwargs.pop("extra_args", ())) + ["--record-file", record_file]
    try:
        with simctl.start_qrs_sim(directory, extra_args=extra, **kwargs) as sim:
            yield sim
    finally:
        sense_calls.note_qrs_records(sense_calls.read_record_file(record_file))


@pytest.fixture(scope="module")
def qrs_sim():
    directory = tempfile.mkdtemp(prefix="butler-qrs-")
    with recorded_qrs_sim(directory) as sim:
        yield sim
    shutil.rmtree(directory, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when Butler called a QRS route or an engine method that
    docs/sense-calls.md does not list (the table is the reviewed record of every call)."""
    missing_qrs, missing_engine = sense_calls.unlisted()
    if not missing_qrs and not missing_engine:
        return
    lines = ["Butler made calls that docs/sense-calls.md does not list:"]
    lines += [f"  QRS {method} {path}" for method, path in missing_qrs]
    lines += [f"  engine {method}" for method in missing_engine]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line("\n".join(lines), red=True)
    else:
        print("\n".join(lines), file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def qrs(qrs_sim):
    qrs_sim.control("POST", "/_sim/reset")
    yield qrs_sim


@pytest.fixture(scope="module")
def http_sink_module():
    """One HTTP sink (tests/sim/http_sink.py) per test module."""
    from http_sink import HttpSink

    with HttpSink() as sink:
        yield sink


@pytest.fixture
def http_sink(http_sink_module):
    """The module's HTTP sink, emptied of requests and planned failures."""
    http_sink_module.reset()
    yield http_sink_module
    http_sink_module.reset()


@pytest.fixture
def client(broker):
    c = Client(broker)
    c.subscribe("butler/#")
    yield c
    c.close()


def start_calls(sim, task_id=None):
    """One entry per task start Butler asked QRS for, in call order.

    A POST /qrs/task/{id}/start is one start; a POST /qrs/task/start/many (the
    starts that waited together, task_start.batch_max) counts once for every id
    in its body: such entries get the path of the one-task call and "many": True,
    with the response of the call that carried them."""
    status, body = sim.control("GET", "/_sim/calls?method=POST&path_re=/start(/many)?$")
    starts = []
    for call in body if isinstance(body, list) else body.get("calls", []):
        if call.get("path", "").split("?")[0].endswith("/task/start/many"):
            ids = call.get("body_json")
            for one in ids if isinstance(ids, list) else []:
                starts.append(dict(call, path=f"/qrs/task/{one}/start", many=True))
        else:
            starts.append(call)
    if task_id:
        starts = [c for c in starts if task_id in c.get("path", "")]
    return starts
