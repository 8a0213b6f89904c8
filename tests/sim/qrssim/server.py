"""The QRS listener: HTTPS with client certificates, HTTP/1.1 keep-alive, one
daemon thread per connection (the ThreadingHTTPServer model).

It is a small hand-written HTTP/1.1 loop rather than http.server because the
benchmark measures against this simulator's ceiling: http.server parses headers
through the email package and writes responses in several pieces, which costs
more than the rest of a request. Here a request is parsed with plain readline()
calls and each answer goes out in one write with an exact Content-Length, so
clients keep reusing the connection. The TLS handshake runs once per
connection, in the connection's own thread so a slow client cannot stall accept().
"""

import socket
import ssl
import struct
import sys
import threading
import time
import traceback
from http import HTTPStatus

from .qrs_api import Request, text_response
from .recorder import KEPT_HEADERS, CallRecord
from .util import parse_query

HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 120.0  # like http.sys' idle connection timeout on a real QRS
MAX_LINE = 65536
MAX_HEAD = 128 * 1024
MAX_HEADERS = 100
MAX_BODY = 8 * 1024 * 1024
_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
_NO_BODY_STATUSES = (204, 304)
_RDN_SHORT = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
              "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST"}


class _ClientGone(Exception):
    """The request could not be read; the connection is closed without an answer."""


def make_tls_context(cert, key, ca, verify_mode):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = verify_mode
    return ctx


def _subject(cert):
    return ",".join(f"{_RDN_SHORT.get(k, k)}={v}" for rdn in cert.get("subject", ()) for k, v in rdn)


