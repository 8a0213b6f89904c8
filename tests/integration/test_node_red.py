"""The Node-RED example flow (docs/node-red/flow.json) against the real thing.

Node-RED 4 (npm, installed once into build/node-red and reused), the test
broker, the real butler and the QRS simulator. The flow is the documented file
with only the broker's address changed. The test presses the flow's inject
button through Node-RED's admin API (what the editor's button does) and checks:
  1. the task start reached the QRS simulator;
  2. the flow matched Butler's answer by its requestId (it publishes what it
     saw on nodered/butler/outcome);
  3. the flow reacts to butler/events/task/failed/# (nodered/butler/alert);
  4. the chain: a start with "follow": true whose run ends in failure (set through
     the simulator's control API) starts nothing more and is reported on
     nodered/butler/chain-stopped; ending in success, it starts the second task.
Skipped, with the reason, when npm cannot install Node-RED (no npm, no
registry) or Node.js is too old; otherwise every failure is a failure.
"""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request

import pytest

from conftest import ROOT, TASK_SALES, TIMEOUT_SCALE, Butler, Client, free_port, wait_until

FLOW = os.path.join(ROOT, "docs", "node-red", "flow.json")
NODE_RED_DIR = os.environ.get("BUTLER_NODE_RED_DIR", os.path.join(ROOT, "build", "node-red"))
NODE_RED_SPEC = "node-red@4"
INJECT_START = "b7e1a0000000d001"   # the flow's "Start 'Reload Sales Dashboard'" inject node
INJECT_CHAIN = "b7e1a0000000d101"   # the flow's "Reload Sales, then Finance" inject node
TASK_FINANCE = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"   # "Reload Finance", the chain's second task
# Follows polled every second, so a run's end reaches the flow soon after it ended.
FOLLOW_YAML = "task_start: { follow: { poll_s: 1, timeout_s: 120 } }\n"
BROKER_NODE = "b7e1a0000000b001"
NPM_TIMEOUT_S = 600


