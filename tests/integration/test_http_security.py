"""The HTTP surface against a hostile browser and a hostile network (issue 24),
and the JSON Butler builds from caller-chosen ids (issue 23's debt): the real
butler binary and a real Mosquitto on loopback.

Requests are made with the standard library (http.client, socket) so every
header (Host, Origin, Content-Type) is exactly what the test says. Nothing here
asserts a duration: waits are bounded and only outcomes are checked.
"""
import http.client
import json
import os
import socket
import threading
import uuid

import pytest

from conftest import TASK_SALES, Butler, Client, wait_until


def call(port, method, path, body=None, headers=None, content_type="application/json"):
    """One request on a fresh connection. `headers` replaces nothing unless it names
    the header (a "Host" given here is sent instead of http.client's own)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    data = None
    all_headers = {}
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        if isinstance(data, str):
            data = data.encode()
        if content_type:
            all_headers["Content-Type"] = content_type
    all_headers.update(headers or {})
    connection.request(method, path, body=data, headers=all_headers)
    response = connection.getresponse()
    raw = response.read()
    connection.close()
    parsed = None
    if raw and "json" in (response.getheader("Content-Type") or ""):
        parsed = json.loads(raw)
    return response.status, parsed, raw, response


def make_butler(workdir, broker, name="b", http_yaml=(), extra_yaml="", **kwargs):
    directory = os.path.join(workdir, name)
    os.makedirs(directory, exist_ok=True)
    return Butler(directory, broker, http_yaml=list(http_yaml), extra_yaml=extra_yaml, **kwargs)


@pytest.fixture
def butler(workdir, broker):
    b = make_butler(workdir, broker).start()
    yield b
    assert b.stop() == 0, b.log()[-3000:]


# =============================================================================
# Issue 23 debt: answers built with cJSON, caller-chosen ids restricted
# =============================================================================

def test_query_request_id_cannot_inject_keys(butler, broker):
    """A '"' in ?requestId= used to be pasted into the 202 answer (adding keys);
    now the id is refused, and an accepted one comes back in well-formed JSON."""
    port = butler.http_port
    injected = '"%2C"status"%3A"done'  # ","status":"done
    status, body, raw, _ = call(port, "PUT",
                                f"/v4/reloadtask/{TASK_SALES}/start?async=true&requestId=a{injected}")
    assert status == 400 and "requestId" in body["message"], raw
    for bad in ("a%20b", "a%22b", "a%7Bb", "x" * 65):
        status, body, raw, _ = call(port, "PUT",
                                    f"/v4/reloadtask/{TASK_SALES}/start?async=true&requestId={bad}")
        assert status == 400, (bad, raw)
    status, body, raw, _ = call(port, "PUT",
                                f"/v4/reloadtask/{TASK_SALES}/start?async=true&requestId=job:1.a_b-c")
    assert status == 202 and body == {"requestId": "job:1.a_b-c"}, raw
    # The file endpoints take the same ids.
    status, body, raw, _ = call(port, "POST", "/v4/createdir?requestId=a%22b", {"directory": "/x"})
    assert status == 400 and "requestId" in body["message"], raw


def schedule_record(client, butler):
    """A schedule record as Butler stores it (created over HTTP, read back from the
    broker), firing every second."""
    status, created, raw, _ = call(butler.http_port, "POST", "/v4/schedules", {
        "name": "every second", "cronSchedule": "* * * * * *", "timezone": "UTC",
        "qlikSenseTaskId": TASK_SALES, "startupState": "stopped", "tags": []})
    assert status == 201, raw
    topic = f"butler/schedules/{created['id']}"
    record = client.wait_for(lambda m: m["topic"] == topic and m["payload"], what="record")[0]
    return created["id"], json.loads(record["payload"])


def test_schedule_ids_are_restricted(workdir, broker):
    """A schedule id over 44 characters made every firing's requestId too long
    (each firing 'invalid'); such records, and ids with characters that need
    escaping, are refused and counted. A 44-character id fires normally."""
    client = Client(broker)
    client.subscribe("butler/#")
    butler = make_butler(workdir, broker).start()
    try:
        sid, record = schedule_record(client, butler)
        record["lastKnownState"] = "started"
        record["startupState"] = "started"
        long_id = "L" * 45
        quoted_id = 'q"uote'
        good_id = "G" * 44
        for bad in (long_id, quoted_id):
            client.publish(f"butler/schedules/{bad}", json.dumps(dict(record, id=bad)), retain=True)
        client.publish(f"butler/schedules/{good_id}", json.dumps(dict(record, id=good_id)),
                       retain=True)
        wait_until(lambda: any(s["id"] == good_id for s in call(butler.http_port, "GET",
                                                                "/v4/schedules")[1]),
                   10, message="the 44-character schedule to be held")
        held = {s["id"] for s in call(butler.http_port, "GET", "/v4/schedules")[1]}
        assert long_id not in held and quoted_id not in held, held
        assert "ignoring schedule record butler/schedules/" + long_id in butler.log()
        # The good one fires a valid task start (its requestId fits).
        starts = client.wait_for(
            lambda m: m["topic"] == "butler/task/start"
            and json.loads(m["payload"]).get("requestId", "").startswith(f"schedule-{good_id}-"),
            timeout=10, what="a firing of the 44-character schedule")
        start = json.loads(starts[0]["payload"])
        assert set(start) == {"taskId", "requestId"} and start["taskId"] == TASK_SALES
        assert len(start["requestId"]) <= 64
        for bad in (long_id, quoted_id):
            assert not [m for m in client.messages if m["topic"] == "butler/task/start"
                        and bad in m["payload"].decode()], bad
        for topic_id in (long_id, quoted_id, good_id, sid):
            client.publish(f"butler/schedules/{topic_id}", b"", retain=True)
    finally:
        assert butler.stop() == 0, butler.log()[-3000:]
        client.close()


# =============================================================================
# Configuration refused before anything listens
# =============================================================================

def check_config(tmp_path, text, env=None):
    import subprocess
    from conftest import BUTLER_BINARY
    path = tmp_path / "butler.yaml"
    path.write_text(text)
    return subprocess.run([BUTLER_BINARY, "--check-config", str(path)], capture_output=True,
                          text=True, timeout=30, env=dict(os.environ, **(env or {})))


def test_client_certificates_need_every_listener_tls(tmp_path):
    """http.tls.ca_file on a plain listener was accepted and logged as "client
    certificates required" while none were asked for."""
    tls = "  tls: {cert_file: /c.pem, key_file: /k.pem, ca_file: /ca.pem}\n"
    mixed = check_config(tmp_path, "http:\n  listen: 127.0.0.1:8080,127.0.0.1:8443s\n" + tls)
    assert mixed.returncode == 2 and "http.tls.ca_file" in mixed.stderr, mixed.stderr
    only_tls = check_config(tmp_path, "http:\n  listen: 127.0.0.1:8443s\n" + tls)
    assert only_tls.returncode == 0, only_tls.stderr


