"""A Qlik Cloud tenant simulator, written from sense-interfaces.md section 7.3 (Qlik's
documentation on qlik.dev): the tenant's REST endpoints Butler reads, its OAuth token
endpoint, tier-1 rate limiting on demand, and a sender that signs and posts webhooks in each
of the three envelopes.

    from qcs_sim import QcsSim, webhook, sign, post_webhook

    with QcsSim(tenant_id="t-1", api_key="key-1") as sim:
        sim.add_app("app-1", "Sales", owner="user-1", tags=["butler-alert"])
        sim.add_user("user-1", "Ann Analyst", email="ann@example.com")
        sim.add_reload("0123456789abcdef01234567", "app-1", log="a\\r\\nb\\r\\n", failed=True)
        sim.rate_limit(times=1, retry_after=2)   # the next REST call gets 429 Retry-After: 2
        sim.url                                   # http://127.0.0.1:<port>
        sim.calls                                 # [{method, path, query, auth, t, status}]

    QcsSim(tls=True, pki_dir=DIR) speaks HTTPS, as a real tenant does: the server certificate
    (SAN IP:127.0.0.1) and its CA come from tests/pki/make_pki.sh, the PKI the QRS simulator
    uses (DIR/root.pem is the CA to trust; DIR/rogue_ca.pem is a CA that did not sign it).
    Without pki_dir a PKI is made in a temporary directory removed on exit. sim.url is then
    https://127.0.0.1:<port>, sim.ca_file the CA, and sim.tls_failures lists the handshakes
    that failed (the client refused the certificate, or spoke plain HTTP).

REST (every call needs `Authorization: Bearer <api_key or an issued token>`, else 401):
  GET /api/v1/apps/{appId}                      {"attributes": {id, name, ownerId, spaceId, ...}}
  GET /api/v1/items?resourceType=app&resourceId= {"data": [{"meta": {"tags": [{id, name}]}}]}
  GET /api/v1/users/{id}                        {id, name, email (absent when none), status}
  GET /api/v1/reloads/{id}                      {id, appId, status, errorCode, errorMessage,
                                                 log, startTime, endTime, type}
  GET /api/v1/apps/{appId}/reloads/logs/{id}    the script log, text/plain, CRLF line ends
  POST /oauth/token  JSON {client_id, client_secret, grant_type: client_credentials}
                     -> {access_token, token_type: "bearer", expires_in}

Standard library only (and openssl, through make_pki.sh, for tls=True).
"""

import hashlib
import hmac
import json
import os
import shutil
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

