"""Call recording (sense-interfaces.md 4.8), counters and the long-poll behind
GET /_sim/calls/wait.

Records are kept light because a benchmark fills the ring at thousands of calls
a second: a slotted object holding the raw request target and a few selected
headers. The JSON view (decoded path and query, body as text/JSON) is built only
when a test asks for it.
"""

import json
import queue
import threading
import time
from collections import deque

from .util import parse_query

# Request headers worth keeping for assertions (all lower-case).
KEPT_HEADERS = ("x-qlik-xrfkey", "x-qlik-user", "content-type", "content-length", "user-agent",
                "accept", "connection", "transfer-encoding", "expect")


class CallRecord:
    __slots__ = ("seq", "event", "t_wall", "t_mono_ms", "peer", "tls_verified", "tls_subject",
                 "method", "raw_target", "headers", "body", "xrf_ok", "xrf_reason", "user", "route",
                 "fault", "status", "closed", "bytes_sent", "duration_ms", "done", "error")

    def __init__(self, event, peer, tls_verified, tls_subject):
        self.event, self.peer = event, peer
        self.tls_verified, self.tls_subject = tls_verified, tls_subject
        self.t_wall = time.time()
        self.t_mono_ms = time.monotonic() * 1000.0
        self.method = self.raw_target = self.body = self.xrf_ok = self.xrf_reason = None
        self.user = self.route = self.fault = self.status = self.closed = self.error = None
        self.headers = {}
        self.bytes_sent = 0
        self.duration_ms = None
        self.done = False

    def path(self):
        return (self.raw_target or "").partition("?")[0]

    def to_json(self):
        target = self.raw_target or ""
        path, _, raw_query = target.partition("?")
        out = {
            "seq": self.seq, "event": self.event, "t_wall": self.t_wall,
            "t_mono_ms": round(self.t_mono_ms, 3),
            "peer": f"{self.peer[0]}:{self.peer[1]}" if self.peer else None,
            "tls": {"verified": self.tls_verified, "subject": self.tls_subject},
            "method": self.method, "raw_target": self.raw_target, "path": path,
            "query": parse_query(raw_query)[0], "headers": self.headers,
            "xrf": {"ok": self.xrf_ok, "reason": self.xrf_reason},
            "user": None if self.user is None else {"directory": self.user[0], "id": self.user[1]},
            "route": self.route, "fault_applied": self.fault,
            "response": None if not self.done else {
                "status": self.status, "closed": self.closed, "bytes_sent": self.bytes_sent},
            "duration_ms": self.duration_ms,
        }
        if self.error:  # why a TLS handshake was rejected or aborted
            out["error"] = self.error
        if self.body:
            out["body"] = self.body.decode("utf-8", "replace")
            try:
                out["body_json"] = json.loads(self.body)
            except ValueError:
                pass
        return out


class Recorder:
    def __init__(self, capacity=100000, record_file=None):
        self._ring = deque(maxlen=capacity)
        self._cond = threading.Condition(threading.Lock())  # plain Lock: cheaper than the RLock default
        self._seq = 0
        self._waiters = 0
        self._reset_counters()
        self._mirror = None
        if record_file:
            self._mirror = queue.SimpleQueue()
            threading.Thread(target=self._write_mirror, args=(record_file,), name="record-file",
                             daemon=True).start()

    def _reset_counters(self):
        self.calls = 0
        self.starts = 0
        self.by_route = {}
        self.by_status = {}
        self.starts_by_task = {}

    # ---- writers (request threads) ---------------------------------------

    def begin(self, rec):
        with self._cond:
            self._seq += 1
            rec.seq = self._seq
            self._ring.append(rec)
            self.calls += 1

    def finish(self, rec, status, closed="normal", bytes_sent=0):
        rec.status, rec.closed, rec.bytes_sent = status, closed, bytes_sent
        rec.duration_ms = round(time.monotonic() * 1000.0 - rec.t_mono_ms, 3)
        with self._cond:
            rec.done = True
            route = rec.route or rec.event
            self.by_route[route] = self.by_route.get(route, 0) + 1
            key = str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if self._waiters:
                self._cond.notify_all()
        if self._mirror is not None:
            self._mirror.put(rec)

    def count_start(self, task_id):
        with self._cond:
            self.starts += 1
            self.starts_by_task[task_id] = self.starts_by_task.get(task_id, 0) + 1

    def _write_mirror(self, path):
        with open(path, "a", encoding="utf-8", buffering=1) as f:
            while True:
                f.write(json.dumps(self._mirror.get().to_json()) + "\n")

    # ---- readers (control API) -------------------------------------------

    def stats(self):
        with self._cond:
            return {"calls": self.calls, "starts": self.starts, "by_route": dict(self.by_route),
                    "by_status": dict(self.by_status), "starts_by_task": dict(self.starts_by_task)}

    def clear(self):
        with self._cond:
            self._ring.clear()
            self._reset_counters()

    def query(self, match):
        with self._cond:
            return [r.to_json() for r in self._ring if match(r)]

    def wait(self, match, count, timeout_s):
        """Block until `count` finished records match. -> (satisfied, records)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._waiters += 1
            try:
                while True:
                    found = [r for r in self._ring if r.done and match(r)]
                    remaining = deadline - time.monotonic()
                    if len(found) >= count or remaining <= 0:
                        return len(found) >= count, [r.to_json() for r in found]
                    self._cond.wait(remaining)
            finally:
                self._waiters -= 1


def matcher(since=0, route=None, path_re=None, method=None):
    """Predicate for the /_sim/calls filters (path_re is a compiled regex or None)."""
    method = method.upper() if method else None

    def match(r):
        return (r.seq > since and (route is None or r.route == route)
                and (method is None or r.method == method)
                and (path_re is None or path_re.search(r.path()) is not None))
    return match
