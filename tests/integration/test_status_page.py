"""The status page (contract 9.4, issue 30): GET /v4/status and its recent
lists, fed by what Butler publishes, each answer validated against
docs/api/openapi.json; and the page itself in a real headless Chromium. The
real binary, a real broker, the QRS simulator and the log-appender emulator;
every wait polls with a deadline."""
import json
import signal
import urllib.error
import urllib.request

import pytest

from conftest import TASK_SALES, Butler, wait_until
from test_events import Udp, datagram, guid
from test_http_api import OPENAPI, OPENAPI_DOC, validate

TOKEN = "status-page-token-1"
XSS_NAME = "<img src=x onerror=alert(1)>"


@pytest.fixture
def start_butler(workdir, broker):
    started = []

    def make(http_yaml=(), **kwargs):
        b = Butler(workdir, broker, udp=True, http_yaml=list(http_yaml), **kwargs)
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop(signal.SIGKILL)


def get(butler, path, token=None):
    request = urllib.request.Request(f"http://127.0.0.1:{butler.http_port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=5) as r:
        return r.status, dict(r.headers), r.read()


def status(butler, token=None):
    code, headers, body = get(butler, "/v4/status", token)
    assert code == 200
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    value = json.loads(body)
    declared = OPENAPI.response("GET", "/v4/status", 200)
    validate(value, declared["content"]["application/json"]["schema"], "GET /v4/status",
             document=OPENAPI_DOC)
    return value


def wait_status(butler, predicate, what, token=None, timeout=10.0):
    found = []

    def check():
        value = status(butler, token)
        if predicate(value):
            found.append(value)
            return True
        return False

    wait_until(check, timeout, interval=0.1, message=what)
    return found[-1]


def test_status_shows_task_results_and_failed_reloads(start_butler, qrs, client):
    butler = start_butler(qrs=qrs)
    first = status(butler)
    assert first["broker"]["state"] == "connected" and first["broker"]["since"]
    assert first["qrs"]["state"] in ("unknown", "ok")
    assert first["recent"] == {"taskResults": [], "finished": [], "events": [],
                               "deadLetters": []}
    client.publish("butler/task/start", TASK_SALES)
    task_id = guid()
    Udp(butler.udp_port).send(datagram("butler-v15", "task-failed", task_id=task_id,
                                       task_name="Nightly Finance"))
    value = wait_status(butler, lambda v: v["recent"]["taskResults"] and v["recent"]["events"],
                        "a task result and an event on /v4/status")
    result = value["recent"]["taskResults"][0]
    assert result["topic"] == "butler/task/result"
    assert result["payload"]["started"][0]["taskId"] == TASK_SALES
    event = value["recent"]["events"][0]
    assert event["topic"].startswith(f"butler/events/task/failed/{task_id}")
    assert event["payload"]["taskName"] == "Nightly Finance"
    assert value["qrs"]["state"] == "ok" and value["qrs"]["lastOkAt"]
    assert value["qrsUrl"].startswith("https://localhost:")


def test_recent_lists_hold_the_newest_fifty(start_butler):
    butler = start_butler()
    udp = Udp(butler.udp_port)
    ids = [guid() for _ in range(60)]
    for task_id in ids:
        udp.send(datagram("butler-v15", "task-failed", task_id=task_id))
    value = wait_status(butler, lambda v: v["recent"]["events"] and
                        v["recent"]["events"][0]["payload"]["taskId"] == ids[-1] and
                        len(v["recent"]["events"]) == 50, "the 60th event")
    # Newest first, the ten oldest gone (UDP keeps their order on loopback).
    assert [e["payload"]["taskId"] for e in value["recent"]["events"]] == ids[:-51:-1]


def test_status_needs_a_token_and_masks_secrets(start_butler):
    butler = start_butler(http_yaml=[f"tokens: [{TOKEN}]"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        get(butler, "/v4/status")
    assert refused.value.code == 401
    value = status(butler, TOKEN)
    assert TOKEN not in value["config"]
    assert "tokens:" in value["config"] and "***" in value["config"]