def make_pki(directory):
    """The QRS simulator's test PKI (tests/pki/make_pki.sh through simctl), made once per
    directory; returns the directory."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import simctl  # pylint: disable=import-outside-toplevel
    return simctl.make_pki(directory)


APP_RELOAD_FINISHED = "com.qlik.v1.app.reload.finished"
RELOAD_FINISHED = "com.qlik.v1.reload.finished"


def sign(secret, raw):
    """Qlik-Signature: lowercase hex HMAC-SHA256 of the raw body bytes, no prefix."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def webhook(envelope, tenant_id, app_id, reload_id, status="error", event_id=None,
            event_type=APP_RELOAD_FINISHED, name="Sales", owner_id="user-1", space_id="space-1",
            errors=None, duration_ms=65000):
    """One delivery body (a dict) in `envelope`: "legacy", "cloudevents" or "hybrid".
    event_type APP_RELOAD_FINISHED takes status "ok"/"error"; RELOAD_FINISHED takes
    "SUCCEEDED"/"FAILED"/"CANCELED"/"EXCEEDED_LIMIT" ("error" and "ok" are mapped)."""
    event_id = event_id or str(uuid.uuid4())
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if event_type == RELOAD_FINISHED:
        qlik_status = {"error": "FAILED", "ok": "SUCCEEDED"}.get(status, status)
        data = {"id": reload_id, "appId": app_id, "userId": owner_id,
                "succeeded": qlik_status == "SUCCEEDED", "status": qlik_status,
                "errorCode": "" if qlik_status == "SUCCEEDED" else "EngineReloadFailed",
                "errorMessage": "" if qlik_status == "SUCCEEDED" else "The reload failed",
                "startTime": now, "durationSeconds": duration_ms // 1000, "type": "chronos"}
    else:
        data = {"status": status, "reloadId": reload_id, "name": name, "duration": duration_ms,
                "endTime": now, "isPartialReload": False, "endedWithMemoryConstraint": False,
                "peakMemoryBytes": 1048576, "usage": {}, "size": {"memory": 2048},
                "errors": errors if errors is not None else (
                    [] if status == "ok" else ["Field not found: <Amount>"]),
                "warnings": []}
    legacy = {"cloudEventsVersion": "0.1", "eventId": event_id, "eventTime": now,
              "eventType": event_type, "source": "com.qlik/engine", "contentType":
              "application/json",
              "extensions": {"tenantId": tenant_id, "userId": owner_id, "ownerId": owner_id,
                             "spaceId": space_id, "topLevelResourceId": app_id},
              "data": data}
    cloudevents = {"specversion": "1.0", "id": event_id, "time": now, "type": event_type,
                   "source": "com.qlik/engine", "datacontenttype": "application/json",
                   "tenantid": tenant_id, "userid": owner_id, "ownerid": owner_id,
                   "spaceid": space_id, "toplevelresourceid": app_id, "data": data}
    if envelope == "legacy":
        return legacy
    if envelope == "cloudevents":
        return cloudevents
    if envelope == "hybrid":
        body = dict(legacy)
        body.update(cloudevents)
        return body
    raise ValueError(envelope)


def post_webhook(url, body, secret=None, signature=None, headers=None, timeout=10):
    """POST a delivery as Qlik does. body: a dict (JSON-encoded) or raw bytes. secret signs
    it; signature overrides the header. Returns (status, text)."""
    raw = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=raw, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "Qlik Webhook")
    if signature is None and secret is not None:
        signature = sign(secret, raw)
    if signature is not None:
        request.add_header("Qlik-Signature", signature)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body=b"", content_type="application/json", headers=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.server.sim._record_status(status)

    def do_GET(self):
        self.server.sim._handle(self)

    def do_POST(self):
        self.server.sim._handle(self)


class _Server(ThreadingHTTPServer):
    """The HTTP server, with TLS per connection when ssl_context is set. The handshake runs in
    the connection's own thread (not in accept), so a client that connects and says nothing
    holds up only itself; a failed handshake is recorded in sim.tls_failures, not printed."""
    daemon_threads = True
    ssl_context = None
    sim = None

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        request.settimeout(30)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            with self.sim.lock:
                self.sim.tls_failures.append(str(error))
            return None
        try:
            return super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request, client_address):
        pass  # a client that went away mid-answer: nothing to report