def test_long_waits_max_must_leave_threads(tmp_path):
    result = check_config(tmp_path, "http:\n  threads: 4\n  long_waits_max: 4\n")
    assert result.returncode == 2 and "http.long_waits_max" in result.stderr, result.stderr
    assert check_config(tmp_path, "http:\n  threads: 4\n  long_waits_max: 3\n").returncode == 0


# =============================================================================
# A hostile browser: CORS preflights, Origin, Host, Content-Type, HEAD
# =============================================================================

EVIL = "http://evil.example"


@pytest.fixture
def guarded(workdir, broker):
    b = make_butler(workdir, broker, http_yaml=[
        'allowed_origins: ["https://status.example.com"]',
        'allowed_hosts: ["butler.proxy.example"]']).start()
    yield b
    assert b.stop() == 0, b.log()[-3000:]


def test_preflights_reach_butler_and_are_refused(guarded):
    """CivetWeb answered preflights itself: 200, Access-Control-Allow-Origin: *,
    every method and header allowed."""
    headers = {"Origin": EVIL, "Access-Control-Request-Method": "PUT",
               "Access-Control-Request-Headers": "content-type"}
    status, body, raw, response = call(guarded.http_port, "OPTIONS", "/v4/mqttpublishmessage",
                                       headers=headers)
    assert status == 403, raw
    assert response.getheader("Access-Control-Allow-Origin") is None
    assert response.getheader("Access-Control-Allow-Methods") is None
    # A listed origin gets a real answer, for itself only.
    listed = dict(headers, Origin="https://status.example.com")
    status, body, raw, response = call(guarded.http_port, "OPTIONS", "/v4/mqttpublishmessage",
                                       headers=listed)
    assert status == 204, raw
    assert response.getheader("Access-Control-Allow-Origin") == "https://status.example.com"
    assert "PUT" in response.getheader("Access-Control-Allow-Methods")


