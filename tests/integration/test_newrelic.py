"""New Relic endpoints and route headers (contract 8.3): the real binary and broker,
the HTTP sink standing in for New Relic's event and metric APIs and for a webhook."""
import json
import time
import urllib.error
import urllib.request

from conftest import Butler, Client


def newrelic_yaml(http_sink):
    return f"""newrelic:
  accounts:
    - {{name: prod, account_id: "1234567", api_key: NRAK-PRODKEY}}
    - {{name: eu, account_id: "7654321", api_key: NRAK-EUKEY}}
  event_url: "{http_sink.url}"
  metric_url: "{http_sink.url}/metric/v1"
  attributes: [{{name: service, value: butler}}]
"""


def post(butler, path, body, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{butler.http_port}{path}", data=data,
                                     method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_event_reaches_every_account_with_its_api_key(workdir, broker, http_sink):
    butler = Butler(workdir, broker, extra_yaml=newrelic_yaml(http_sink), http_yaml=[]).start()
    try:
        before = time.time() * 1000
        status, text = post(butler, "/v4/newrelic/event", {
            "eventType": "qs_reloadCheck", "timestamp": 1767225600000,
            "attributes": [{"name": "app", "value": "Sales"}, {"name": "rows", "value": 3},
                           {"name": "service", "value": "override"}]})
        assert (status, text) == (202, "Accepted")
        sent = http_sink.wait_for(2)
        by_path = {r["path"]: r for r in sent}
        assert set(by_path) == {"/v1/accounts/1234567/events", "/v1/accounts/7654321/events"}
        prod = by_path["/v1/accounts/1234567/events"]
        assert prod["method"] == "POST" and prod["headers"]["api-key"] == "NRAK-PRODKEY"
        assert by_path["/v1/accounts/7654321/events"]["headers"]["api-key"] == "NRAK-EUKEY"
        assert prod["headers"]["content-type"] == "application/json"
        assert prod["json"] == [{"service": "override", "app": "Sales", "rows": 3,
                                 "eventType": "qs_reloadCheck", "timestamp": 1767225600000}]
        # Without a timestamp the event is stamped now.
        http_sink.reset()
        assert post(butler, "/v4/newrelic/event", {"eventType": "qs_ping"})[0] == 202
        event = http_sink.wait_for(2)[0]["json"][0]
        assert event["service"] == "butler" and event["timestamp"] >= before
        assert "NRAK" not in butler.log()
    finally:
        butler.stop()


def test_metric_reaches_the_metric_api_in_its_shape(workdir, broker, http_sink):
    butler = Butler(workdir, broker, extra_yaml=newrelic_yaml(http_sink), http_yaml=[]).start()
    try:
        status, text = post(butler, "/v4/newrelic/metric", {
            "name": "qs_appsLoaded", "type": "gauge", "value": 42.5, "timestamp": 1767225600000,
            "interval": 60000, "attributes": [{"name": "host", "value": "sense-node-01"}]})
        assert (status, text) == (202, "Accepted")
        sent = http_sink.wait_for(2)
        assert {r["path"] for r in sent} == {"/metric/v1"}
        assert {r["headers"]["api-key"] for r in sent} == {"NRAK-PRODKEY", "NRAK-EUKEY"}
        assert sent[0]["json"] == [{
            "common": {"attributes": {"service": "butler"}},
            "metrics": [{"name": "qs_appsLoaded", "type": "gauge", "value": 42.5,
                         "timestamp": 1767225600000, "interval.ms": 60000,
                         "attributes": {"host": "sense-node-01"}}]}]
    finally:
        butler.stop()


def test_bad_bodies_are_refused_and_nothing_is_posted(workdir, broker, http_sink):
    butler = Butler(workdir, broker, extra_yaml=newrelic_yaml(http_sink), http_yaml=[]).start()
    try:
        assert post(butler, "/v4/newrelic/event", {"attributes": []})[0] == 400
        assert post(butler, "/v4/newrelic/event", [1, 2])[0] == 400
        assert post(butler, "/v4/newrelic/event", b"{not json")[0] == 400
        assert post(butler, "/v4/newrelic/event", {"eventType": "x"}, "text/plain")[0] == 415
        status, text = post(butler, "/v4/newrelic/metric", {"name": "m", "value": "high"})
        assert status == 400 and "value" in json.loads(text)["message"]
        assert post(butler, "/v4/newrelic/metric", {"name": "m", "type": "count", "value": 1})[0] == 400
        assert post(butler, "/v4/newrelic/event",
                    {"eventType": "x", "attributes": [{"name": "a", "value": {"deep": 1}}]})[0] == 400
        assert http_sink.requests == []
    finally:
        butler.stop()


def test_new_relic_errors_are_retried_then_reported(workdir, broker, http_sink):
    butler = Butler(workdir, broker, extra_yaml=newrelic_yaml(http_sink), http_yaml=[]).start()
    watcher = Client(broker)
    watcher.subscribe("butler/deadletter/#")
    try:
        http_sink.fail(503, times=1)
        assert post(butler, "/v4/newrelic/event", {"eventType": "qs_retry"})[0] == 202
        assert [r["status"] for r in http_sink.wait_for(3)] == [503, 200, 200]  # retried, both accounts
        http_sink.reset()
        http_sink.fail(403, times=10)  # a refused key is not retried
        status, text = post(butler, "/v4/newrelic/event", {"eventType": "qs_denied"})
        assert status == 502 and "prod" in json.loads(text)["message"]
        letter = json.loads(watcher.wait_for(
            lambda m: m["topic"] == "butler/deadletter/butler/newrelic/event")[0]["payload"])
        assert letter["attempts"] == 1 and "qs_denied" in letter["payload"]
    finally:
        watcher.close()
        butler.stop()


def test_route_headers_make_a_webhook_speak_influxdb_line_protocol(workdir, broker, http_sink):
    extra = f"""routes:
  - name: influx
    match: butler/events/task/failed/#
    to: webhook
    webhook_url: "{http_sink.url}/api/v2/write?org=qlik&bucket=butler"
    headers: {{Authorization: "Token influx-secret", Content-Type: "text/plain; charset=utf-8"}}
    template: "reload_failed,task={{{{taskId}}}} host=\\"{{{{host}}}}\\""
"""
    butler = Butler(workdir, broker, extra_yaml=extra).start()
    client = Client(broker)
    try:
        client.publish("butler/events/task/failed/t1", json.dumps({"taskId": "t1", "host": "node1"}))
        request = http_sink.wait_for(1)[0]
        assert request["path"] == "/api/v2/write" and request["query"] == "org=qlik&bucket=butler"
        assert request["headers"]["authorization"] == "Token influx-secret"
        assert request["headers"]["content-type"] == "text/plain; charset=utf-8"
        assert request["body"] == b'reload_failed,task=t1 host="node1"'
        assert "influx-secret" not in butler.log()
    finally:
        client.close()
        butler.stop()