class QcsSim:
    def __init__(self, tenant_id="tenant-1", api_key="api-key-1", client_id=None,
                 client_secret=None, token_expires_in=21600, tls=False, pki_dir=None):
        self.tenant_id = tenant_id
        self.api_key = api_key
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_expires_in = token_expires_in
        self.apps, self.items, self.users, self.reloads, self.logs = {}, {}, {}, {}, {}
        self.tokens = {}  # access token -> monotonic expiry
        self.calls = []
        self.lock = threading.Lock()
        self._limited = []   # planned 429s: retry_after values
        self.delay_s = 0.0   # every REST answer waits this long (a slow tenant)
        self.tls_failures = []  # str(error) of each failed TLS handshake
        self._own_pki = None
        self.pki_dir = self.ca_file = None
        context = None
        if tls:
            if pki_dir is None:
                pki_dir = self._own_pki = tempfile.mkdtemp(prefix="qcs-sim-pki-")
            self.pki_dir = make_pki(pki_dir)
            self.ca_file = os.path.join(self.pki_dir, "root.pem")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(os.path.join(self.pki_dir, "server.pem"),
                                    os.path.join(self.pki_dir, "server_key.pem"))
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.ssl_context = context
        self.server.sim = self
        self.port = self.server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        if self._own_pki:
            shutil.rmtree(self._own_pki, ignore_errors=True)

    # ---- fixture
    def add_app(self, app_id, name, owner="user-1", space="space-1", tags=()):
        self.apps[app_id] = {"id": app_id, "name": name, "ownerId": owner, "spaceId": space,
                             "description": "", "createdDate": "2025-01-01T00:00:00Z"}
        self.items[app_id] = [{"id": f"tag-{i}", "name": tag} for i, tag in enumerate(tags)]

    def add_user(self, user_id, name, email=None):
        user = {"id": user_id, "name": name, "status": "active", "tenantId": self.tenant_id}
        if email is not None:
            user["email"] = email
        self.users[user_id] = user

    def add_reload(self, reload_id, app_id, log="", failed=True, start="2026-12-07T03:00:00Z",
                   end="2026-12-07T03:01:05Z"):
        self.reloads[reload_id] = {
            "id": reload_id, "appId": app_id, "tenantId": self.tenant_id,
            "status": "FAILED" if failed else "SUCCEEDED",
            "errorCode": "EngineReloadFailed" if failed else "",
            "errorMessage": "The reload failed" if failed else "",
            "log": "summary", "startTime": start, "endTime": end, "type": "chronos"}
        self.logs[(app_id, reload_id)] = log

    def rate_limit(self, times=1, retry_after=1):
        """The next `times` REST calls are answered 429 with Retry-After."""
        with self.lock:
            self._limited.extend([retry_after] * times)

    def calls_to(self, prefix):
        with self.lock:
            return [c for c in self.calls if c["path"].startswith(prefix)]

    # ---- serving
    def _record_status(self, status):
        with self.lock:
            if self.calls and "status" not in self.calls[-1]:
                self.calls[-1]["status"] = status

    def _authorized(self, auth):
        if not auth or not auth.startswith("Bearer "):
            return False
        token = auth[len("Bearer "):]
        if self.api_key and token == self.api_key:
            return True
        with self.lock:
            expiry = self.tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def _handle(self, h):
        parts = urlsplit(h.path)
        path, query = parts.path, parse_qs(parts.query)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self.lock:
            self.calls.append({"method": h.command, "path": path, "query": parts.query,
                               "auth": h.headers.get("Authorization"), "t": time.monotonic()})
        if self.delay_s:
            time.sleep(self.delay_s)
        if h.command == "POST" and path == "/oauth/token":
            return self._token(h, body)
        if not path.startswith("/api/v1/"):
            return h._send(404, {"errors": [{"title": "Not found", "code": "404"}]})
        with self.lock:
            retry_after = self._limited.pop(0) if self._limited else None
        if retry_after is not None:
            return h._send(429, {"errors": [{"title": "Too many requests", "code": "429"}]},
                           headers={"Retry-After": str(retry_after)})
        if not self._authorized(h.headers.get("Authorization")):
            return h._send(401, {"errors": [{"title": "Unauthorized", "code": "401"}]})
        segments = path[len("/api/v1/"):].split("/")
        if segments[0] == "apps" and len(segments) == 2 and segments[1] in self.apps:
            return h._send(200, {"attributes": self.apps[segments[1]]})
        if (segments[0] == "apps" and len(segments) == 5 and segments[2:4] == ["reloads", "logs"]
                and (segments[1], segments[4]) in self.logs):
            return h._send(200, self.logs[(segments[1], segments[4])],
                           content_type="text/plain; charset=utf-8")
        if segments == ["items"]:
            app_id = (query.get("resourceId") or [""])[0]
            if (query.get("resourceType") or [""])[0] != "app" or app_id not in self.items:
                return h._send(200, {"data": [], "links": {}})
            return h._send(200, {"data": [{"resourceId": app_id, "resourceType": "app",
                                           "name": self.apps[app_id]["name"],
                                           "meta": {"tags": self.items[app_id]}}],
                                 "links": {}})
        if segments[0] == "users" and len(segments) == 2 and segments[1] in self.users:
            return h._send(200, self.users[segments[1]])
        if segments[0] == "reloads" and len(segments) == 2 and segments[1] in self.reloads:
            return h._send(200, self.reloads[segments[1]])
        return h._send(404, {"errors": [{"title": "Not found", "code": "404"}]})

    def _token(self, h, body):
        try:
            request = json.loads(body)
        except ValueError:
            return h._send(400, {"error": "invalid_request"})
        if (request.get("grant_type") != "client_credentials" or not self.client_id
                or request.get("client_id") != self.client_id
                or request.get("client_secret") != self.client_secret):
            return h._send(401, {"error": "invalid_client"})
        token = uuid.uuid4().hex
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_expires_in
        return h._send(200, {"access_token": token, "token_type": "bearer",
                             "expires_in": self.token_expires_in})