def test_foreign_origin_is_refused(guarded, broker):
    client = Client(broker)
    client.subscribe("butler/#")
    try:
        port = guarded.http_port
        for method, path, body in (("GET", "/v4/butlerping", None),
                                   ("PUT", "/v4/schedules/startall", None),
                                   ("POST", "/v4/schedules", {"name": "x"}),
                                   ("PUT", "/v4/mqttpublishmessage",
                                    {"topic": "butler/file/mkdir", "message": "{}"})):
            status, answer, raw, response = call(port, method, path, body,
                                                 headers={"Origin": EVIL})
            assert status == 403 and "Origin" in answer["message"], (path, raw)
            assert response.getheader("Access-Control-Allow-Origin") is None
        assert not [m for m in client.messages if m["topic"] == "butler/file/mkdir"]
        # Butler's own origin (a same-origin page) and a listed one are served;
        # the listed one is told it may read the answer.
        status, _, raw, _ = call(port, "GET", "/v4/butlerping",
                                 headers={"Origin": f"http://127.0.0.1:{port}"})
        assert status == 200, raw
        status, _, raw, response = call(port, "GET", "/v4/butlerping",
                                        headers={"Origin": "https://status.example.com"})
        assert status == 200, raw
        assert response.getheader("Access-Control-Allow-Origin") == "https://status.example.com"
        # No Origin at all: curl, load scripts, the Qlik REST connector.
        assert call(port, "GET", "/v4/butlerping")[0] == 200
        assert 'refused_total{reason="origin"}' in call(port, "GET", "/metrics")[2].decode()
    finally:
        client.close()


def test_host_must_name_this_machine(guarded):
    """DNS rebinding: a page on evil.example whose name now points at Butler sends
    Host: evil.example (and its own origin, which then looks same-origin)."""
    port = guarded.http_port
    status, answer, raw, _ = call(port, "GET", "/v4/butlerping",
                                  headers={"Host": f"evil.example:{port}",
                                           "Origin": f"http://evil.example:{port}"})
    assert status == 421, raw
    assert call(port, "GET", "/health", headers={"Host": "evil.example"})[0] == 421
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}",
                 "butler.proxy.example", socket.gethostname()):
        status, _, raw, _ = call(port, "GET", "/v4/butlerping", headers={"Host": host})
        assert status == 200, (host, raw)


def test_a_body_needs_a_json_content_type(guarded):
    """A browser's "simple" POST (no preflight) has no Content-Type or text/plain:
    a body without Content-Type was taken as JSON."""
    port = guarded.http_port
    body = {"name": "x", "cronSchedule": "0 0 * * *", "timezone": "UTC",
            "qlikSenseTaskId": TASK_SALES, "startupState": "stopped"}
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        status, answer, raw, _ = call(port, "POST", "/v4/schedules", body,
                                      content_type=content_type)
        assert status == 415, (content_type, raw)
        status, answer, raw, _ = call(port, "PUT", "/v4/mqttpublishmessage",
                                      {"topic": "x/y", "message": "m"}, content_type=content_type)
        assert status == 415, (content_type, raw)
    assert call(port, "GET", "/v4/schedules")[1] == []
    # No body needs no Content-Type.
    status, answer, raw, _ = call(port, "PUT", "/v4/reloadtask/-/start")
    assert status == 200, raw
    assert call(port, "POST", "/v4/schedules", body)[0] == 201