def _close(sock, how):
    """Close the connection: 'rst' aborts it (SO_LINGER 0), 'fin' is an orderly TCP close
    without a TLS close_notify, 'normal' just closes."""
    try:
        if how == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif how == "fin":
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class QrsServer:
    def __init__(self, sim, host, port):
        self.sim = sim
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=1024)
        self.port = self.sock.getsockname()[1]
        self._stopping = False

    def start(self):
        threading.Thread(target=self._accept_loop, name="qrs-accept", daemon=True).start()

    def close(self):
        self._stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.sock.close()

    def _accept_loop(self):
        while not self._stopping:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                if self._stopping:
                    return
                time.sleep(0.05)  # e.g. EMFILE: back off instead of spinning
                continue
            threading.Thread(target=self._connection, args=(conn, peer[:2]), daemon=True).start()

    # ---- one connection --------------------------------------------------

    def _connection(self, raw, peer):
        sim = self.sim
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rule = sim.faults.pick_tls()
        if rule is not None:
            self._record_tls_event(peer, "tls_abort", f"fault {rule.id}")
            _close(raw, "rst")
            return
        raw.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            tls = sim.tls_context().wrap_socket(raw, server_side=True)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            self._record_tls_event(peer, "tls_rejected", getattr(e, "reason", None) or str(e))
            raw.close()
            return
        cert = tls.getpeercert()
        verified, subject = bool(cert), _subject(cert) if cert else None
        tls.settimeout(IDLE_TIMEOUT_S)
        rfile = tls.makefile("rb", buffering=65536)
        how = "normal"
        try:
            how = self._serve(tls, rfile, peer, verified, subject)
        except (OSError, _ClientGone):
            pass  # client went away, idle timeout, or a TLS error mid-stream
        finally:
            rfile.close()  # the socket only really closes once its file object is closed
            _close(tls, how)

    def _record_tls_event(self, peer, event, error):
        rec = CallRecord(event, peer, False, None)
        rec.route = event
        rec.error = error
        self.sim.recorder.begin(rec)
        self.sim.recorder.finish(rec, None, closed=event)

    def _serve(self, tls, rfile, peer, verified, subject):
        """Answer requests until the client closes or a fault ends the connection.
        -> how to close the socket."""
        sim = self.sim
        while True:
            req, keep_alive = self._read_request(tls, rfile, peer, verified, subject)
            if req is None:
                return "normal"
            try:
                resp = sim.api.handle(req)
            except Exception:  # a simulator bug answers 500 rather than killing the connection
                traceback.print_exc(file=sys.stderr)
                resp = text_response(500, "Internal Server Error")
            how = self._send(tls, req, resp, keep_alive)
            if sim.log:
                rec = req.record
                print(f"{req.method} {req.target} -> {rec.status} {rec.closed} {rec.duration_ms}ms",
                      file=sys.stderr, flush=True)
            if how is not None:
                return how

    def _read_request(self, tls, rfile, peer, verified, subject):
        """-> (Request, keep_alive), or (None, False) when the client closed."""
        head = _read_head(rfile)
        if head is None:
            return None, False
        lines = head.splitlines()
        parts = lines[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or len(lines) > MAX_HEADERS + 1:
            tls.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            raise _ClientGone()
        method, target, version = (p.decode("latin-1") for p in parts)
        headers = {}
        for h in lines[1:]:
            name, sep, value = h.partition(b":")
            if not sep:
                raise _ClientGone()
            key, val = name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")
            headers[key] = f"{headers[key]}, {val}" if key in headers else val

        if headers.get("expect", "").lower() == "100-continue":
            tls.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = _read_chunked(rfile)
        else:
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                raise _ClientGone() from None
            if not 0 <= length <= MAX_BODY:
                raise _ClientGone()
            body = rfile.read(length) if length else b""
            if len(body) < length:
                raise _ClientGone()
        conn = headers.get("connection", "").lower()
        keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn

        rec = CallRecord("request", peer, verified, subject)
        rec.method, rec.raw_target, rec.body = method, target, body or None
        rec.headers = {k: headers[k] for k in KEPT_HEADERS if k in headers}
        self.sim.recorder.begin(rec)  # recorded before anything can reject it

        req = Request()
        req.method, req.target, req.headers, req.body, req.record = method, target, headers, body, rec
        req.tls_verified, req.user = verified, None
        # A '#' starts a fragment: whatever follows (an xrfkey, say) is not part of the query.
        # The path stays as sent: QRS paths hold no escapes, and fault rules and the
        # call log match the same text.
        req.path, _, raw_query = target.partition("#")[0].partition("?")
        req.query, req.missing_value = parse_query(raw_query)
        qlower = {}
        for name, values in req.query.items():
            qlower.setdefault(name.lower(), []).extend(values)
        req.qlower = qlower
        return req, keep_alive

    def _send(self, tls, req, resp, keep_alive):
        """Write the answer, carrying out transport faults. -> None to keep serving,
        else how to close the connection.

        The record is finished *before* the bytes go out, so by the time a client
        sees an answer, the call log and counters already include it."""
        rec, recorder = req.record, self.sim.recorder
        action = resp.transport
        if action is None:
            data = _head(resp, keep_alive) + resp.body
            recorder.finish(rec, resp.status, "normal", len(data))
            _send_all(tls, rec, data)
            return None if keep_alive else "normal"

        kind = action["type"]
        if kind == "hang":
            gate = self.sim.hang_gate
            recorder.finish(rec, None, "hang")
            gate.wait()  # released by POST /_sim/reset
            return "rst"
        if kind == "slow_body":
            head = _head(resp, keep_alive)
            recorder.finish(rec, resp.status, "normal", len(head) + len(resp.body))
            _send_all(tls, rec, head)
            step = action["chunk"]
            for i in range(0, len(resp.body), step):
                chunk = resp.body[i:i + step]
                time.sleep(len(chunk) / action["bytes_per_sec"])
                _send_all(tls, rec, chunk)
            return None if keep_alive else "normal"
        if kind == "truncate":  # Content-Length promises more than is sent
            data = _head(resp, keep_alive) + resp.body[: len(resp.body) // 2]
            recorder.finish(rec, resp.status, "fin", len(data))
            _send_all(tls, rec, data)
            return "fin"
        # drop
        when, how = action["when"], action["how"]
        data = b""
        if when == "after_headers":
            data = _head(resp, keep_alive)
        elif when == "mid_body":
            data = _head(resp, keep_alive) + resp.body[: len(resp.body) // 2]
        recorder.finish(rec, None if when == "before_response" else resp.status, how, len(data))
        if data:
            _send_all(tls, rec, data)
        return how


def _send_all(tls, rec, data):
    try:
        tls.sendall(data)
    except OSError:
        rec.closed = "client_gone"  # the record was finished optimistically
        raise


def _head(resp, keep_alive):
    status = resp.status
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    if resp.ctype:
        lines.append(b"Content-Type: %s\r\n" % resp.ctype.encode("latin-1"))
    if status not in _NO_BODY_STATUSES:
        lines.append(b"Content-Length: %d\r\n" % len(resp.body))
    for name, value in resp.headers:
        lines.append(f"{name}: {value}\r\n".encode("latin-1"))
    lines.append(b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    return b"".join(lines)


def _read_head(rfile):
    """The request line and headers, without the blank line that ends them; None
    when the client closed the connection between requests."""
    buf = rfile.peek(1)
    while buf[:2] == b"\r\n":  # tolerate stray CRLFs between requests
        rfile.read(2)
        buf = rfile.peek(1)
    if not buf:
        return None
    end = buf.find(b"\r\n\r\n")
    if end >= 0:  # the usual case: the whole head is already buffered
        head = rfile.read(end + 4)
        return head[:-4]
    # The head spans several reads (or uses bare LF line ends): collect it line by line.
    lines, total = [], 0
    while True:
        line = rfile.readline(MAX_LINE + 1)
        total += len(line)
        if not line or total > MAX_HEAD:
            raise _ClientGone()
        if line in (b"\r\n", b"\n"):
            if lines:
                return b"".join(lines)
            continue
        lines.append(line)


def _read_chunked(rfile):
    parts, total = [], 0
    while True:
        line = rfile.readline(MAX_LINE)
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise _ClientGone() from None
        if size == 0:
            while rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailers are ignored
            return b"".join(parts)
        total += size
        if total > MAX_BODY:
            raise _ClientGone()
        parts.append(rfile.read(size))
        rfile.readline(MAX_LINE)
