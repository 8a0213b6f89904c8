"""The HTTP API (contract section 4), end to end: the real butler binary, a real
Mosquitto, the QRS simulator and an HTTP sink standing in for Slack.

Every answer is checked against the project's own description of the API,
docs/api/openapi.json (a small validator for the subset of JSON Schema the file
uses): its status must be declared for that path and method, its body must match
the declared schema. Requests are made with the standard library only
(http.client, ssl, socket).

Butler instances:
- `api`: the shared instance for most tests (QRS, Slack webhook -> sink,
  max_body_bytes 65536, 8 HTTP threads);
- `secure`: bearer tokens, an endpoint allow-list, a plain and a TLS listener;
- `mtls`: a TLS listener that requires client certificates;
- `fragile`: its own broker, a short task_start_timeout_ms; its broker is
  frozen, killed and restarted (broker outage -> 503, then 2xx again).
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
import uuid

import pytest

from conftest import ROOT, TASK_SALES, Broker, Butler, Client, start_calls, wait_until

TASK_FINANCE = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"  # tags nightly, "finance's Q1"
TASK_HR = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"  # custom property Department=HR
UNKNOWN_TASK = "0b0b0b0b-1111-4222-8333-444455556666"
SLACK_PATH = "/services/T000/B000/SLACKSECRET123"
TOKENS = ("s3cret-token-A", "other-token-B")
MAX_BODY = 65536
IMPLEMENTED = {"butlerping", "senseStartTask", "mqttPublishMessage", "slackPostMessage",
               "apiListEnabledEndpoints", "base62ToBase16", "base16ToBase62", "keyValueStore",
               "getScheduleStatusAll", "startSchedule", "stopSchedule", "getSchedule",
               "createNewSchedule", "deleteSchedule", "postNewRelicEvent", "postNewRelicMetric",
               "fileCopy", "fileMove", "fileDelete", "createDir", "createDirQVD",
               "getActiveUsers", "getStatus"}
BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
APP_ID = "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34"


# =============================================================================
# A validator for the JSON Schema subset docs/api/openapi.json uses
# =============================================================================

# Keywords the validator checks; "description" and "example" are documentation.
# Any other keyword in a schema is an error (test_openapi_document_is_checkable),
# so the description cannot say something the tests silently ignore.
KNOWN_KEYWORDS = {"type", "properties", "required", "items", "enum", "description", "example",
                  "additionalProperties", "maxLength", "$ref", "nullable", "maxItems", "allOf"}
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "null": lambda v: v is None,
}


class SchemaError(AssertionError):
    pass


def resolve(document, reference):
    """The object a local "$ref" ("#/components/...") points at."""
    if not reference.startswith("#/"):
        raise SchemaError(f"only local references are supported: {reference!r}")
    target = document
    for part in reference[2:].split("/"):
        if not isinstance(target, dict) or part not in target:
            raise SchemaError(f"unresolved reference {reference!r}")
        target = target[part]
    return target


def schema_errors(value, schema, where="$", document=None):
    """Every violation of `schema` by `value`, as a list of strings."""
    errors = []
    unknown = set(schema) - KNOWN_KEYWORDS
    if unknown:
        raise SchemaError(f"{where}: the validator does not implement {sorted(unknown)}")
    if "$ref" in schema:
        if len(schema) != 1:
            raise SchemaError(f"{where}: $ref must stand alone (OpenAPI 3.0 ignores its siblings)")
        return schema_errors(value, resolve(document or OPENAPI_DOC, schema["$ref"]), where, document)
    if value is None and schema.get("nullable") is True:
        return []  # OpenAPI 3.0: null is allowed besides the type
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, where, document)
    kind = schema.get("type")
    if kind is not None:
        if kind not in TYPES:
            raise SchemaError(f"{where}: unknown type {kind!r}")
        if not TYPES[kind](value):
            return [f"{where}: expected {kind}, got {type(value).__name__} {value!r:.80}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r:.80} is not one of {schema['enum']}")
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{where}: longer than {schema['maxLength']}")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: required property {name!r} is missing")
        properties = schema.get("properties", {})
        for name, sub in properties.items():
            if name in value:
                errors += schema_errors(value[name], sub, f"{where}.{name}", document)
        extra = schema.get("additionalProperties", True)
        for name in set(value) - set(properties):
            if extra is False:
                errors.append(f"{where}: unexpected property {name!r}")
            elif isinstance(extra, dict):
                errors += schema_errors(value[name], extra, f"{where}.{name}", document)
    if isinstance(value, list) and len(value) > schema.get("maxItems", len(value)):
        errors.append(f"{where}: more than {schema['maxItems']} items")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{where}[{i}]", document)
    return errors


def validate(value, schema, what="value", document=None):
    errors = schema_errors(value, schema, document=document)
    if errors:
        raise SchemaError(f"{what} does not match its schema: " + "; ".join(errors[:10]))


# The project's own description of its HTTP API: every answer in these tests is
# checked against it, and GET /openapi.json must serve exactly this file.
OPENAPI_PATH = os.path.join(ROOT, "docs", "api", "openapi.json")
with open(OPENAPI_PATH, "rb") as _file:
    OPENAPI_BYTES = _file.read()
OPENAPI_DOC = json.loads(OPENAPI_BYTES.decode("utf-8"))
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


class OpenApi:
    """Operations of the OpenAPI document, looked up by method and concrete path."""

    def __init__(self, document):
        self.document = document
        self.paths = document["paths"]
        templates = []
        for template in self.paths:
            pattern = "^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)) + "$"
            templates.append((template.count("{"), re.compile(pattern), template))
        templates.sort(key=lambda t: t[0])  # literal paths win over templated ones
        self.templates = templates
        self.error_schema = resolve(document, "#/components/schemas/Error")

    def deref(self, item):
        while isinstance(item, dict) and "$ref" in item:
            item = resolve(self.document, item["$ref"])
        return item

    def operations(self):
        for template, item in self.paths.items():
            for method, operation in item.items():
                if method in METHODS:
                    yield method.upper(), template, operation

    def matches(self, path):
        """Every template the concrete path matches, the most literal first."""
        return [template for _, pattern, template in self.templates if pattern.match(path)]

    def match(self, path, method=None):
        """The template that serves `method` on `path` (else the most literal match), or None."""
        found = self.matches(path)
        for template in found:
            if method and method.lower() in self.paths[template]:
                return template
        return found[0] if found else None

    def response(self, method, template, status):
        """The declared response object (references resolved), or None."""
        operation = self.paths.get(template, {}).get(method.lower())
        if not operation:
            return None
        return self.deref(operation["responses"].get(str(status)))

    def path_response(self, template, status):
        """For a method the path does not take: the answer any of its operations declares."""
        for method in METHODS:
            found = self.response(method, template, status)
            if found is not None:
                return found
        return None


OPENAPI = OpenApi(OPENAPI_DOC)


# =============================================================================
# HTTP helpers
# =============================================================================

class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body
        self.json = None
        self.schema_source = None  # "openapi", "contract" or None (not JSON)

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def effective_method(method, headers):
    override = {k.lower(): v for k, v in (headers or {}).items()}.get("x-http-method-override")
    if method == "POST" and override and override.upper() in ("PUT", "DELETE"):
        return override.upper()
    return method


def check_response(method, path, resp):
    """Validate one answer against docs/api/openapi.json; sets resp.json.

    Strict: the status must be declared for that method and path (for a method the path
    does not take, by one of the path's operations: 401/404/405...), its body must match
    the declared media type and schema, and the headers the response declares must be
    there. A path the description does not know may only answer an error in the Error
    shape (any path answers 404 that way).
    """
    path = path.partition("?")[0]
    template = OPENAPI.match(path, method)
    if template is None:
        declared = None
        assert 400 <= resp.status < 500, f"{method} {path} (not described) -> {resp}"
    elif method.lower() in OPENAPI.paths[template]:
        declared = OPENAPI.response(method, template, resp.status)
    else:
        declared = OPENAPI.path_response(template, resp.status)
        assert resp.status >= 400, f"{method} {path}: the description has no {method} here: {resp}"
    if template is not None:
        assert declared is not None, \
            f"{method} {path} -> {resp.status}: an undocumented answer {resp}"
    content = (declared or {}).get("content")
    if declared is not None and not content:
        assert resp.body == b"", f"{method} {path} -> {resp.status} declares no body: {resp}"
        resp.schema_source = "openapi"
        return
    for header in (declared or {}).get("headers", {}):
        assert header.lower() in resp.headers, f"{method} {path} -> {resp.status}: no {header}"
    content_type = resp.headers.get("content-type", "")
    for media in ("text/plain", "text/html", "text/css", "text/javascript", "image/svg+xml"):
        if content and media in content:
            assert content_type.startswith(media), (method, path, content_type)
            resp.schema_source = "openapi"
            return
    assert content_type.startswith("application/json"), \
        f"{method} {path} -> {resp.status} is not JSON ({content_type!r}): {resp.body[:200]!r}"
    resp.json = json.loads(resp.body.decode("utf-8"))  # strict UTF-8, valid JSON
    schema = content["application/json"]["schema"] if content else OPENAPI.error_schema
    validate(resp.json, schema, f"{method} {path} -> {resp.status} (openapi)")
    if resp.status >= 400 and path != "/health":  # /health's 503 is its own status body
        validate(resp.json, OPENAPI.error_schema, f"{method} {path} -> {resp.status}")
        assert resp.json["statusCode"] == resp.status, resp.json
    resp.schema_source = "openapi"


def request(port, method, path, body=None, headers=None, timeout=10.0, context=None,
            validate_answer=True):
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode("utf-8")
    if context is not None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        raw = conn.getresponse()
        resp = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
    finally:
        conn.close()
    if validate_answer:
        check_response(effective_method(method, headers), path, resp)
    return resp


def raw_exchange(port, data, timeout=10.0, shutdown=False):
    """Send raw bytes, read until the server closes (or the timeout); -> bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        return read_until_close(s)


def read_until_close(s):
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def parse_raw_response(data):
    """-> Response from the first HTTP answer in raw bytes (Content-Length framed)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete HTTP answer: {data[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    assert len(rest) >= length, f"truncated answer: {data[:300]!r}"
    return Response(status, headers, rest[:length])


def guarded(port, method, path, **kwargs):
    """A request the caller expects to fail at the transport level; -> the exception."""
    try:
        resp = request(port, method, path, validate_answer=False, **kwargs)
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as e:
        assert not isinstance(e, (TimeoutError, socket.timeout)), f"hung instead of refusing: {e!r}"
        return e
    raise AssertionError(f"expected the connection to be refused, got {resp}")


# =============================================================================
# Metrics (Prometheus text format)
# =============================================================================

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?'
                    r' (-?[0-9.eE+-]+|NaN|[+-]Inf)( -?[0-9]+)?$')


def parse_metrics(text):
    """Validate the exposition format; -> {(name, labels-string): value}."""
    typed = {}
    samples = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if line.startswith("# HELP "):
            assert re.match(r"^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$", line), f"line {number}: {line}"
            continue
        if line.startswith("# TYPE "):
            m = re.match(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$",
                         line)
            assert m, f"line {number}: bad TYPE line {line!r}"
            typed[m.group(1)] = m.group(2)
            continue
        assert not line.startswith("#") or line.startswith("# "), f"line {number}: {line!r}"
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"line {number}: not a Prometheus sample: {line!r}"
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"line {number}: {name} has no # TYPE before it"
        samples[(name, m.group(2) or "")] = float(m.group(3))
    return samples


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for (sample_name, label_text), value in samples.items():
        if sample_name != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += value
    return total


# =============================================================================
# Fixtures
# =============================================================================

class Env:
    """One Butler with its HTTP port, an MQTT observer and the QRS simulator."""

    def __init__(self, directory, broker, butler, observer, qrs=None, sink=None, port=None):
        self.directory, self.broker, self.butler = directory, broker, butler
        self.observer, self.qrs, self.sink = observer, qrs, sink
        self.port = port or butler.http_port

    def call(self, method, path, body=None, headers=None, **kwargs):
        return request(self.port, method, path, body, headers, **kwargs)


def start_env(directory, broker, qrs, http_yaml, extra_yaml="", mqtt_extra=(), observe="butler/#"):
    butler = Butler(directory, broker, qrs, extra_yaml=extra_yaml, mqtt_extra=mqtt_extra,
                    http_yaml=http_yaml).start()
    observer = Client(broker)
    for topic in ([observe] if isinstance(observe, str) else observe):
        observer.subscribe(topic)
    return butler, observer


def stop_env(butler, observer):
    observer.close()
    code = butler.stop()
    assert code == 0, f"butler exit code {code}\n{butler.log()[-3000:]}"


@pytest.fixture(scope="module")
def module_dir():
    directory = tempfile.mkdtemp(prefix="butler-http-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def module_broker(module_dir):
    broker = Broker(module_dir).start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def api_env(module_dir, module_broker, qrs_sim, http_sink_module):
    directory = os.path.join(module_dir, "api")
    os.makedirs(directory)
    butler, observer = start_env(
        directory, module_broker, qrs_sim,
        http_yaml=[f"max_body_bytes: {MAX_BODY}", "task_start_timeout_ms: 8000", "threads: 8"],
        extra_yaml=f"slack: {{ webhook_url: {json.dumps(http_sink_module.url + SLACK_PATH)} }}\n",
        observe=["butler/#", "test/#"])
    yield Env(directory, module_broker, butler, observer, qrs_sim, http_sink_module)
    stop_env(butler, observer)


@pytest.fixture
def api(api_env, qrs, http_sink):
    """The shared instance, with the simulator and the sink reset and no old MQTT messages."""
    with api_env.observer.lock:
        api_env.observer.messages.clear()
    assert api_env.butler.process.poll() is None, f"butler died:\n{api_env.butler.log()[-3000:]}"
    return api_env


@pytest.fixture(scope="module")
def secure_env(module_dir, module_broker, qrs_sim):
    directory = os.path.join(module_dir, "secure")
    os.makedirs(directory)
    pki = qrs_sim.pki_dir
    plain, tls = free_ports(2)
    butler, observer = start_env(
        directory, module_broker, None, observe="sec/#", mqtt_extra=["topic_root: sec"],
        http_yaml=[
            f"listen: 127.0.0.1:{plain},127.0.0.1:{tls}s",
            f"tokens: [{TOKENS[0]}, {TOKENS[1]}]",
            "endpoints: [butlerping, apiListEnabledEndpoints, mqttPublishMessage]",
            f"tls: {{ cert_file: {json.dumps(os.path.join(pki, 'server.pem'))}, "
            f"key_file: {json.dumps(os.path.join(pki, 'server_key.pem'))} }}",
        ])
    env = Env(directory, module_broker, butler, observer, port=plain)
    env.tls_port = tls
    env.pki = pki
    yield env
    stop_env(butler, observer)


@pytest.fixture(scope="module")
def mtls_env(module_dir, module_broker, qrs_sim):
    directory = os.path.join(module_dir, "mtls")
    os.makedirs(directory)
    pki = qrs_sim.pki_dir
    (port,) = free_ports(1)
    butler, observer = start_env(
        directory, module_broker, None, observe="mtls/#", mqtt_extra=["topic_root: mtls"],
        http_yaml=[
            f"listen: 127.0.0.1:{port}s",
            f"tls: {{ cert_file: {json.dumps(os.path.join(pki, 'server.pem'))}, "
            f"key_file: {json.dumps(os.path.join(pki, 'server_key.pem'))}, "
            f"ca_file: {json.dumps(os.path.join(pki, 'root.pem'))} }}",
        ])
    env = Env(directory, module_broker, butler, observer, port=port)
    env.pki = pki
    yield env
    stop_env(butler, observer)


@pytest.fixture(scope="module")
def fragile_env(module_dir, qrs_sim):
    """Own broker (frozen, killed and restarted by the tests) and a 1.5 s task_start_timeout_ms."""
    directory = os.path.join(module_dir, "fragile")
    os.makedirs(directory)
    broker = Broker(directory).start()
    butler, observer = start_env(directory, broker, qrs_sim,
                                 http_yaml=["task_start_timeout_ms: 1500"],
                                 extra_yaml='slack: { webhook_url: "http://127.0.0.1:9/hook" }\n')
    env = Env(directory, broker, butler, observer, qrs_sim)
    env.timeout_s = 1.5
    # One task start before the tests, answered or not: this Butler's first start runs every
    # code path of the HTTP command, the publish, the spool and the worker for the first
    # time, which under valgrind (translating each on first use) took longer than the 1.5 s
    # that the tests measure against (a 503 "did not acknowledge" in CI).
    before = len(start_calls(qrs_sim, TASK_SALES))
    env.call("PUT", f"/v4/reloadtask/{TASK_SALES}/start", timeout=60)
    wait_until(lambda: len(start_calls(qrs_sim, TASK_SALES)) > before, timeout=30,
               message="the warm-up start reached QRS")
    yield env
    if broker.process is not None:
        broker.process.send_signal(signal.SIGCONT)
    try:
        observer.close()
    except Exception:
        pass
    code = butler.stop()
    broker.stop()
    assert code == 0, f"butler exit code {code}\n{butler.log()[-3000:]}"


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def sim_calls(sim, method="POST", path_re=None):
    query = f"/_sim/calls?method={method}" + (f"&path_re={path_re}" if path_re else "")
    status, body = sim.control("GET", query)
    assert status == 200, body
    return body["calls"]


def started_in_qrs(sim):
    """{task id: [answer status, ...]} of the task starts the simulator answered."""
    out = {}
    for call in start_calls(sim):  # a shared /task/start/many call counts for each of its ids
        match = re.match(r"^/qrs/task/([^/]+)/start$", call["path"])
        if match:
            status = (call.get("response") or {}).get("status")
            out.setdefault(match.group(1), []).append(status)
    return out


def ids(entries):
    return sorted(e["taskId"] for e in entries)


def mqtt_task_start(observer, request_id, root="butler"):
    found = observer.wait_for(
        lambda m: m["topic"] == f"{root}/task/start"
        and json.loads(m["payload"]).get("requestId") == request_id,
        what=f"{root}/task/start for {request_id}")
    return json.loads(found[0]["payload"])


# =============================================================================
# The validator itself (it must be able to fail)
# =============================================================================

def test_validator_rejects_mismatches():
    schema = {"type": "object", "required": ["a"],
              "properties": {"a": {"type": "string", "enum": ["x", "y"]},
                             "n": {"type": "number"},
                             "l": {"type": "array", "items": {"type": "integer"}}}}
    validate({"a": "x", "n": 1.5, "l": [1, 2]}, schema)
    for bad in ({}, {"a": "z"}, {"a": 1}, {"a": "x", "n": "1"}, {"a": "x", "n": True},
                {"a": "x", "l": [1, "2"]}, {"a": "x", "l": {}}, []):
        with pytest.raises(SchemaError):
            validate(bad, schema)
    with pytest.raises(SchemaError):
        validate({}, {"type": "object", "oneOf": []})  # unknown keywords are not ignored
    with pytest.raises(SchemaError):
        validate({}, {"$ref": "#/components/schemas/NoSuchThing"})
    # References are followed, and the error shape is the description's.
    with pytest.raises(SchemaError):
        validate({"statusCode": 400, "error": "Bad Request"}, {"$ref": "#/components/schemas/Error"})
    with pytest.raises(SchemaError):
        validate({"statusCode": 400, "error": "x", "message": "y", "extra": 1}, OPENAPI.error_schema)
    with pytest.raises(SchemaError):
        check_response("GET", "/v4/butlerping",
                       Response(200, {"content-type": "application/json"},
                                b'{"response": 1, "butlerVersion": "x"}'))
    with pytest.raises(AssertionError):
        check_response("GET", "/v4/nope",
                       Response(404, {"content-type": "application/json"},
                                b'{"statusCode": 404, "error": "Not Found"}'))
    with pytest.raises(AssertionError):  # a status the description does not declare
        check_response("GET", "/v4/butlerping",
                       Response(202, {"content-type": "application/json"}, b'{}'))
    with pytest.raises(AssertionError):  # a declared header missing
        check_response("PUT", "/v4/mqttpublishmessage",
                       Response(503, {"content-type": "application/json"},
                                b'{"statusCode": 503, "error": "Service Unavailable", "message": "m"}'))
    with pytest.raises(AssertionError):  # 204 declares no body
        check_response("DELETE", "/v4/keyvalues/ns", Response(204, {}, b'{}'))


# =============================================================================
# Every endpoint: status and shape
# =============================================================================

def test_butlerping(api):
    resp = api.call("GET", "/v4/butlerping")
    assert resp.status == 200
    assert resp.schema_source == "openapi"
    assert resp.json["response"] == "Butler reporting for duty"
    assert re.match(r"^\d+\.\d+\.\d+", resp.json["butlerVersion"]), resp.json


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_task_start_by_path_id(api, method):
    resp = api.call(method, f"/v4/reloadtask/{TASK_SALES}/start")
    assert resp.status == 200, resp
    body = resp.json
    assert body["tasksId"]["started"] == [{"taskId": TASK_SALES, "taskName": "Reload Sales Dashboard"}]
    assert body["tasksId"]["invalid"] == [] and body["tasksId"]["denied"] == []
    assert body["tasksTag"] == [] and body["tasksCP"] == []
    uuid.UUID(body["requestId"])
    # What QRS actually did: exactly this one start, accepted.
    assert started_in_qrs(api.qrs) == {TASK_SALES: [204]}
    # The request went through the broker, under the same requestId.
    published = mqtt_task_start(api.observer, body["requestId"])
    assert {"type": "starttaskid", "payload": {"taskId": TASK_SALES}} in published["items"]
    result = api.observer.wait_result(body["requestId"])
    assert ids(result["started"]) == [TASK_SALES]


def test_task_start_typed_items_body(api):
    items = [
        {"type": "starttasktag", "payload": {"tag": "finance's Q1"}},
        {"type": "starttaskcustomproperty",
         "payload": {"customPropertyName": "Department", "customPropertyValue": "HR"}},
        {"type": "keyvaluestore",
         "payload": {"namespace": "chain", "key": "http-run", "value": "42", "ttl": 60000}},
    ]
    resp = api.call("POST", f"/v4/reloadtask/{TASK_SALES}/start", items)
    assert resp.status == 200, resp
    body = resp.json
    assert ids(body["tasksId"]["started"]) == [TASK_SALES]
    assert body["tasksTag"] == [{"taskId": TASK_FINANCE, "taskName": "Reload Finance"}]
    assert body["tasksCP"] == [{"taskId": TASK_HR, "taskName": "Reload HR Headcount"}]
    assert body["tasksTagDenied"] == [] and body["tasksCPDenied"] == []
    qrs = started_in_qrs(api.qrs)
    assert qrs == {TASK_SALES: [204], TASK_FINANCE: [204], TASK_HR: [204]}, qrs
    # The tag filter reached QRS with the quote escaped, not as an injection.
    lookups = [c["query"].get("filter", [""])[0] for c in sim_calls(api.qrs, "GET")]
    assert any("finance" in f and "Q1" in f for f in lookups), lookups
    # The key-value item is stored (a retained message under <root>/kv/).
    kv = api.observer.wait_for(lambda m: m["topic"] == "butler/kv/chain/http-run")
    assert json.loads(kv[0]["payload"])["value"] == "42"


def test_task_start_magic_dash_takes_everything_from_the_body(api):
    items = [{"type": "starttaskid", "payload": {"taskId": TASK_HR}}]
    resp = api.call("PUT", "/v4/reloadtask/-/start", items)
    assert resp.status == 200, resp
    assert ids(resp.json["tasksId"]["started"]) == [TASK_HR]
    # "-" is not a task and not reported as invalid.
    assert resp.json["tasksId"]["invalid"] == []
    assert started_in_qrs(api.qrs) == {TASK_HR: [204]}


EMPTY_NODE_ANSWER = {"tasksId": {"started": [], "invalid": [], "denied": []}, "tasksTag": [],
                     "tasksTagDenied": [], "tasksCP": [], "tasksCPDenied": []}


def test_task_start_dash_with_only_key_values_stores_them(api):
    """The Node.js Butler stores keyvaluestore items even when the body names no task,
    and answers 200 with empty lists: a load script passing parameters only."""
    items = [{"type": "keyvaluestore",
              "payload": {"namespace": "chain", "key": "only-kv", "value": "7", "ttl": 60000}}]
    resp = api.call("PUT", "/v4/reloadtask/-/start", items)
    assert resp.status == 200, resp
    assert {k: v for k, v in resp.json.items()
            if k not in ("requestId", "status")} == EMPTY_NODE_ANSWER
    assert resp.json["status"] == "started"
    kv = api.observer.wait_for(lambda m: m["topic"] == "butler/kv/chain/only-kv")
    assert json.loads(kv[0]["payload"])["value"] == "7"
    result = api.observer.wait_result(resp.json["requestId"])
    assert result["status"] == "started" and result["started"] == [], result
    assert started_in_qrs(api.qrs) == {}


def test_task_start_dash_without_items_answers_empty_lists(api):
    """PUT|POST /v4/reloadtask/-/start naming nothing: 200 with empty lists in the Node.js shape
    (as the Node.js Butler answers), at once, and nothing is published or started."""
    answers = []
    for method, query, body in (("PUT", "", None), ("POST", "", None), ("PUT", "", []),
                                ("POST", "", " \n"), ("PUT", "?async=true", None),
                                ("PUT", "?requestId=mine-1&allTaskIdsMustExist=true", None)):
        resp = api.call(method, f"/v4/reloadtask/-/start{query}", body)
        assert resp.status == 200, (method, query, body, resp)
        assert resp.schema_source == "openapi"
        answer = dict(resp.json)
        request_id = answer.pop("requestId")
        assert answer == EMPTY_NODE_ANSWER, resp.json
        answers.append(request_id)
    assert answers[-1] == "mine-1"  # a caller's requestId is echoed
    for request_id in answers[:-1]:
        uuid.UUID(request_id)
    assert len(set(answers)) == len(answers)
    # A malformed body is still refused, "-" or not.
    resp = api.call("PUT", "/v4/reloadtask/-/start", "[", {"Content-Type": "application/json"})
    assert resp.status == 400, resp
    # Nothing went to the broker: by the time a real start published after them arrives
    # (Butler's publishes reach the broker in order), none of their requestIds has.
    resp = api.call("PUT", f"/v4/reloadtask/{TASK_SALES}/start")
    assert resp.status == 200, resp
    mqtt_task_start(api.observer, resp.json["requestId"])
    with api.observer.lock:
        published = [json.loads(m["payload"]).get("requestId") for m in api.observer.messages
                     if m["topic"].startswith("butler/task/")]
    assert not set(answers) & set(published), published
    assert started_in_qrs(api.qrs) == {TASK_SALES: [204]}


def test_task_start_all_task_ids_must_exist(api):
    items = [{"type": "starttaskid", "payload": {"taskId": UNKNOWN_TASK}},
             {"type": "starttaskcustomproperty",
              "payload": {"customPropertyName": "Department", "customPropertyValue": "HR"}}]
    resp = api.call("PUT", f"/v4/reloadtask/{TASK_SALES}/start?allTaskIdsMustExist=true", items)
    assert resp.status == 200, resp
    body = resp.json
    assert body["tasksId"]["started"] == []
    assert {"taskId": UNKNOWN_TASK} in body["tasksId"]["invalid"]
    assert ids(body["tasksCP"]) == [TASK_HR]  # tag/custom-property starts are not affected
    assert started_in_qrs(api.qrs) == {TASK_HR: [204]}, "an id-based task started anyway"

    # Without the flag the existing id does start: the flag is what held it back.
    api.qrs.control("DELETE", "/_sim/calls")
    resp = api.call("PUT", f"/v4/reloadtask/{TASK_SALES}/start?allTaskIdsMustExist=false", items)
    assert ids(resp.json["tasksId"]["started"]) == [TASK_SALES]
    assert {"taskId": UNKNOWN_TASK} in resp.json["tasksId"]["invalid"]
    assert sorted(started_in_qrs(api.qrs)) == sorted([TASK_SALES, TASK_HR])


def test_task_start_unknown_and_malformed_ids_are_invalid(api):
    resp = api.call("PUT", f"/v4/reloadtask/{UNKNOWN_TASK}/start")
    assert resp.status == 200, resp
    assert resp.json["tasksId"]["invalid"] == [{"taskId": UNKNOWN_TASK}]
    assert resp.json["tasksId"]["started"] == []
    resp = api.call("PUT", "/v4/reloadtask/abc/start")
    assert resp.status == 200, resp
    assert resp.json["tasksId"]["invalid"] == [{"taskId": "abc"}]
    assert started_in_qrs(api.qrs) == {}


def test_task_start_reports_what_qrs_did_when_qrs_fails(api):
    """Two tasks in one request share one QRS call; QRS refuses the list (404, as for an
    id it does not know), so Butler starts each on its own and reports per task what
    QRS did: one accepted, one failing with 503."""
    status, _ = api.qrs.control("POST", "/_sim/faults", {
        "id": "start503",
        "match": {"method": "POST", "path_re": f"^/qrs/task/{TASK_SALES}/start$", "times": -1},
        "action": {"type": "status", "status": 503, "body": "{\"message\":\"busy\"}"},
    })
    assert status in (200, 201)
    status, _ = api.qrs.control("POST", "/_sim/faults", {
        "id": "refuse-many",
        "match": {"method": "POST", "path_re": "^/qrs/task/start/many$", "times": -1},
        "action": {"type": "status", "status": 404},
    })
    assert status in (200, 201)
    resp = api.call("PUT", f"/v4/reloadtask/-/start",
                    [{"type": "starttaskid", "payload": {"taskId": TASK_SALES}},
                     {"type": "starttaskid", "payload": {"taskId": TASK_HR}}])
    assert resp.status == 200, resp
    qrs = started_in_qrs(api.qrs)
    assert qrs[TASK_HR] == [404, 204] and set(qrs[TASK_SALES]) == {404, 503}, qrs
    # Only what QRS accepted is reported as started.
    assert ids(resp.json["tasksId"]["started"]) == [TASK_HR]
    assert TASK_SALES in [t["taskId"] for t in resp.json.get("failed", [])], resp.json


def test_task_start_async(api):
    resp = api.call("POST", f"/v4/reloadtask/{TASK_FINANCE}/start?async=true")
    assert resp.status == 202, resp
    assert resp.schema_source == "openapi"
    request_id = resp.json["requestId"]
    uuid.UUID(request_id)
    assert mqtt_task_start(api.observer, request_id)["requestId"] == request_id
    result = api.observer.wait_result(request_id)
    assert result["status"] == "started" and ids(result["started"]) == [TASK_FINANCE]
    assert started_in_qrs(api.qrs) == {TASK_FINANCE: [204]}


def test_task_start_with_caller_request_id_is_idempotent(api):
    """Butler extension: a caller that retries with the same ?requestId= starts the task once
    and gets the same answer again."""
    request_id = f"load-script-{uuid.uuid4().hex[:8]}"
    first = api.call("PUT", f"/v4/reloadtask/{TASK_FINANCE}/start?requestId={request_id}")
    assert first.status == 200 and first.json["requestId"] == request_id, first
    again = api.call("PUT", f"/v4/reloadtask/{TASK_FINANCE}/start?requestId={request_id}")
    assert again.status == 200 and again.json == first.json, again
    assert started_in_qrs(api.qrs) == {TASK_FINANCE: [204]}
    for bad in ("x" * 65, "a%00b", "tab%09id"):
        resp = api.call("PUT", f"/v4/reloadtask/{TASK_FINANCE}/start?requestId={bad}")
        assert resp.status == 400 and "requestId" in resp.json["message"], resp


def test_concurrent_task_starts_get_their_own_answers(api):
    tasks = [TASK_SALES, TASK_FINANCE, TASK_HR, UNKNOWN_TASK, TASK_SALES, TASK_HR]
    answers = [None] * len(tasks)

    def run(i):
        answers[i] = api.call("PUT", f"/v4/reloadtask/{tasks[i]}/start", timeout=20)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tasks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    request_ids = set()
    for task, resp in zip(tasks, answers):
        assert resp is not None and resp.status == 200, resp
        request_ids.add(resp.json["requestId"])
        if task == UNKNOWN_TASK:
            assert resp.json["tasksId"]["invalid"] == [{"taskId": task}], resp.json
        else:
            assert ids(resp.json["tasksId"]["started"]) == [task], (task, resp.json)
    assert len(request_ids) == len(tasks)
    assert sum(len(v) for v in started_in_qrs(api.qrs).values()) == 5


def test_mqtt_publish_message(api):
    body = {"topic": "test/http/sales", "message": "dt=20201028 ✓"}
    resp = api.call("PUT", "/v4/mqttpublishmessage", body)
    assert resp.status == 201, resp
    assert resp.schema_source == "openapi"
    assert resp.json == body
    got = api.observer.wait_for(lambda m: m["topic"] == "test/http/sales")
    assert got[0]["payload"] == body["message"].encode("utf-8")

    # Butler's extension: qos and retain.
    body = {"topic": "test/http/retained", "message": "kept", "qos": 1, "retain": True}
    assert api.call("PUT", "/v4/mqttpublishmessage", body).status == 201
    late = Client(api.broker)
    try:
        late.subscribe("test/http/retained")
        late.wait_for(lambda m: m["retain"] and m["payload"] == b"kept")
    finally:
        late.client.publish("test/http/retained", b"", qos=1, retain=True).wait_for_publish(5)
        late.close()


def test_slack_post_message_reaches_the_webhook(api):
    body = {"channel": "#reload-notification", "from_user": "Butler the Bot",
            "msg": "Reload of \"Sales\" finished ✓", "emoji": ":thumbsup:"}
    resp = api.call("PUT", "/v4/slackpostmessage", body)
    assert resp.status == 201, resp
    assert resp.schema_source == "openapi"
    assert resp.json == body
    posted = api.sink.wait_for(1)[0]
    assert posted["method"] == "POST" and posted["path"] == SLACK_PATH
    assert posted["headers"]["content-type"].startswith("application/json")
    assert posted["json"] == {"text": body["msg"], "channel": body["channel"],
                              "username": body["from_user"], "icon_emoji": body["emoji"]}
    # Through the broker, as the contract says.
    api.observer.wait_for(lambda m: m["topic"] == "butler/slack/post")


def test_slack_retries_honour_retry_after(api):
    api.sink.fail(429, times=1, retry_after=1)
    body = {"channel": "#c", "from_user": "b", "msg": "after a 429"}
    assert api.call("PUT", "/v4/slackpostmessage", body).status == 201
    first, second = api.sink.wait_for(2, timeout=15)
    assert first["status"] == 429 and second["status"] == 200
    assert second["json"] == first["json"]
    assert second["t"] - first["t"] >= 0.9, "Retry-After: 1 was not honoured"


def test_slack_500s_retry_then_deadletter(api):
    api.sink.fail(500, times=2)
    assert api.call("PUT", "/v4/slackpostmessage",
                    {"channel": "#c", "from_user": "b", "msg": "two 500s"}).status == 201
    answered = api.sink.wait_for(3, timeout=15)
    assert [r["status"] for r in answered] == [500, 500, 200]

    api.sink.reset()
    api.sink.fail(500, times=3)  # retry.max_attempts is 3 in the harness
    assert api.call("PUT", "/v4/slackpostmessage",
                    {"channel": "#c", "from_user": "b", "msg": "three 500s"}).status == 201
    letter = api.observer.wait_for(lambda m: m["topic"] == "butler/deadletter/butler/slack/post",
                                   timeout=15)
    assert json.loads(letter[0]["payload"])["attempts"] == 3
    assert len(api.sink.requests) == 3
    assert "SLACKSECRET123" not in api.butler.log(), "the webhook URL leaked into the log"


def test_endpoints_enabled(api):
    resp = api.call("GET", "/v4/configfile/endpointsenabled")
    assert resp.status == 200
    assert resp.schema_source == "openapi"
    assert set(resp.json) == IMPLEMENTED and len(resp.json) == len(IMPLEMENTED)


def to_base62(number):
    if number == 0:
        return "0"
    out = ""
    while number:
        number, digit = divmod(number, 62)
        out = BASE62[digit] + out
    return out


def test_base_conversions(api):
    resp = api.call("GET", "/v4/base62tobase16?base62=6DMW88LpSok9Z7P7hUK0wv7bF")
    assert resp.status == 200 and resp.schema_source == "openapi"
    assert resp.json == {"base62": "6DMW88LpSok9Z7P7hUK0wv7bF",
                         "base16": "3199af08bfeeaf5d420f27ed9c01e74370077"}
    resp = api.call("GET", "/v4/base16tobase62?base16=3199af08bfeeaf5d420f27ed9c01e74370077")
    assert resp.status == 200 and resp.schema_source == "openapi"
    assert resp.json["base62"] == "6DMW88LpSok9Z7P7hUK0wv7bF"
    rng = random.Random(7)
    for _ in range(5):
        hex_value = "%x" % rng.getrandbits(rng.choice([8, 64, 160, 256]) | 1)
        b62 = api.call("GET", f"/v4/base16tobase62?base16={hex_value}").json["base62"]
        assert b62 == to_base62(int(hex_value, 16)), hex_value
        back = api.call("GET", f"/v4/base62tobase16?base62={b62}").json["base16"]
        assert back == hex_value
    for path in ("/v4/base62tobase16", "/v4/base62tobase16?base62=", "/v4/base62tobase16?base62=ab-c",
                 "/v4/base62tobase16?base62=ab%00c", "/v4/base16tobase62?base16=xyz",
                 "/v4/base16tobase62?base62=ff", "/v4/base16tobase62?base16=" + "f" * 5000):
        resp = api.call("GET", path)
        assert resp.status == 400, (path, resp)


def test_health_and_metrics(api):
    resp = api.call("GET", "/health")
    assert resp.status == 200
    assert resp.json["status"] == "ok" and resp.json["mqtt"] == "connected"

    before = parse_metrics(api.call("GET", "/metrics").body.decode("utf-8"))
    for _ in range(3):
        api.call("GET", "/v4/butlerping")
    api.call("GET", "/v4/nope")
    assert api.call("PUT", "/v4/mqttpublishmessage",
                    {"topic": "test/http/metrics", "message": "m"}).status == 201
    after = parse_metrics(api.call("GET", "/metrics").body.decode("utf-8"))
    name = "butler_http_requests_total"
    assert metric(after, name, endpoint="butlerping", status="200") - \
        metric(before, name, endpoint="butlerping", status="200") == 3
    assert metric(after, name, status="404") - metric(before, name, status="404") == 1
    assert metric(after, name, endpoint="mqttPublishMessage", status="201") - \
        metric(before, name, endpoint="mqttPublishMessage", status="201") == 1
    assert metric(after, "butler_mqtt_published_total") > metric(before, "butler_mqtt_published_total")


@pytest.mark.parametrize("operation", [f"{m} {t}" for m, t, _ in OPENAPI.operations()])
def test_openapi_operation(api, operation):
    """Each operation of the description answers its success status, in its shape."""
    method, template = operation.split(" ", 1)
    representative = {
        "GET /v4/configfile/endpointsenabled": ("/v4/configfile/endpointsenabled", None, 200),
        "GET /v4/base62tobase16": ("/v4/base62tobase16?base62=zz", None, 200),
        "GET /v4/base16tobase62": ("/v4/base16tobase62?base16=ff", None, 200),
        "GET /v4/butlerping": ("/v4/butlerping", None, 200),
        # The api instance has no udp.proxy_listen: off (404); the 200 is checked
        # against this description in test_users.py.
        "GET /v4/activeusers": ("/v4/activeusers", None, 404),
        "GET /v4/status": ("/v4/status", None, 200),
        "GET /": ("/", None, 200),
        "GET /status.css": ("/status.css", None, 200),
        "GET /status.js": ("/status.js", None, 200),
        "GET /favicon.svg": ("/favicon.svg", None, 200),
        "PUT /v4/mqttpublishmessage": ("/v4/mqttpublishmessage",
                                       {"topic": "test/http/op", "message": "m"}, 201),
        "PUT /v4/reloadtask/{taskId}/start": (f"/v4/reloadtask/{TASK_HR}/start", None, 200),
        "POST /v4/reloadtask/{taskId}/start": (f"/v4/reloadtask/{TASK_HR}/start", [], 200),
        "PUT /v4/slackpostmessage": ("/v4/slackpostmessage",
                                     {"channel": "#c", "from_user": "u", "msg": "m"}, 201),
        # This instance has no newrelic.accounts: the post fails for good (502); the 202
        # path is covered by test_newrelic.py.
        "POST /v4/newrelic/event": ("/v4/newrelic/event", {"eventType": "qs_op"}, 502),
        "POST /v4/newrelic/metric": ("/v4/newrelic/metric", {"name": "m", "value": 1}, 502),
        "GET /health": ("/health", None, 200),
        "GET /metrics": ("/metrics", None, 200),
        "GET /openapi.json": ("/openapi.json", None, 200),
        # The api instance has no notification secret: the callback is refused as 404
        # (its 200 is covered by test_notifications.py).
        "POST /qrs-notification/{secret}": ("/qrs-notification/not-the-secret", [], 404),
        # The api instance has no qlik_cloud.tenants: the webhook is off (404); its answers
        # are covered by test_qlik_cloud.py.
        "POST /qlik-cloud/webhook": ("/qlik-cloud/webhook", {}, 404),
        # The api instance has no engine.url: the engine endpoints are off (404); their
        # success answers are checked against this description in test_app.py.
        "PUT /v4/app/{appId}/reload": (f"/v4/app/{APP_ID}/reload", {}, 404),
        "GET /v4/app/{appId}/dump": (f"/v4/app/{APP_ID}/dump", None, 404),
        "GET /v4/senseappdump/{appId}": (f"/v4/senseappdump/{APP_ID}", None, 404),
        "GET /v4/apps/list": ("/v4/apps/list", None, 404),
        "GET /v4/senselistapps": ("/v4/senselistapps", None, 404),
        # The api instance runs no file worker: the missing-parameter answer here, the
        # rest in a scratch tree by test_file_ops.py.
        "PUT /v4/filecopy": ("/v4/filecopy", {"toFile": "/data/a"}, 400),
        "PUT /v4/filemove": ("/v4/filemove", {"fromFile": "/data/a"}, 400),
        "DELETE /v4/filedelete": ("/v4/filedelete", {}, 400),
        "POST /v4/createdir": ("/v4/createdir", {}, 400),
        "POST /v4/createdirqvd": ("/v4/createdirqvd", {"directory": 5}, 400),
    }
    if operation in representative:
        path, body, expected = representative[operation]
        resp = api.call(method, path, body)
        assert resp.status == expected, resp
        assert resp.schema_source == "openapi"
        if "slack" in path:
            api.sink.wait_for(1)
        return
    if template.startswith(("/v4/schedules", "/v4/keyvalue", "/v4/keylist")):
        # Each operation gets fresh data to act on, so the order of the tests does not matter.
        namespace = f"op-{uuid.uuid4().hex[:12]}"
        created = api.call("POST", f"/v4/keyvalues/{namespace}", {"key": "k1", "value": "v1"})
        assert created.status == 201, created
        schedule = api.call("POST", "/v4/schedules", {
            "name": f"openapi {operation}", "cronSchedule": "0 0 1 1 *", "timezone": "UTC",
            "qlikSenseTaskId": TASK_HR, "startupState": "stopped", "tags": ["openapi"]})
        assert schedule.status == 201, schedule
        schedule_id = json.loads(schedule.body)["id"]
        stateful = {
            "GET /v4/keyvaluesnamespaces": ("/v4/keyvaluesnamespaces", None, 200),
            "GET /v4/keyvalues/{namespace}": (f"/v4/keyvalues/{namespace}?key=k1", None, 200),
            "POST /v4/keyvalues/{namespace}": (f"/v4/keyvalues/{namespace}",
                                               {"key": "k2", "value": "v2", "ttl": 60000}, 201),
            "DELETE /v4/keyvalues/{namespace}": (f"/v4/keyvalues/{namespace}", None, 204),
            "GET /v4/keyvalues/{namespace}/keyexists": (
                f"/v4/keyvalues/{namespace}/keyexists?key=k1", None, 200),
            "DELETE /v4/keyvalues/{namespace}/{key}": (f"/v4/keyvalues/{namespace}/k1", None, 204),
            "GET /v4/schedules": (f"/v4/schedules?id={schedule_id}", None, 200),
            "POST /v4/schedules": ("/v4/schedules", {
                "name": "openapi create", "cronSchedule": "*/30 * * * * *", "timezone": "UTC",
                "qlikSenseTaskId": TASK_HR, "startupState": "stopped"}, 201),
            "DELETE /v4/schedules/{scheduleId}": (f"/v4/schedules/{schedule_id}", None, 204),
            "PUT /v4/schedules/{scheduleId}/start": (f"/v4/schedules/{schedule_id}/start", None, 200),
            "PUT /v4/schedules/{scheduleId}/stop": (f"/v4/schedules/{schedule_id}/stop", None, 200),
            "PUT /v4/schedules/stopall": ("/v4/schedules/stopall", None, 200),
        }
        if operation == "PUT /v4/schedules/startall":
            # Starting every schedule would fire other tests' ones: start all, then stop all.
            resp = api.call("PUT", "/v4/schedules/startall")
            assert resp.status == 200 and resp.schema_source == "openapi", resp
            assert api.call("PUT", "/v4/schedules/stopall").status == 200
        elif operation == "GET /v4/schedules/status":
            # The description's answer is text/plain: "<id>: cron status: Running|Stopped" lines.
            resp = api.call("GET", "/v4/schedules/status", validate_answer=False)
            assert resp.status == 200, resp
            assert resp.headers["content-type"].startswith("text/plain"), resp
            assert f"{schedule_id}: cron status: Stopped" in resp.body.decode(), resp
        elif operation == "GET /v4/keylist/{namespace}":
            # The description's item schema is malformed ("key" where "properties" belongs):
            # check the intended shape {"namespace", "keys": [{"key"}]} directly.
            resp = api.call("GET", f"/v4/keylist/{namespace}", validate_answer=False)
            assert resp.status == 200, resp
            assert json.loads(resp.body) == {"namespace": namespace, "keys": [{"key": "k1"}]}
        else:
            path, body, expected = stateful[operation]
            resp = api.call(method, path, body)
            assert resp.status == expected, resp
            if expected != 204:
                assert resp.schema_source == "openapi", resp
        if operation == "POST /v4/schedules":
            api.call("DELETE", f"/v4/schedules/{json.loads(resp.body)['id']}")
        api.call("DELETE", f"/v4/schedules/{schedule_id}", validate_answer=False)
        api.call("DELETE", f"/v4/keyvalues/{namespace}", validate_answer=False)
        return
    raise AssertionError(f"{operation}: no representative request in this test; add one")


# Node.js Butler endpoints. Those the description does not list must answer 404 (not
# half-work); once one is implemented, its path goes into docs/api/openapi.json.
NODE_ONLY = [("PUT", "/v4/filecopy"), ("PUT", "/v4/filemove"), ("DELETE", "/v4/filedelete"),
             ("POST", "/v4/createdir"), ("POST", "/v4/createdirqvd"),
             ("POST", "/v4/newrelic/event"), ("POST", "/v4/newrelic/metric"),
             ("PUT", "/v4/app/{appId}/reload"), ("GET", "/v4/app/{appId}/dump"),
             ("GET", "/v4/senseappdump/{appId}"), ("GET", "/v4/senselistapps"),
             ("GET", "/v4/apps/list")]


@pytest.mark.parametrize("method,template", [(m, t) for m, t in NODE_ONLY
                                             if t not in OPENAPI.paths])
def test_undescribed_node_endpoints_are_404(api, method, template):
    path = template.replace("{appId}", "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34")
    resp = api.call(method, path, {} if method in ("PUT", "POST", "DELETE") else None)
    assert resp.status == 404, resp


def concrete(template):
    """A concrete path for a template (a value no test data uses)."""
    return re.sub(r"\{[^}]+\}", "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34", template)


def test_openapi_json_is_the_committed_file(secure_env):
    """GET /openapi.json serves docs/api/openapi.json byte for byte (built into the
    binary), without a token even where /v4 needs one."""
    resp = secure_env.call("GET", "/openapi.json")
    assert resp.status == 200, resp
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    assert resp.body == OPENAPI_BYTES, "the served description differs from docs/api/openapi.json"
    assert secure_env.call("GET", "/v4/butlerping").status == 401  # the token rule is on here
    resp = secure_env.call("PUT", "/openapi.json")
    assert resp.status == 405 and resp.headers["allow"] == "GET", resp


def test_openapi_document_is_checkable():
    """Every schema in the description uses only what the validator checks, every
    reference resolves, and every operation declares the errors Butler can answer."""
    def walk(node, where):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(OPENAPI_DOC, node["$ref"])
            if "schema" in node and isinstance(node["schema"], dict):
                check_schema(node["schema"], where + ".schema")
            for key, value in node.items():
                if key != "schema":
                    walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    def check_schema(schema, where):
        unknown = set(schema) - KNOWN_KEYWORDS
        assert not unknown, f"{where}: keywords the validator does not check: {unknown}"
        if "$ref" in schema:
            resolve(OPENAPI_DOC, schema["$ref"])
        for name, sub in schema.get("properties", {}).items():
            check_schema(sub, f"{where}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                check_schema(schema[key], f"{where}.{key}")
        for i, sub in enumerate(schema.get("allOf", [])):
            check_schema(sub, f"{where}.allOf[{i}]")

    assert OPENAPI_DOC["openapi"].startswith("3.0.")
    walk(OPENAPI_DOC["paths"], "paths")
    for name, schema in OPENAPI_DOC["components"]["schemas"].items():
        check_schema(schema, f"components.schemas.{name}")
    for method, template, operation in OPENAPI.operations():
        statuses = set(operation["responses"])
        needed = {"400", "405", "431", "500"}
        if template.startswith("/v4/"):
            needed |= {"401", "404"}  # tokens; the endpoint allow-list
        if "requestBody" in operation:
            needed |= {"413"}
            if template.startswith("/v4/"):
                needed |= {"415"}
        assert needed <= statuses, f"{method} {template} does not declare {needed - statuses}"
        assert operation.get("operationId") and operation.get("summary"), (method, template)
        for status, response in operation["responses"].items():
            response = OPENAPI.deref(response)
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"} or \
                    (template, status) == ("/health", "503"), (method, template, status)
            if status == "503":
                assert "Retry-After" in response.get("headers", {}), (method, template)


def described_routes():
    """The description as the router sees it: {pattern with * segments: methods}."""
    described = {}
    for method, template, _ in OPENAPI.operations():
        described.setdefault(re.sub(r"\{[^}]+\}", "*", template), set()).add(method)
    # GET .../{namespace}/keyexists is served by the .../*/* route (which takes GET only
    # for that key name, and answers 405 with Allow: DELETE for any other).
    if "/v4/keyvalues/*/keyexists" in described:
        described.setdefault("/v4/keyvalues/*/*", set()).update(
            described.pop("/v4/keyvalues/*/keyexists"))
    return described


ROUTE_LINE = re.compile(r'\{"(\w+)",\s*"(/[^"]*)",\s*((?:M_[A-Z]+\s*\|?\s*)+),')


def test_every_route_is_described():
    """The router's table (bridge/ingress/http_api.c) and the description list the same
    paths with the same methods, so neither can gain an endpoint the other lacks."""
    with open(os.path.join(ROOT, "bridge", "ingress", "http_api.c"), encoding="utf-8") as f:
        source = f.read()
    table = source[source.index("static const struct route routes[]"):]
    table = table[:table.index("};")]
    routed = {}
    for name, pattern, methods in ROUTE_LINE.findall(" ".join(table.split())):
        template = pattern
        for method in re.findall(r"M_([A-Z]+)", methods):
            routed.setdefault(template, set()).add(method)
    assert len(routed) >= 20, f"the route table was not read: {routed}"
    # The QRS callback is routed before the table (its secret is the last segment).
    routed["/qrs-notification/*"] = {"POST"}
    # So is Qlik Cloud's webhook (signed, no token: bridge/ingress/http_cloud.c).
    routed["/qlik-cloud/webhook"] = {"POST"}
    assert routed == described_routes()


@pytest.mark.parametrize("template", sorted(OPENAPI.paths))
def test_methods_not_described_are_405(api, template):
    """A method the description does not list for a path answers 405, and Allow lists
    exactly the described methods."""
    path = concrete(template)
    declared = set()  # as the router answers: every method of every route this path matches
    for pattern, methods in described_routes().items():
        if re.match("^" + re.escape(pattern).replace(r"\*", "[^/]+") + "$", path):
            declared |= methods
    if template == "/qrs-notification/{secret}":
        pytest.skip("a wrong secret is 404 whatever the method (test_notifications.py)")
    for method in ("GET", "PUT", "POST", "DELETE"):
        if method in declared:
            continue
        resp = api.call(method, path)
        assert resp.status == 405, (method, path, resp)
        assert {m.strip() for m in resp.headers["allow"].split(",")} == declared, resp.headers


# =============================================================================
# Errors as JSON
# =============================================================================

BAD_INPUTS = [
    ("/v4/mqttpublishmessage", b'{"topic": "a/b",', "not valid JSON"),
    ("/v4/mqttpublishmessage", b'{"topic": "a/b", "message": "x"} trailing', "not valid JSON"),
    ("/v4/mqttpublishmessage", b'["topic", "message"]', "object"),
    ("/v4/mqttpublishmessage", b'', "required"),
    ("/v4/mqttpublishmessage", b'{"topic": 5, "message": "x"}', "topic"),
    ("/v4/mqttpublishmessage", b'{"message": "x"}', "topic"),
    ("/v4/mqttpublishmessage", b'{"topic": "a/b"}', "message"),
    ("/v4/mqttpublishmessage", b'{"topic": "a/b", "message": {"x": 1}}', "message"),
    ("/v4/mqttpublishmessage", b'{"topic": "a/+", "message": "x"}', "topic"),
    ("/v4/mqttpublishmessage", b'{"topic": "a/b", "message": "x", "qos": 3}', "qos"),
    ("/v4/mqttpublishmessage", b'{"topic": "a/b", "message": "x", "qos": "1"}', "qos"),
    ("/v4/mqttpublishmessage", b'{"topic": "a/b", "message": "x", "retain": "yes"}', "retain"),
    ("/v4/mqttpublishmessage", b'{"topic": "a/b", "message": "\xff\xfe"}', "UTF-8"),
    ("/v4/slackpostmessage", b'{"channel": "#c", "from_user": "u"}', "msg"),
    ("/v4/slackpostmessage", b'{"channel": 1, "from_user": "u", "msg": "m"}', "channel"),
    ("/v4/slackpostmessage", b'{"channel": "#c", "from_user": "u", "msg": "m", "emoji": 1}', "emoji"),
    ("/v4/slackpostmessage", b'{"channel": "#c", "from_user": "u", "msg": "\xc0\xaf"}', "UTF-8"),
    (f"/v4/reloadtask/{TASK_SALES}/start", b'{"type": "starttaskid"}', "array"),
    (f"/v4/reloadtask/{TASK_SALES}/start", b'[1, 2', "JSON"),
    (f"/v4/reloadtask/{TASK_SALES}/start", b'[{"type": "rm -rf", "payload": {}}]', "unknown item type"),
    (f"/v4/reloadtask/{TASK_SALES}/start", b'[{"type": "starttaskid", "payload": {"taskId": 5}}]',
     "taskId"),
    (f"/v4/reloadtask/{TASK_SALES}/start", b'[{"type": "starttasktag", "payload": {"tag": "\xed\xa0\x80"}}]',
     "UTF-8"),
    # Deep nesting: cJSON recurses, CivetWeb's worker stacks are small.
    (f"/v4/reloadtask/{TASK_SALES}/start", b"[" * 900 + b"]" * 900, ""),
    (f"/v4/reloadtask/{TASK_SALES}/start", b"[" * 5000 + b"]" * 5000, ""),
    ("/v4/mqttpublishmessage", b'{"topic": "a/b", "message": "x", "n": ' + b"[" * 900 + b"]" * 900
     + b"}", ""),
    ("/v4/slackpostmessage", b'{"channel": "#c", "from_user": "u", "msg": "m", "x": '
     + b"{\"a\": " * 900 + b"1" + b"}" * 900 + b"}", ""),
    (f"/v4/reloadtask/{TASK_SALES}/start?allTaskIdsMustExist=maybe", b"", "allTaskIdsMustExist"),
    (f"/v4/reloadtask/{TASK_SALES}/start?async=sometimes", b"", "async"),
]


@pytest.mark.parametrize("path,body,needle", BAD_INPUTS, ids=lambda v: (
    v[:40].decode("latin-1") if isinstance(v, bytes) else str(v)[:40]).replace("/v4/", ""))
def test_bad_input_is_400(api, path, body, needle):
    """400 JSON errors for bad bodies and parameters; nothing is published or started."""
    method = "POST" if "reloadtask" in path else "PUT"
    resp = api.call(method, path, body, {"Content-Type": "application/json"})
    assert resp.status == 400, resp
    assert needle in resp.json["message"], resp.json
    # Nothing reached QRS, the broker topic or Slack.
    assert started_in_qrs(api.qrs) == {}
    assert not [m for m in api.observer.messages if m["topic"] in ("butler/task/start",
                                                                   "butler/slack/post")]
    assert api.sink.requests == []


def test_404_unknown_paths(api):
    for method, path in (("GET", "/v4/nope"), ("GET", "/index.html"), ("GET", "/v4"), ("GET", "/v4/"),
                         ("PUT", "/v4/reloadtask//start"), ("PUT", "/v4/reloadtask/a/b/start"),
                         ("GET", "/v4/butlerping/extra"), ("GET", "/health/x"),
                         ("DELETE", "/v4/keyvaluez/ns"), ("GET", "/V4/BUTLERPING")):
        resp = api.call(method, path)
        assert resp.status == 404, (method, path, resp)


def test_405_wrong_method(api):
    cases = (("DELETE", "/v4/butlerping", {"GET"}),
             ("GET", f"/v4/reloadtask/{TASK_SALES}/start", {"PUT", "POST"}),
             ("POST", "/v4/mqttpublishmessage", {"PUT"}),
             ("PATCH", "/v4/slackpostmessage", {"PUT"}),
             ("POST", "/health", {"GET"}),
             ("PUT", "/metrics", {"GET"}))
    for method, path, allowed in cases:
        resp = api.call(method, path)
        assert resp.status == 405, (method, path, resp)
        assert {m.strip() for m in resp.headers["allow"].split(",")} == allowed, resp.headers
    assert started_in_qrs(api.qrs) == {}


def test_415_non_json_content_type(api):
    cases = (("PUT", "/v4/mqttpublishmessage", "text/plain",
              b'{"topic": "test/http/415", "message": "x"}'),
             ("PUT", "/v4/slackpostmessage", "application/x-www-form-urlencoded",
              b"channel=%23c&from_user=u&msg=m"),
             ("POST", f"/v4/reloadtask/{TASK_SALES}/start", "text/plain",
              b'[{"type": "starttaskid", "payload": {"taskId": "x"}}]'))
    for method, path, content_type, body in cases:
        resp = api.call(method, path, body, {"Content-Type": content_type})
        assert resp.status == 415, (path, resp)
    assert started_in_qrs(api.qrs) == {}
    assert api.sink.requests == []
    # JSON with parameters is JSON.
    resp = api.call("PUT", "/v4/mqttpublishmessage", b'{"topic": "test/http/415", "message": "x"}',
                    {"Content-Type": "application/json; charset=utf-8"})
    assert resp.status == 201, resp


def test_413_declared_length(api):
    head = (b"PUT /v4/mqttpublishmessage HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000\r\n\r\n")
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        s.sendall(head)
        # Answered without the body, and the connection is closed (not held open
        # waiting for 10 MB that never come): read_until_close returns.
        data = read_until_close(s)
    resp = parse_raw_response(data)
    check_response("PUT", "/v4/mqttpublishmessage", resp)
    assert resp.status == 413, resp
    assert resp.headers.get("connection", "").lower() == "close"
    assert str(MAX_BODY) in resp.json["message"]


def test_413_chunked_and_the_exact_limit(api):
    head = (b"PUT /v4/mqttpublishmessage HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"400\r\n" + b" " * 1024 + b"\r\n"
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        s.sendall(head)
        try:
            for _ in range(MAX_BODY // 1024 + 8):
                s.sendall(chunk)
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may stop reading once it has seen enough
        resp = parse_raw_response(read_until_close(s))
    check_response("PUT", "/v4/mqttpublishmessage", resp)
    assert resp.status == 413, resp

    # A body of exactly max_body_bytes is accepted; one byte more is not.
    prefix, suffix = b'{"topic": "test/http/big", "message": "', b'"}'
    exact = prefix + b"x" * (MAX_BODY - len(prefix) - len(suffix)) + suffix
    assert len(exact) == MAX_BODY
    json_type = {"Content-Type": "application/json"}
    assert api.call("PUT", "/v4/mqttpublishmessage", exact, json_type).status == 201
    over = prefix + b"x" * (MAX_BODY + 1 - len(prefix) - len(suffix)) + suffix
    assert api.call("PUT", "/v4/mqttpublishmessage", over, json_type).status == 413
    got = api.observer.wait_for(lambda m: m["topic"] == "test/http/big")
    assert len(got[0]["payload"]) == MAX_BODY - len(prefix) - len(suffix)


def test_keep_alive_connection_reuse(api):
    """Several requests on one connection; a refused body never leaks into the next one."""
    def unknown_404s():
        samples = parse_metrics(api.call("GET", "/metrics").body.decode("utf-8"))
        return metric(samples, "butler_http_requests_total", endpoint="unknown", status="404")

    before = unknown_404s()
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    smuggled = b'GET /v4/nope HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'
    try:
        sequence = [("GET", "/v4/nope", None, 404), ("PUT", "/v4/mqttpublishmessage", b'{"bad', 400),
                    ("GET", "/v4/butlerping", None, 200),
                    # 405 before the body is read: the body (a request itself) must not be
                    # served as the next request; the server closes instead.
                    ("POST", "/v4/mqttpublishmessage", smuggled, 405),
                    ("PUT", "/v4/mqttpublishmessage", b'{"topic": "test/http/ka", "message": "k"}', 201),
                    ("GET", "/health", None, 200)]
        for method, path, body, expected in sequence:
            headers = {"Content-Type": "application/json"} if body else {}
            conn.request(method, path, body=body, headers=headers)
            raw = conn.getresponse()
            resp = Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
            check_response(method, path, resp)
            assert resp.status == expected, (method, path, resp)
            if expected == 405:
                assert resp.headers.get("connection", "").lower() == "close", resp.headers
    finally:
        conn.close()
    # Exactly the one GET /v4/nope that was sent as a request; the smuggled one was not served.
    assert unknown_404s() - before == 1


# =============================================================================
# X-HTTP-Method-Override
# =============================================================================

def test_method_override(api):
    body = {"topic": "test/http/override", "message": "via POST"}
    resp = api.call("POST", "/v4/mqttpublishmessage", body, {"X-HTTP-Method-Override": "PUT"})
    assert resp.status == 201, resp
    assert resp.json == body
    api.observer.wait_for(lambda m: m["topic"] == "test/http/override")
    # Only POST is overridden.
    resp = api.call("GET", "/v4/mqttpublishmessage", None, {"X-HTTP-Method-Override": "PUT"})
    assert resp.status == 405
    # DELETE on POST: the task-start route takes POST but not DELETE, so an honoured
    # override is refused -- and nothing starts.
    resp = api.call("POST", f"/v4/reloadtask/{TASK_SALES}/start", None,
                    {"X-HTTP-Method-Override": "DELETE"})
    assert resp.status == 405, resp
    assert started_in_qrs(api.qrs) == {}
    resp = api.call("POST", f"/v4/reloadtask/{TASK_SALES}/start", None,
                    {"X-HTTP-Method-Override": "PUT"})
    assert resp.status == 200 and ids(resp.json["tasksId"]["started"]) == [TASK_SALES]


# =============================================================================
# Tokens, the endpoint allow-list, TLS
# =============================================================================

def test_bearer_tokens(secure_env):
    env = secure_env
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKENS[0]}x"},
                    {"Authorization": f"Bearer {TOKENS[0][:-1]}"}, {"Authorization": TOKENS[0]},
                    {"Authorization": f"Basic {TOKENS[0]}"}, {"Authorization": "Bearer "}):
        resp = env.call("GET", "/v4/butlerping", headers=headers)
        assert resp.status == 401, (headers, resp)
        assert resp.headers.get("www-authenticate", "").startswith("Bearer")
    for token in TOKENS:
        resp = env.call("GET", "/v4/butlerping", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200, resp
    # A publishing endpoint refuses before doing anything.
    resp = env.call("PUT", "/v4/mqttpublishmessage", {"topic": "sec/t", "message": "x"})
    assert resp.status == 401
    resp = env.call("PUT", "/v4/mqttpublishmessage", {"topic": "sec/t", "message": "x"},
                    {"Authorization": f"Bearer {TOKENS[1]}"})
    assert resp.status == 201
    assert [m["payload"] for m in env.observer.wait_for(lambda m: m["topic"] == "sec/t")] == [b"x"]
    # Unknown /v4 paths do not reveal themselves without a token.
    assert env.call("GET", "/v4/nope").status == 401
    # /health needs no token; /metrics takes the API tokens (health.metrics_auth: token, the
    # default) and reveals nothing without one.
    assert env.call("GET", "/health").status == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        resp = env.call("GET", "/metrics", headers=headers)
        assert resp.status == 401 and b"butler_" not in resp.body, resp
        assert resp.headers.get("www-authenticate", "").startswith("Bearer")
    resp = env.call("GET", "/metrics", headers={"Authorization": f"Bearer {TOKENS[1]}"})
    assert resp.status == 200 and b"butler_http_requests_total" in resp.body, resp
    log = env.butler.log()
    assert TOKENS[0] not in log and TOKENS[1] not in log, "a bearer token leaked into the log"


@pytest.mark.parametrize("metrics_auth", ["open", "token"])
def test_metrics_auth_choice(module_dir, module_broker, metrics_auth):
    """health.metrics_auth: "open" serves /metrics without a token even with http.tokens set;
    "token" (the default) asks for one. /v4 needs its token and /health is open either way."""
    directory = tempfile.mkdtemp(prefix=f"metrics-{metrics_auth}-", dir=module_dir)
    butler = Butler(directory, module_broker, http_yaml=[f"tokens: [{TOKENS[0]}]"],
                    extra_yaml=f"health: {{ metrics_auth: {metrics_auth} }}\n").start()
    try:
        port = butler.http_port
        assert request(port, "GET", "/health").status == 200
        assert request(port, "GET", "/v4/butlerping").status == 401
        resp = request(port, "GET", "/metrics")
        if metrics_auth == "open":
            # Any of Butler's series will do: a request is counted after its answer is
            # written, so the two calls above may not be counted yet.
            assert resp.status == 200 and b"# TYPE butler_" in resp.body, resp
        else:
            assert resp.status == 401, resp
        resp = request(port, "GET", "/metrics", headers={"Authorization": f"Bearer {TOKENS[0]}"})
        assert resp.status == 200, resp
    finally:
        assert butler.stop() == 0


def test_metrics_auth_rejects_other_values(module_dir, module_broker):
    directory = tempfile.mkdtemp(prefix="metrics-bad-", dir=module_dir)
    butler = Butler(directory, module_broker, http_yaml=[],
                    extra_yaml="health: { metrics_auth: public }\n").start(wait_online=False)
    code = butler.process.wait(30)
    butler.stop()
    assert code != 0
    assert "health.metrics_auth" in butler.log() and "open" in butler.log(), butler.log()[-2000:]


def test_endpoint_allow_list(secure_env):
    auth = {"Authorization": f"Bearer {TOKENS[0]}"}
    resp = secure_env.call("GET", "/v4/configfile/endpointsenabled", headers=auth)
    assert resp.status == 200
    assert sorted(resp.json) == sorted(["butlerping", "apiListEnabledEndpoints", "mqttPublishMessage"])
    for method, path in (("GET", "/v4/base62tobase16?base62=1"), ("GET", "/v4/base16tobase62?base16=1"),
                         ("PUT", f"/v4/reloadtask/{TASK_SALES}/start"),
                         ("PUT", "/v4/slackpostmessage")):
        resp = secure_env.call(method, path, headers=auth)
        assert resp.status == 404, (path, resp)


def test_https_listener(secure_env):
    env = secure_env
    context = ssl.create_default_context(cafile=os.path.join(env.pki, "root.pem"))
    resp = request(env.tls_port, "GET", "/v4/butlerping",
                   headers={"Authorization": f"Bearer {TOKENS[0]}"}, context=context)
    assert resp.status == 200 and resp.json["response"] == "Butler reporting for duty"
    # The TLS port speaks only TLS, and the server certificate is checked by clients.
    with socket.create_connection(("127.0.0.1", env.tls_port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        try:
            data = read_until_close(s)
        except ConnectionError:
            data = b""
    assert not data.startswith(b"HTTP/1.1 200"), data[:100]
    rogue = ssl.create_default_context(cafile=os.path.join(env.pki, "rogue_ca.pem"))
    guarded(env.tls_port, "GET", "/health", context=rogue)
    # The plain listener keeps working next to it.
    assert env.call("GET", "/health").status == 200


def test_client_certificate_listener(mtls_env):
    env = mtls_env

    def context(cert):
        ctx = ssl.create_default_context(cafile=os.path.join(env.pki, "root.pem"))
        if cert:
            ctx.load_cert_chain(os.path.join(env.pki, f"{cert}.pem"),
                                os.path.join(env.pki, f"{cert}_key.pem"))
        return ctx

    guarded(env.port, "GET", "/v4/butlerping", context=context(None))
    guarded(env.port, "GET", "/v4/butlerping", context=context("rogue_client"))
    guarded(env.port, "GET", "/v4/butlerping", context=context("expired_client"))
    resp = request(env.port, "GET", "/v4/butlerping", context=context("client"))
    assert resp.status == 200, resp
    assert env.butler.process.poll() is None


# =============================================================================
# Hostile requests
# =============================================================================

HEADER_LIMIT = 16384  # request line + headers (README, "HTTP API")


def test_huge_headers_and_url(api):
    """Request line and headers over 16 KiB, or 64 header fields and more: 431 in the JSON error
    shape (not CivetWeb's 400); what cannot be parsed at all stays 400."""
    auth_free = [  # /metrics and /v4 alike: the check comes before routing
        b"GET /v4/butlerping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        b"PUT /v4/reloadtask/-/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nCookie: "
        + b"c" * (HEADER_LIMIT + 1) + b"\r\n\r\n",
        b"GET /v4/butlerping HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(300)) + b"\r\n",
        b"GET /v4/butlerping HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"".join(b"X-H%d: b\r\n" % i for i in range(70)) + b"\r\n",
        b"GET /v4/base62tobase16?base62=" + b"a" * 20000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 60000 + b"\r\n\r\n",
    ]
    before = parse_metrics(api.call("GET", "/metrics").body.decode("utf-8"))
    for data in auth_free:
        resp = parse_raw_response(raw_exchange(api.port, data))
        assert resp.status == 431, (data[:60], resp)
        check_response("GET", "/v4/butlerping", resp)  # the JSON error shape
        assert resp.json["error"] == "Request Header Fields Too Large", resp.json
        assert resp.headers.get("connection") == "close", resp.headers
    after = parse_metrics(api.call("GET", "/metrics").body.decode("utf-8"))
    name = "butler_http_requests_total"
    assert metric(after, name, endpoint="headersTooLarge", status="431") - \
        metric(before, name, endpoint="headersTooLarge", status="431") == len(auth_free)
    # Just under the limits is served.
    data = (b"GET /v4/butlerping HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Big: "
            + b"a" * (HEADER_LIMIT - 1000) + b"\r\n"
            + b"".join(b"X-H%d: b\r\n" % i for i in range(60)) + b"\r\n")
    assert parse_raw_response(raw_exchange(api.port, data)).status == 200
    # Not a header block at all, a control character in a header, and a header block past
    # CivetWeb's 64 KiB read buffer (where CivetWeb cannot tell us why): 400, same JSON shape.
    for data in (b"GARBAGE\r\n\r\n", b"GET /v4/butlerping HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x01b\r\n\r\n",
                 b"GET /v4/butlerping HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"):
        resp = parse_raw_response(raw_exchange(api.port, data))
        assert resp.status == 400, (data[:60], resp)
        check_response("GET", "/v4/butlerping", resp)
    assert api.call("GET", "/v4/butlerping").status == 200


def test_huge_body(api):
    size = 2 * 1024 * 1024
    head = (b"PUT /v4/mqttpublishmessage HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % size)
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        def send():
            try:
                s.sendall(head + b'{"topic": "test/http/huge", "message": "' + b"x" * size)
            except OSError:
                pass

        sender = threading.Thread(target=send)
        sender.start()
        data = read_until_close(s)
        sender.join(10)
    resp = parse_raw_response(data)
    check_response("PUT", "/v4/mqttpublishmessage", resp)
    assert resp.status == 413
    assert api.call("GET", "/v4/butlerping").status == 200


def test_truncated_body(api):
    head = (b"PUT /v4/mqttpublishmessage HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n")
    # Half-closed: the client still reads the answer.
    resp = parse_raw_response(raw_exchange(api.port, head + b'{"topic": "test/', shutdown=True))
    check_response("PUT", "/v4/mqttpublishmessage", resp)
    assert resp.status == 400, resp
    # Fully closed mid-body, several times: no answer to read, Butler carries on.
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
            s.sendall(head + b'{"topic": "test/http/trunc", "mess')
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
            s.sendall(b"PUT /v4/reloadtask/-/start HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n\r\n[")
    assert api.call("GET", "/v4/butlerping").status == 200
    assert not [m for m in api.observer.messages if m["topic"] in ("test/http/trunc",
                                                                   "butler/task/start")]
    assert started_in_qrs(api.qrs) == {}


def test_slowloris_does_not_block_others(api):
    request_bytes = b"GET /health HTTP/1.0\r\n\r\n"
    clients = 3
    progress = [0] * clients
    answers = [None] * clients

    def dribble(i):
        with socket.create_connection(("127.0.0.1", api.port), timeout=30) as s:
            for byte in request_bytes:
                s.sendall(bytes([byte]))
                progress[i] += 1
                time.sleep(0.2)  # the slowloris pace itself, not a wait for an event
            answers[i] = read_response(s)

    threads = [threading.Thread(target=dribble, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    wait_until(lambda: min(progress) >= 3, 10, message="slow clients connected")
    for _ in range(5):
        resp = api.call("GET", "/v4/butlerping", timeout=5)
        assert resp.status == 200
    # ... all of that while every slow client was still in the middle of its headers.
    assert max(progress) < len(request_bytes), "the slow clients finished first: no proof"
    for t in threads:
        t.join(30)
    for resp in answers:
        assert resp is not None and resp.status == 200, answers
        check_response("GET", "/health", resp)


def read_response(s):
    """One Content-Length framed answer from a keep-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return parse_raw_response(head + b"\r\n\r\n" + rest)


def test_still_alive_after_the_hostile_requests(api):
    assert api.butler.process.poll() is None
    resp = api.call("GET", "/v4/butlerping")
    assert resp.status == 200
    resp = api.call("PUT", f"/v4/reloadtask/{TASK_SALES}/start")
    assert resp.status == 200 and ids(resp.json["tasksId"]["started"]) == [TASK_SALES]
    parse_metrics(api.call("GET", "/metrics").body.decode("utf-8"))


# =============================================================================
# Timeouts and the broker outage (own broker; runs last, it freezes and kills it)
# =============================================================================

def test_task_start_pending_when_qrs_is_slow(fragile_env, qrs):
    env = fragile_env
    qrs.control("POST", "/_sim/faults", {
        "id": "slow", "match": {"method": "POST", "path_re": "/start$", "times": 1},
        "action": {"type": "delay", "ms": 2500}})
    resp = env.call("PUT", f"/v4/reloadtask/{TASK_SALES}/start", timeout=env.timeout_s + 5)
    # Acknowledged by the broker but not answered in time: 202, never a false 5xx.
    assert resp.status == 202, resp
    assert resp.json["status"] == "pending"
    result = env.observer.wait_result(resp.json["requestId"])
    assert ids(result["started"]) == [TASK_SALES]


def outage_answers(env):
    """The publishing endpoints during an outage: 503 + Retry-After, within the timeout."""
    bound = env.timeout_s + 5
    for method, path, body in (
            ("PUT", "/v4/mqttpublishmessage", {"topic": "test/outage", "message": "x"}),
            ("PUT", f"/v4/reloadtask/{TASK_HR}/start", None),
            ("POST", "/v4/reloadtask/-/start?async=true",
             [{"type": "starttaskid", "payload": {"taskId": TASK_HR}}]),
            ("PUT", "/v4/slackpostmessage", {"channel": "#c", "from_user": "u", "msg": "m"})):
        resp = env.call(method, path, body, timeout=bound)
        assert resp.status == 503, (path, resp)
        assert int(resp.headers["retry-after"]) > 0
    # Endpoints that need no broker keep answering.
    assert env.call("GET", "/v4/butlerping", timeout=bound).status == 200
    assert env.call("GET", "/metrics", timeout=bound).status == 200


def test_broker_outage_503_then_recovery(fragile_env, qrs):
    env = fragile_env
    assert env.call("PUT", "/v4/mqttpublishmessage", {"topic": "test/ok", "message": "x"}).status == 201
    broker = env.broker

    # 1. A frozen broker: the connection looks alive but nothing is acknowledged.
    broker.process.send_signal(signal.SIGSTOP)
    try:
        outage_answers(env)
    finally:
        broker.process.send_signal(signal.SIGCONT)
    wait_until(lambda: env.call("PUT", "/v4/mqttpublishmessage",
                                {"topic": "test/ok", "message": "y"},
                                timeout=env.timeout_s + 5).status == 201,
               15, interval=0.1, message="publishing to work again after SIGCONT")

    # 2. A dead broker.
    broker.stop(hard=True)
    outage_answers(env)
    health = wait_until(lambda: (lambda r: r if r.status == 503 else None)(
        env.call("GET", "/health", timeout=5)), 10, message="/health 503")
    assert health.json["status"] == "unavailable" and health.json["mqtt"] == "disconnected"
    assert int(health.headers["retry-after"]) > 0

    # 3. The broker is back: 2xx again.
    broker.start()
    wait_until(lambda: env.call("GET", "/health", timeout=5).status == 200, 15, interval=0.1,
               message="/health 200 after the broker restart")
    observer = Client(broker)
    try:
        observer.subscribe("test/#")
        assert env.call("PUT", "/v4/mqttpublishmessage",
                        {"topic": "test/back", "message": "z"}).status == 201
        observer.wait_for(lambda m: m["topic"] == "test/back")
    finally:
        observer.close()
    qrs.control("DELETE", "/_sim/calls")
    resp = env.call("PUT", f"/v4/reloadtask/{TASK_SALES}/start")
    assert resp.status == 200 and ids(resp.json["tasksId"]["started"]) == [TASK_SALES]
    assert env.butler.process.poll() is None