def test_head_answers_have_no_body(butler):
    """A HEAD answer with a body desynchronises a kept-alive connection: the body
    is read as the start of the next answer."""
    with socket.create_connection(("127.0.0.1", butler.http_port), timeout=10) as s:
        s.sendall(b"HEAD /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                  b"GET /v4/butlerping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200"), data  # HEAD is served as GET, headers only
    assert b"Content-Length: 0" not in first, data
    assert rest.startswith(b"HTTP/1.1 200"), data


# =============================================================================
# SMTP credentials never in clear text
# =============================================================================

class AuthOfferingSmtp:
    """A line-based SMTP server that offers AUTH PLAIN/LOGIN but no STARTTLS, and
    records every byte it receives (the password must never be among them)."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        self.received = b""
        self.sessions = 0
        self.delivered = 0
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(10)
                self.session(connection)

    def session(self, connection):
        reader = connection.makefile("rb")
        connection.sendall(b"220 sink ready\r\n")
        in_data = False
        login_lines = 0
        try:
            for line in reader:
                with self.lock:
                    self.received += line
                if in_data:
                    if line in (b".\r\n", b".\n"):
                        in_data = False
                        with self.lock:
                            self.delivered += 1
                        connection.sendall(b"250 queued\r\n")
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    with self.lock:
                        self.sessions += 1
                    connection.sendall(b"250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
                elif verb == b"AUTH":
                    if len(line.split()) >= 3:  # with the initial response
                        connection.sendall(b"235 accepted\r\n")
                    elif b"LOGIN" in line.upper():
                        connection.sendall(b"334 VXNlcm5hbWU6\r\n")
                    else:
                        login_lines = 1  # PLAIN: its one response comes next
                        connection.sendall(b"334 \r\n")
                elif verb == b"DATA":
                    in_data = True
                    connection.sendall(b"354 go on\r\n")
                elif verb == b"QUIT":
                    connection.sendall(b"221 bye\r\n")
                    return
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    connection.sendall(b"250 ok\r\n")
                else:  # AUTH LOGIN's user name, then its password
                    login_lines += 1
                    connection.sendall(b"334 UGFzc3dvcmQ6\r\n" if login_lines == 1
                                       else b"235 accepted\r\n")
        except OSError:
            return

    def close(self):
        self.server.close()


def mail_butler(workdir, broker, smtp, extra=""):
    routes = f"""
smtp:
  url: "smtp://127.0.0.1:{smtp.port}"
  from: "butler@example.com"
  username: "mailer"
  password: "Pa55-w0rd-in-clear"
{extra}
routes:
  - name: mail
    match: test/mail/#
    to: email
    recipients: [ops@example.com]
    subject: "hello"
"""
    return make_butler(workdir, broker, name="mail", extra_yaml=routes).start()


def test_smtp_password_needs_tls(workdir, broker):
    """CURLUSESSL_TRY sent AUTH with the password to a server offering no STARTTLS."""
    import base64
    smtp = AuthOfferingSmtp()
    butler = mail_butler(workdir, broker, smtp)
    client = Client(broker)
    try:
        client.publish("test/mail/1", json.dumps({"taskName": "x"}))
        wait_until(lambda: "credentials are sent only over TLS" in butler.log(), 20,
                   message="the refusal to authenticate in clear text")
        with smtp.lock:
            received = smtp.received
        assert smtp.sessions >= 1
        assert b"AUTH" not in received.upper(), received
        secret = b"Pa55-w0rd-in-clear"
        for form in (secret, base64.b64encode(b"\0mailer\0" + secret), base64.b64encode(secret)):
            assert form not in received
        assert smtp.delivered == 0
    finally:
        client.close()
        assert butler.stop() == 0, butler.log()[-3000:]
        smtp.close()


def test_smtp_plaintext_opt_out_is_loopback_only(workdir, broker, tmp_path):
    smtp = AuthOfferingSmtp()
    butler = mail_butler(workdir, broker, smtp, extra="  plaintext_auth_loopback: true")
    client = Client(broker)
    try:
        client.publish("test/mail/1", json.dumps({"taskName": "x"}))
        wait_until(lambda: smtp.delivered >= 1, 20,
                   message=f"the mail over the loopback relay; got {smtp.received!r} {[l for l in butler.log().splitlines() if 'mosquitto' not in l and 'subscribed' not in l][-12:]}")
        assert b"AUTH" in smtp.received.upper()
    finally:
        client.close()
        assert butler.stop() == 0, butler.log()[-3000:]
        smtp.close()
    refused = check_config(tmp_path, 'smtp:\n  url: "smtp://mail.example.com:25"\n'
                           '  plaintext_auth_loopback: true\n')
    assert refused.returncode == 2 and "plaintext_auth_loopback" in refused.stderr
    allowed = check_config(tmp_path, 'smtp:\n  url: "smtp://localhost:25"\n'
                           '  plaintext_auth_loopback: true\n')
    assert allowed.returncode == 0, allowed.stderr


# =============================================================================
# Idle connections and long waits cannot take every thread
# =============================================================================

def half_open(port, count):
    """`count` connections that each send half a request and then nothing."""
    sockets = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /v4/butlerping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        sockets.append(s)
    return sockets


def test_health_answers_while_half_open_connections_hold_the_api(workdir, broker):
    """34 half-open connections used to stop the API and /health (32 threads, 30 s
    timeout). /health has a listener and threads of its own, and idle connections
    are closed after http.header_timeout_ms."""
    from conftest import free_port
    health_port = free_port()
    butler = make_butler(workdir, broker, http_yaml=[
        "threads: 4", "header_timeout_ms: 1500", f"health_listen: 127.0.0.1:{health_port}"]).start()
    # Four times the threads: enough to hold every API thread and a queue behind
    # them (each is closed after 1.5 s, so more only lengthens the test).
    sockets = half_open(butler.http_port, 16)
    try:
        for _ in range(3):
            status, body, raw, _ = call(health_port, "GET", "/health")
            assert status == 200 and body["status"] == "ok", raw
        # The health listener serves nothing else.
        assert call(health_port, "GET", "/v4/butlerping")[0] == 404
        # The idle connections are closed by Butler, not by the test.
        # (recv returns Butler's closing answer or b""; a timeout means still open).
        still_open = 0
        for s in sockets:
            s.settimeout(30)
            try:
                s.recv(4096)
            except socket.timeout:
                still_open += 1
            except OSError:
                pass  # reset by Butler: closed too
        assert still_open == 0
        # The API answers again once they are gone.
        status, _, raw, _ = call(butler.http_port, "GET", "/v4/butlerping")
        assert status == 200, raw
    finally:
        for s in sockets:
            s.close()
        assert butler.stop() == 0, butler.log()[-3000:]


def test_long_waits_are_bounded_and_counted(workdir, broker, qrs):
    """?wait=true reloads could hold every thread for up to an hour: at most
    http.long_waits_max wait at once (a quarter of 4 threads: 1); more get 503
    before anything is published."""
    from test_app import APP_SALES, engine_yaml, EngineSim  # noqa: F401
    import tempfile
    import shutil
    directory = tempfile.mkdtemp(prefix="butler-engine-")
    engine = EngineSim(qrs.pki_dir, directory)
    try:
        engine.control("POST", "/fault", {"reload_ms": 6000})
        butler = Butler(os.path.join(workdir), broker, qrs=qrs,
                        extra_yaml=engine_yaml(engine), http_yaml=["threads: 4"]).start()
        observer = Client(broker)
        observer.subscribe("butler/app/reload")
        try:
            first = {}

            def hold():
                first["answer"] = call(butler.http_port, "PUT",
                                       f"/v4/app/{APP_SALES}/reload?wait=true")

            holder = threading.Thread(target=hold)
            holder.start()
            observer.wait_for(lambda m: m["topic"] == "butler/app/reload", 10,
                              what="the first reload to be published")
            status, body, raw, response = call(butler.http_port, "PUT",
                                               f"/v4/app/{APP_SALES}/reload?wait=true")
            assert status == 503 and "long-waiting" in body["message"], raw
            assert response.getheader("Retry-After")
            # Refused before publishing: one reload only reached the broker.
            assert len([m for m in observer.messages if m["topic"] == "butler/app/reload"]) == 1
            # Short requests still run meanwhile, and the wait in progress is shown.
            assert call(butler.http_port, "GET", "/v4/butlerping")[0] == 200
            assert "butler_http_long_waits 1" in call(butler.http_port, "GET", "/metrics")[2].decode()
            holder.join(60)
            assert first["answer"][0] == 201, first["answer"][2]
            metrics = call(butler.http_port, "GET", "/metrics")[2].decode()
            assert "butler_http_long_wait_refused_total 1" in metrics
            # The slot is free again.
            assert call(butler.http_port, "PUT", f"/v4/app/{APP_SALES}/reload?wait=true")[0] == 201
        finally:
            observer.close()
            assert butler.stop() == 0, butler.log()[-3000:]
    finally:
        engine.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_check_config_masks_url_userinfo_and_queries(tmp_path):
    """--check-config printed smtp://user:pass@... and qrs.url's query as given."""
    result = check_config(tmp_path, 'smtp:\n  url: "smtp://mailer:Pa55word@mail.example.com:587"\n'
                          'qrs:\n  url: "https://sense.example.com:4242/?xrfkey=QuerySecret"\n')
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "Pa55word" not in output and "QuerySecret" not in output, output
    assert "smtp://***@mail.example.com:587" in output
    assert "https://sense.example.com:4242/?***" in output


def test_mqtt_publish_cannot_get_around_the_endpoint_list(workdir, broker):
    """PUT /v4/mqttpublishmessage reached every command topic, so a caller allowed
    only to publish could create directories or start tasks."""
    butler = make_butler(workdir, broker, http_yaml=[
        "endpoints: [mqttPublishMessage, senseStartTask]"]).start()
    observer = Client(broker)
    observer.subscribe("#")
    try:
        port = butler.http_port
        for topic in ("butler/file/mkdir", "butler/file/node-1/copy", "butler/schedules/x",
                      "butler/kv/ns", "butler/app/reload", "butler/events/task/failed/x",
                      "butler/task/result"):
            status, body, raw, _ = call(port, "PUT", "/v4/mqttpublishmessage",
                                        {"topic": topic, "message": "{}"})
            assert status == 403 and "http.endpoints" in body["message"], (topic, raw)
        for topic in ("butler/task/start", "elsewhere/topic", "butler/custom/level"):
            status, body, raw, _ = call(port, "PUT", "/v4/mqttpublishmessage",
                                        {"topic": topic, "message": "{\"taskId\": \"-\"}"})
            assert status == 201, (topic, raw)
        observer.wait_for(lambda m: m["topic"] == "elsewhere/topic", 10, what="the allowed one")
        refused = {"butler/file/mkdir", "butler/file/node-1/copy", "butler/schedules/x",
                   "butler/kv/ns", "butler/app/reload", "butler/events/task/failed/x"}
        assert not [m for m in observer.messages if m["topic"] in refused]
    finally:
        observer.close()
        assert butler.stop() == 0, butler.log()[-3000:]


def test_response_topic_under_the_root_must_be_an_answer_topic(workdir, broker):
    """A v5 Response Topic under <root>/ was used as given: a client allowed only to
    start tasks could make Butler publish into an event topic a webhook route reads."""
    butler = make_butler(workdir, broker).start()
    client = Client(broker)
    client.subscribe("#")
    try:
        client.publish("butler/task/start", json.dumps({"taskId": TASK_SALES, "requestId": "rt-1"}),
                       response_topic="butler/events/task/failed/injected", correlation=b"c1")
        client.publish("butler/task/start", json.dumps({"taskId": TASK_SALES, "requestId": "rt-2"}),
                       response_topic="replies/mine", correlation=b"c2")
        client.wait_result("rt-1")
        client.wait_result("rt-2")
        client.wait_for(lambda m: m["topic"] == "replies/mine", 10, what="the allowed reply")
        wait_until(lambda: "not answering on Response Topic" in butler.log(), 10,
                   message="the refusal in the log")
        assert not [m for m in client.messages
                    if m["topic"] == "butler/events/task/failed/injected"]
    finally:
        client.close()
        assert butler.stop() == 0, butler.log()[-3000:]


def test_udp_beyond_loopback_without_allowed_sources_warns(workdir, broker):
    from conftest import free_udp_port
    port = free_udp_port()
    exposed = make_butler(workdir, broker, name="exposed", udp=True,
                          env={"BUTLER_UDP_LISTEN": f"0.0.0.0:{port}"}).start()
    try:
        assert f"listening on 0.0.0.0:{port}" in exposed.log()
        assert "udp.allowed_sources is empty" in exposed.log()
    finally:
        assert exposed.stop() == 0, exposed.log()[-3000:]
    local = make_butler(workdir, broker, name="local", udp=True).start()
    try:
        assert "listening on 127.0.0.1" in local.log()
        assert "udp.allowed_sources is empty" not in local.log()
    finally:
        assert local.stop() == 0, local.log()[-3000:]