def node_major():
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=30)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def ensure_node_red():
    """Path of red.js; installs Node-RED 4 into NODE_RED_DIR the first time."""
    red = os.path.join(NODE_RED_DIR, "node_modules", "node-red", "red.js")
    marker = os.path.join(NODE_RED_DIR, ".installed")   # written only after a complete install
    if os.path.exists(marker) and os.path.exists(red):
        return red
    if not shutil.which("npm") or not shutil.which("node"):
        pytest.skip("Node-RED test skipped: node/npm are not installed")
    major = node_major()
    if major is None or major < 18:
        pytest.skip(f"Node-RED test skipped: Node-RED 4 needs Node.js >= 18 (found {major})")
    os.makedirs(NODE_RED_DIR, exist_ok=True)
    with open(os.path.join(NODE_RED_DIR, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # two test runs at once install once
        if os.path.exists(marker) and os.path.exists(red):
            return red
        try:
            result = subprocess.run(
                ["npm", "install", "--prefix", NODE_RED_DIR, "--no-audit", "--no-fund",
                 "--loglevel=error", NODE_RED_SPEC],
                capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            result = None
        if result is None or result.returncode != 0:
            try:
                ping = subprocess.run(["npm", "ping"], capture_output=True, text=True, timeout=60)
                reachable = ping.returncode == 0
            except subprocess.TimeoutExpired:
                reachable = False
            if not reachable:
                pytest.skip(f"Node-RED test skipped: npm cannot reach its registry "
                            f"(npm install {NODE_RED_SPEC} failed)")
            detail = "timed out" if result is None else (result.stderr or result.stdout)[-3000:]
            pytest.fail(f"npm reaches its registry but 'npm install {NODE_RED_SPEC}' failed:\n{detail}")
        with open(marker, "w") as f:
            f.write(NODE_RED_SPEC + "\n")
    return red


class NodeRed:
    """Node-RED, headless, on a free loopback port, running a copy of the flow."""

    def __init__(self, red_js, directory, broker_port):
        self.red_js = red_js
        self.user_dir = os.path.join(directory, "node-red")
        os.makedirs(self.user_dir)
        self.port = free_port()
        self.log_path = os.path.join(directory, "node-red.log")
        with open(FLOW, encoding="utf-8") as f:
            flow = json.load(f)
        brokers = [n for n in flow if n["type"] == "mqtt-broker"]
        assert [b["id"] for b in brokers] == [BROKER_NODE], "the flow should have one broker node"
        brokers[0]["broker"] = "127.0.0.1"
        brokers[0]["port"] = str(broker_port)
        with open(os.path.join(self.user_dir, "flows.json"), "w", encoding="utf-8") as f:
            json.dump(flow, f)
        self.settings = os.path.join(self.user_dir, "settings.js")
        settings = {
            "uiHost": "127.0.0.1",
            "uiPort": self.port,
            "userDir": self.user_dir,
            "flowFile": "flows.json",
            # No credentials in the flow; no key to generate or ask about.
            "credentialSecret": False,
            "httpAdminRoot": "/",       # POST /inject/<id>: the editor's inject button
            "logging": {"console": {"level": "info", "metrics": False, "audit": False}},
            "telemetry": {"enabled": False, "updateNotification": False},
            "diagnostics": {"enabled": False, "ui": False},
            "externalModules": {"autoInstall": False, "palette": {"allowInstall": False}},
            "editorTheme": {"tours": False, "projects": {"enabled": False}},
        }
        with open(self.settings, "w", encoding="utf-8") as f:
            f.write("module.exports = " + json.dumps(settings, indent=2) + ";\n")
        self.process = None

    def start(self):
        env = dict(os.environ, HOME=self.user_dir, NODE_RED_HOME=self.user_dir)
        self.log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            ["node", self.red_js, "--settings", self.settings, "--userDir", self.user_dir],
            stdout=self.log_file, stderr=subprocess.STDOUT, env=env, cwd=self.user_dir)
        wait_until(lambda: "Started flows" in self.log() or self.process.poll() is not None,
                   60, message="Node-RED to start its flows")
        assert self.process.poll() is None, f"Node-RED exited:\n{self.log()[-3000:]}"
        # The broker node subscribes in the same step as it logs this line, so
        # from here on nothing published to butler/task/result is missed.
        wait_until(lambda: "Connected to broker" in self.log(), 30,
                   message="Node-RED to connect to the broker")
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def inject(self, node_id):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/inject/{node_id}",
                                         data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.log_file.close()


@pytest.fixture(scope="module")
def red_js():
    return ensure_node_red()


def plan(qrs, task_id, outcome):
    """The next runs of the task end with outcome, after a short run and no retry."""
    status, body = qrs.control("PATCH", f"/_sim/tasks/{task_id}",
                               {"maxRetries": 0, "run": {"outcomes": [outcome], "durationMs": 200}})
    assert status == 200, body


def start_calls(qrs, task_id):
    """Every start (plain or synchronous) of the task QRS received."""
    _, body = qrs.control("GET", "/_sim/calls?method=POST&path_re="
                          + urllib.parse.quote(f"^/qrs/task/{task_id}/start"))
    return body["calls"]


def test_flow_starts_task_and_matches_answer_and_reacts_to_failures(red_js, workdir, broker, qrs):
    butler = Butler(workdir, broker, qrs, extra_yaml=FOLLOW_YAML).start()
    watcher = Client(broker)
    watcher.subscribe("butler/task/result")
    watcher.subscribe("butler/task/finished/#")
    watcher.subscribe("nodered/#")
    node_red = NodeRed(red_js, workdir, broker.port).start()
    try:
        # Someone else's request first: the flow must not take its answer for its own.
        watcher.publish("butler/task/start", json.dumps({"tag": "nightly", "requestId": "not-node-red"}))
        watcher.wait_result("not-node-red")

        node_red.inject(INJECT_START)

        # 1. The start reached the "Sense server".
        calls = qrs.wait_calls(path_re=f"/qrs/task/{TASK_SALES}/start", method="POST", timeout_ms=15000)
        assert calls, "no task start reached the QRS simulator"

        # 2. The flow saw Butler's answer to its own request, matched by requestId.
        outcome_msg = watcher.wait_for(lambda m: m["topic"] == "nodered/butler/outcome", timeout=20,
                                       what="the flow's outcome report")[0]
        outcome = json.loads(outcome_msg["payload"])
        assert outcome["status"] == "started", outcome
        assert outcome["requestId"].startswith("node-red-"), outcome
        assert outcome["request"] == {"taskName": "Reload Sales Dashboard",
                                      "requestId": outcome["requestId"]}
        assert [t["taskId"] for t in outcome["started"]] == [TASK_SALES], outcome
        butler_answer = [r for r in watcher.results(outcome["requestId"])]
        assert len(butler_answer) == 1 and butler_answer[0]["status"] == "started", butler_answer
        # Exactly one outcome: the "not-node-red" answer was ignored.
        assert len([m for m in watcher.messages if m["topic"] == "nodered/butler/outcome"]) == 1

        # 3. A failed-reload event (as Butler publishes it) becomes the flow's alert.
        event = {"type": "failed", "host": "sense-node-01", "taskName": "Reload Sales Dashboard",
                 "appName": "Sales Dashboard", "user": "CORP\\jdoe", "taskId": TASK_SALES,
                 "appId": "8a5c3b1e-2f4d-4e6a-9b7c-1d2e3f4a5b6c", "logTimestamp": "2025-05-20 10:00:00,000",
                 "level": "ERROR", "executionId": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
                 "message": "Reload failed", "receivedAt": "2025-05-20T10:00:00.100Z", "qrs": None}
        watcher.publish(f"butler/events/task/failed/{TASK_SALES}", json.dumps(event))
        alert_msg = watcher.wait_for(lambda m: m["topic"] == "nodered/butler/alert", timeout=20,
                                     what="the flow's alert")[0]
        alert = json.loads(alert_msg["payload"])
        assert alert["taskId"] == TASK_SALES
        assert alert["text"] == ("Reload of Reload Sales Dashboard (Sales Dashboard) failed on "
                                 "sense-node-01 at 2025-05-20 10:00:00,000")

        # 4. Someone else follows a successful run of the chain's first task: its finished
        # message reaches the flow, which must not take it for its own (checked by the
        # count of starts of the second task at the end).
        plan(qrs, TASK_SALES, "success")
        plan(qrs, TASK_FINANCE, "success")
        watcher.publish("butler/task/start", json.dumps({"taskId": TASK_SALES, "follow": True,
                                                         "requestId": "not-node-red-chain"}))
        watcher.wait_for(lambda m: m["topic"] == f"butler/task/finished/{TASK_SALES}" and
                         json.loads(m["payload"])["requestId"] == "not-node-red-chain",
                         timeout=30, what="the other client's finished message")

        # 4a. The chain, when the first run fails: started with follow, its end came on
        # butler/task/finished/<taskId>, and the flow stopped the chain and said why.
        plan(qrs, TASK_SALES, "fail")
        node_red.inject(INJECT_CHAIN)
        stopped_msg = watcher.wait_for(lambda m: m["topic"] == "nodered/butler/chain-stopped",
                                       timeout=40, what="the flow's chain-stopped report")[0]
        stopped = json.loads(stopped_msg["payload"])
        assert (stopped["status"], stopped["statusCode"], stopped["taskId"]) == \
            ("failed", 8, TASK_SALES), stopped
        assert stopped["requestId"].startswith("node-red-") and stopped["next"] == {"taskName": "Reload Finance"}
        assert stopped["text"] == ("Reload of Reload Sales Dashboard ended with failed (QRS status 8); "
                                   "the next task was not started")
        # What the flow reacted to is Butler's one finished message for that request...
        ended = [json.loads(m["payload"]) for m in watcher.messages
                 if m["topic"] == f"butler/task/finished/{TASK_SALES}"]
        assert [e["requestId"] for e in ended] == ["not-node-red-chain", stopped["requestId"]], ended
        assert ended[1]["executionId"] == stopped["executionId"]
        # ...of a run started synchronously (the follow), whose script log came along.
        assert any(c["path"] == f"/qrs/task/{TASK_SALES}/start/synchronous" for c in start_calls(qrs, TASK_SALES))
        assert isinstance(stopped["scriptLogTail"], str) and stopped["scriptLogTail"].strip(), stopped

        # 4b. The chain, when the first run succeeds: the flow starts the second task.
        plan(qrs, TASK_SALES, "success")
        node_red.inject(INJECT_CHAIN)
        qrs.wait_calls(path_re=f"^/qrs/task/{TASK_FINANCE}/start", method="POST",
                       timeout_ms=int(40000 * TIMEOUT_SCALE))
        second = watcher.wait_for(
            lambda m: m["topic"] == "nodered/butler/outcome" and
            json.loads(m["payload"])["request"].get("taskName") == "Reload Finance",
            timeout=20, what="the outcome of the chain's second start")[0]
        second = json.loads(second["payload"])
        assert second["status"] == "started" and [t["taskId"] for t in second["started"]] == [TASK_FINANCE]
        assert "follow" not in second["request"], second
        ended = [json.loads(m["payload"]) for m in watcher.messages
                 if m["topic"] == f"butler/task/finished/{TASK_SALES}"]
        assert [e["status"] for e in ended] == ["success", "failed", "success"], ended
        # Exactly one start of the second task: the other client's run and the failed
        # run started none, and the flow's successful one started it once.
        assert len(start_calls(qrs, TASK_FINANCE)) == 1, start_calls(qrs, TASK_FINANCE)
        assert len([m for m in watcher.messages if m["topic"] == "nodered/butler/chain-stopped"]) == 1

        log = node_red.log()
        errors = [line for line in log.splitlines() if "[error]" in line]
        assert not errors, f"Node-RED logged errors:\n{log[-3000:]}"
    finally:
        node_red.stop()
        watcher.close()
        code = butler.stop()
    assert code == 0, f"butler exit code {code}\n{butler.log()[-3000:]}"
