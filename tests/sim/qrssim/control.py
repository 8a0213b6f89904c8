"""The control API (sense-interfaces.md 4.9): plain HTTP/1.1 on loopback, JSON in
and out, never recorded in the QRS call log."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from . import config as knobs
from .faults import FaultError
from .model import OUTCOMES, FixtureError
from .recorder import matcher


class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class ControlApi:
    def __init__(self, sim):
        self.sim = sim
        self._routes = [
            ("GET", r"/_sim/health", lambda p, b: {"ok": True}),
            ("GET", r"/_sim/stats", lambda p, b: self.sim.recorder.stats()),
            ("GET", r"/_sim/calls", self.calls),
            ("GET", r"/_sim/calls/wait", self.wait_calls),
            ("DELETE", r"/_sim/calls", self.clear_calls),
            ("POST", r"/_sim/reset", self.reset),
            ("POST", r"/_sim/fixture", self.fixture),
            ("GET", r"/_sim/config", lambda p, b: dict(self.sim.config)),
            ("POST", r"/_sim/config", self.set_config),
            ("POST", r"/_sim/clock", self.clock),
            ("GET", r"/_sim/faults", lambda p, b: {"faults": self.sim.faults.list()}),
            ("POST", r"/_sim/faults", self.add_fault),
            ("DELETE", r"/_sim/faults", self.clear_faults),
            ("DELETE", r"/_sim/faults/(?P<id>[^/]+)", self.remove_fault),
            ("PATCH", r"/_sim/tasks/(?P<id>[^/]+)", self.patch_task),
            ("POST", r"/_sim/tasks/(?P<id>[^/]+)/complete", self.complete_task),
            ("GET", r"/_sim/udp", self.udp),
            ("GET", r"/_sim/about", lambda p, b: dict(self.sim.model.about)),
            ("POST", r"/_sim/about", self.set_about),
            ("GET", r"/_sim/licenses", self.licenses),
            ("GET", r"/_sim/notifications", self.notifications),
            ("POST", r"/_sim/notifications/forget", self.notifications_forget),
            ("POST", r"/_sim/notifications/config", self.notifications_config),
        ]
        self._routes = [(m, re.compile(p + r"/?$"), h) for m, p, h in self._routes]

    def dispatch(self, method, path, params, body):
        """-> (status, JSON object)."""
        known = False
        for m, pattern, handler in self._routes:
            match = pattern.match(path)
            if match:
                known = True
                if m == method:
                    params.update(match.groupdict())
                    try:
                        result = handler(params, body)
                    except ControlError as e:
                        return e.status, {"error": str(e)}
                    except (FixtureError, FaultError, knobs.ConfigError, ValueError) as e:
                        return 400, {"error": str(e)}
                    return result if isinstance(result, tuple) else (200, result)
        return (405, {"error": "method not allowed"}) if known else (404, {"error": "no such control endpoint"})

    # ---- calls -------------------------------------------------------------

    @staticmethod
    def _matcher(p):
        try:
            path_re = re.compile(p["path_re"]) if p.get("path_re") else None
        except re.error as e:
            raise ControlError(400, f"path_re: {e}") from None
        return matcher(int(p.get("since", 0)), p.get("route"), path_re, p.get("method"))

    def calls(self, p, body):
        return {"calls": self.sim.recorder.query(self._matcher(p))}

    def wait_calls(self, p, body):
        ok, calls = self.sim.recorder.wait(self._matcher(p), int(p.get("count", 1)),
                                           int(p.get("timeout_ms", 5000)) / 1000.0)
        return (200 if ok else 408), {"calls": calls}

    def clear_calls(self, p, body):
        self.sim.recorder.clear()
        return {"ok": True}

    # ---- model and knobs ---------------------------------------------------

    def reset(self, p, body):
        self.sim.reset()
        return {"ok": True}

    def fixture(self, p, body):
        if not isinstance(body, dict):
            raise ControlError(400, "expected a fixture JSON object")
        self.sim.replace_fixture(body)
        return {"ok": True, "tasks": len(self.sim.model.tasks)}

    def set_config(self, p, body):
        knobs.apply(self.sim.config, body)
        return dict(self.sim.config)

    def clock(self, p, body):
        if not isinstance(body, dict):
            raise ControlError(400, 'expected {"mode": "manual"|"real"} or {"advance_ms": N}')
        clock = self.sim.clock
        if "mode" in body:
            if body["mode"] not in ("manual", "real"):
                raise ControlError(400, "mode: manual or real")
            clock.set_manual(body["mode"] == "manual")
        if "advance_ms" in body:
            clock.advance(float(body["advance_ms"]))
        self.sim.scheduler.kick()
        return {"mode": "manual" if clock.manual else "real"}

    def _task(self, task_id):
        task = self.sim.model.tasks.get(task_id.lower())
        if task is None:
            raise ControlError(404, f"no task {task_id}")
        return task

    def patch_task(self, p, body):
        with self.sim.lock:
            task = self._task(p["id"])
            self.sim.model.patch_task(task, body)
            return self.sim.model.task_full(task)

    def complete_task(self, p, body):
        outcome = body.get("outcome", "success") if isinstance(body, dict) else "success"
        if outcome not in OUTCOMES or outcome in ("hang", "skip"):
            raise ControlError(400, "outcome: success, fail, error or abort")
        with self.sim.lock:
            count = self.sim.engine.complete(self._task(p["id"]), outcome)
        if not count:
            raise ControlError(409, "the task has no Started run")
        return {"completed": count}

    def set_about(self, p, body):
        """Change /qrs/about (an upgrade): the given fields replace the current ones."""
        if not isinstance(body, dict) or not body:
            raise ControlError(400, 'expected an object such as {"buildVersion": "14.195.2"}')
        with self.sim.lock:
            self.sim.model.about = {**self.sim.model.about, **body}
            return dict(self.sim.model.about)

    def licenses(self, p, body):
        """The allocations left, per access type (what DELETEs removed is gone)."""
        with self.sim.lock:
            mdl = self.sim.model
            return {kind: [mdl.allocation_full(kind, a) for a in table.values()]
                    for kind, table in mdl.licenses.allocations.items()}

    # ---- faults and datagrams ----------------------------------------------

    def add_fault(self, p, body):
        return self.sim.faults.add(body).to_json()

    def clear_faults(self, p, body):
        self.sim.faults.clear()
        return {"ok": True}

    def remove_fault(self, p, body):
        if not self.sim.faults.remove(p["id"]):
            raise ControlError(404, f"no fault {p['id']}")
        return {"ok": True}

    def notifications(self, p, body):
        """Live change subscriptions and the callbacks made (since=<seq>)."""
        return self.sim.notifier.state(int(p.get("since", 0)))

    def notifications_forget(self, p, body):
        """A QRS restart: subscriptions are gone (they live in memory only)."""
        return {"forgotten": self.sim.notifier.forget()}

    def notifications_config(self, p, body):
        """{"delay_ms", "retries", "retry_delay_ms", "drop", "timeout_ms"}: slow callbacks,
        retried callbacks (not documented for real QRS), and callbacks never sent."""
        return self.sim.notifier.set_knobs(body)

    def udp(self, p, body):
        if self.sim.udp is None:
            return {"target": None, "datagrams": []}
        since = int(p.get("since", 0))
        return {"target": self.sim.udp.target,
                "datagrams": [d for d in list(self.sim.udp.sent) if d["seq"] > since]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "qrs-sim-control"

    def log_message(self, *args):  # quiet: the benchmark polls /_sim/stats
        pass

    def _handle(self):
        path, _, query = self.path.partition("?")
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            status, obj = 400, {"error": "body is not JSON"}
        else:
            status, obj = self.server.control.dispatch(self.command, path, params, body)
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _handle


class ControlServer:
    def __init__(self, sim, port):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.control = ControlApi(sim)
        self.port = self.httpd.server_address[1]

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, name="control", daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
