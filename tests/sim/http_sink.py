"""A small HTTP sink for Butler's outbound calls (Slack, Teams, webhooks).

    from http_sink import HttpSink

    with HttpSink() as sink:
        url = sink.url + "/services/T000/B000/XXXX"   # give this to Butler
        sink.fail(429, times=2, retry_after=1)          # the next 2 requests get 429
        sink.fail(500, times=1)                         # then one 500 (queued after)
        requests = sink.wait_for(count=1, timeout=10)   # poll with a deadline
        requests[0]["json"]                              # decoded JSON body (or None)

Every request (any method) is recorded as a dict: method, path, query, headers
(lower-case names), body (bytes), json (decoded body or None), status (what
the sink answered), t (time.monotonic()). Planned failures are consumed in
order; when none is left the sink answers `default_status` (200, body "ok",
like Slack's incoming webhooks).

Standard library only.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _handle(self):
        sink = self.server.sink
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        try:
            decoded = json.loads(body) if body else None
        except ValueError:
            decoded = None
        path, _, query = self.path.partition("?")
        status, headers, answer = sink._next_answer()
        record = {
            "method": self.command,
            "path": path,
            "query": query,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "json": decoded,
            "status": status,
            "t": time.monotonic(),
        }
        sink._record(record)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def _read_chunked(self):
        out = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return out
            out += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class HttpSink:
    """A ThreadingHTTPServer on a free loopback port recording every request."""

    def __init__(self, host="127.0.0.1", default_status=200):
        self.default_status = default_status
        self._lock = threading.Condition()
        self._requests = []
        self._plan = []  # [status, headers, body, remaining]
        self._server = ThreadingHTTPServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self._server.sink = self
        self.host, self.port = self._server.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # ---- control -----------------------------------------------------------

    def fail(self, status, times=1, retry_after=None, body=b"error"):
        """Answer the next `times` requests (after earlier planned failures) with `status`."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        with self._lock:
            self._plan.append([status, headers, body, times])

    def reset(self):
        """Forget recorded requests and planned failures."""
        with self._lock:
            self._requests.clear()
            self._plan.clear()

    # ---- inspection --------------------------------------------------------

    @property
    def requests(self):
        with self._lock:
            return list(self._requests)

    def wait_for(self, count=1, timeout=10.0, predicate=None):
        """Wait until `count` recorded requests satisfy predicate (default: any); return them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [r for r in self._requests if predicate is None or predicate(r)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"http sink: {len(found)} of {count} request(s) after {timeout}s; "
                        f"recorded: {[(r['method'], r['path'], r['status']) for r in self._requests]}")
                self._lock.wait(remaining)

    # ---- internals ---------------------------------------------------------

    def _next_answer(self):
        with self._lock:
            while self._plan:
                step = self._plan[0]
                if step[3] <= 0:
                    self._plan.pop(0)
                    continue
                step[3] -= 1
                return step[0], step[1], step[2]
        return self.default_status, {}, b"ok"

    def _record(self, record):
        with self._lock:
            self._requests.append(record)
            self._lock.notify_all()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
