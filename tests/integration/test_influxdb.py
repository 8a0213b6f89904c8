"""InfluxDB routes (contract 9.3) against a real InfluxDB 1.6 (`influxd` on free
loopback ports, its own data directories), and the v2 and v3 request shapes
against the HTTP sink (tests/sim/http_sink.py), written from InfluxDB's
documented write endpoints (reference 7.4): no InfluxDB 2 or 3 runs here."""
import gzip
import json
import os
import signal
import time
import urllib.request

import pytest

from conftest import Butler, Client, wait_until
from influx_server import InfluxServer

ROUTE = """routes:
  - name: to-influx
    match: butler/test/influx/#
    to: influxdb
    measurement: "{{kind}}"
    tags: {host: "{{host}}", task: "{{taskName}}"}
    fields: {seq: "{{seq}}", ok: "{{ok}}", message: "{{message}}"}
"""


def influx_yaml(url, extra=""):
    return f"""influxdb:
  url: {url}
  flush_ms: 50
  tags: {{site: "north pole"}}
{extra}""" + ROUTE


@pytest.fixture
def influx(workdir):
    server = InfluxServer(workdir).start()
    yield server
    server.stop()


def event(seq, **extra):
    body = {"kind": "reload", "host": "node 1", "taskName": "Reload, Sales=1", "seq": seq,
            "ok": seq % 2 == 0, "message": f"run {seq}"}
    body.update(extra)
    return json.dumps(body)


def count_points(influx, measurement="reload"):
    rows = influx.rows(f'SELECT count("seq") FROM "{measurement}"')
    return rows[0]["count"] if rows else 0


def test_points_read_back_with_every_escaping_rule(workdir, broker, influx):
    butler = Butler(workdir, broker, extra_yaml=influx_yaml(influx.url)).start()
    client = Client(broker)
    try:
        tricky = 'say "hi", a=b \\ back\nnext line ✓ Försäljning'
        client.publish("butler/test/influx/1", event(1, message=tricky,
                                                      taskName='Reload, "Sales"=1 ä\\'))
        client.publish("butler/test/influx/2", event(2, host="", logTimestamp="2026-01-02T03:04:05.678Z"))
        # Not JSON: the templates render empty, so no field: a dead letter, nothing written.
        client.publish("butler/test/influx/3", "not json")
        # The database did not exist: Butler created it.
        wait_until(lambda: count_points(influx) == 2, 20, message="2 points in InfluxDB")
        rows = sorted(influx.rows('SELECT * FROM "reload"'), key=lambda r: r["seq"])
        assert rows[0]["message"] == tricky
        assert rows[0]["task"] == 'Reload, "Sales"=1 ä/'  # no escape for a final backslash
        assert rows[0]["host"] == "node 1" and rows[0]["site"] == "north pole"
        assert rows[0]["seq"] == 1.0 and rows[0]["ok"] is False
        assert rows[1]["ok"] is True
        assert rows[1]["host"] is None  # an empty tag is left out
        # The message's own time, to the millisecond (a sequence number below it).
        assert rows[1]["time"] // 1_000_000 == 1767323045678
        assert "the measurement rendered empty" in butler.log()
    finally:
        client.close()
        butler.stop()


def test_influxdb_stopped_mid_stream_every_point_arrives_once(workdir, broker, influx):
    butler = Butler(workdir, broker, extra_yaml=influx_yaml(influx.url)).start()
    client = Client(broker)
    try:
        for i in range(50):
            client.publish(f"butler/test/influx/{i}", event(i))
        wait_until(lambda: count_points(influx) == 50, 20, message="first 50 points")
        influx.stop()
        for i in range(50, 250):
            client.publish(f"butler/test/influx/{i}", event(i))
        wait_until(lambda: "InfluxDB write failed, points wait" in butler.log(), 20,
                   message="a failed write")
        influx.start()
        for i in range(250, 300):
            client.publish(f"butler/test/influx/{i}", event(i))
        wait_until(lambda: count_points(influx) >= 300, 60, message="300 points")
        rows = influx.rows('SELECT "seq" FROM "reload"')
        assert sorted(r["seq"] for r in rows) == [float(i) for i in range(300)]
    finally:
        client.close()
        butler.stop()


def test_points_waiting_survive_a_restart_and_a_kill(workdir, broker, influx):
    influx.stop()
    butler = Butler(workdir, broker, extra_yaml=influx_yaml(influx.url)).start()
    client = Client(broker)
    try:
        for i in range(100):
            client.publish(f"butler/test/influx/{i}", event(i))
        wait_until(lambda: butler.log().count("InfluxDB write failed") >= 1, 20,
                   message="a failed write")
        assert butler.stop() == 0
        butler.start()
        for i in range(100, 150):
            client.publish(f"butler/test/influx/{i}", event(i))
        time.sleep(0.5)  # let some points reach the spool before the kill (any split is fine)
        butler.stop(signal.SIGKILL)
        influx.start()
        butler.start()
        wait_until(lambda: count_points(influx) >= 150, 60, message="150 points")
        rows = influx.rows('SELECT "seq" FROM "reload"')
        assert sorted(r["seq"] for r in rows) == [float(i) for i in range(150)]
    finally:
        client.close()
        butler.stop()


def test_a_refused_point_goes_to_the_dead_letters_the_rest_is_written(workdir, broker, influx):
    influx.query('CREATE DATABASE "butler"')
    influx.write('reload seq=-1,message="first",ok=true 1000000000')  # sets the field types
    butler = Butler(workdir, broker,
                    extra_yaml=influx_yaml(influx.url, "  flush_ms: 1000\n").replace(
                        "  flush_ms: 50\n", "", 1), http_yaml=[]).start()
    client = Client(broker)
    client.subscribe("butler/deadletter/#")
    try:
        # One batch of 30: message 17's "ok" is text where InfluxDB has booleans.
        for i in range(1, 31):
            client.publish(f"butler/test/influx/{i}", event(i, ok="maybe") if i == 17 else event(i))
        letters = client.wait_for(lambda m: m["topic"].startswith("butler/deadletter/"), 20,
                                  what="a dead letter")
        letter = json.loads(letters[0]["payload"])
        assert letters[0]["topic"] == "butler/deadletter/butler/test/influx/17"
        assert "field type conflict" in letter["error"]
        assert 'ok="maybe"' in letter["payload"] and "seq=17" in letter["payload"]
        wait_until(lambda: count_points(influx) == 30, 20, message="the other points")
        assert sorted(r["seq"] for r in influx.rows('SELECT "seq" FROM "reload"')) == \
            [-1] + [i for i in range(1, 31) if i != 17]
        assert len([m for m in client.messages if m["topic"].startswith("butler/deadletter/")]) == 1
        def metrics():
            with urllib.request.urlopen(f"http://127.0.0.1:{butler.http_port}/metrics") as r:
                return r.read().decode()
        # Counted right after InfluxDB answered: wait for it.
        wait_until(lambda: 'butler_influxdb_points_total{outcome="written"} 29' in metrics(), 10,
                   message="29 points counted written")
        text = metrics()
        assert 'butler_influxdb_points_total{outcome="refused"} 1' in text
        assert 'butler_influxdb_writes_total{outcome="refused"} 1' in text
    finally:
        client.close()
        butler.stop()


def test_v1_basic_auth_password_file_never_logged(workdir, broker, http_sink):
    secret = os.path.join(workdir, "influx-password")
    with open(secret, "w") as f:
        f.write("pa55-w0rd-xyz\n")
    extra = f"  username: writer\n  password_file: {secret}\n  retention_policy: autogen\n"
    butler = Butler(workdir, broker, extra_yaml=influx_yaml(http_sink.url, extra)).start()
    client = Client(broker)
    try:
        client.publish("butler/test/influx/1", event(1))
        request = http_sink.wait_for(1, 20)[0]
        assert request["path"] == "/write"
        assert request["query"] == "db=butler&rp=autogen&precision=ns"
        import base64
        assert request["headers"]["authorization"] == \
            "Basic " + base64.b64encode(b"writer:pa55-w0rd-xyz").decode()
        assert "pa55-w0rd-xyz" not in butler.log()
    finally:
        client.close()
        butler.stop()


def test_v2_request_shape_token_file_and_gzip(workdir, broker, http_sink):
    token = os.path.join(workdir, "influx-token")
    with open(token, "w") as f:
        f.write("tok-SECRET-123\n")
    extra = f"  version: 2\n  org: my org\n  bucket: butler/raw\n  token_file: {token}\n"
    butler = Butler(workdir, broker, extra_yaml=influx_yaml(http_sink.url, extra)).start()
    client = Client(broker)
    try:
        client.publish("butler/test/influx/1", event(1))
        request = http_sink.wait_for(1, 20)[0]
        assert request["method"] == "POST" and request["path"] == "/api/v2/write"
        assert request["query"] == "org=my%20org&bucket=butler%2Fraw&precision=ns"
        assert request["headers"]["authorization"] == "Token tok-SECRET-123"
        assert request["headers"]["content-type"].startswith("text/plain")
        assert "content-encoding" not in request["headers"]  # small: not worth compressing
        line = request["body"].decode()
        assert line.startswith('reload,host=node\\ 1,task=Reload\\,\\ Sales\\=1,site=north\\ pole ')
        assert 'seq=1,ok=false,message="run 1" ' in line and line.endswith("\n")
        # A big batch goes gzip-compressed.
        http_sink.reset()
        for i in range(200):
            client.publish(f"butler/test/influx/{i}", event(i, message="x" * 40))
        requests = http_sink.wait_for(1, 20)
        big = [r for r in requests if r["headers"].get("content-encoding") == "gzip"]
        assert big, "no gzip-compressed write"
        assert gzip.decompress(big[0]["body"]).decode().count("\n") >= 2
        assert "tok-SECRET-123" not in butler.log()
    finally:
        client.close()
        butler.stop()


def test_v3_request_shape_and_retry_on_503(workdir, broker, http_sink):
    extra = "  version: 3\n  database: sense\n  token: apiv3_tok\n"
    http_sink.fail(503, times=2)
    butler = Butler(workdir, broker, extra_yaml=influx_yaml(http_sink.url, extra)).start()
    client = Client(broker)
    try:
        client.publish("butler/test/influx/1", event(1))
        requests = http_sink.wait_for(3, 30)
        assert [r["status"] for r in requests[:3]] == [503, 503, 200]
        for r in requests[:3]:
            assert r["path"] == "/api/v3/write_lp"
            assert r["query"] == "db=sense&precision=nanosecond"
            assert r["headers"]["authorization"] == "Bearer apiv3_tok"
        # The same point each time (same timestamp: writing it twice changes nothing).
        assert requests[0]["body"] == requests[2]["body"]
        time.sleep(0.3)
        assert len(http_sink.requests) == 3
    finally:
        client.close()
        butler.stop()


def test_node_measurements_as_the_nodejs_butler_writes_them(workdir, broker, influx):
    extra = "  node_measurements: true\n  butler_interval_s: 1\n"
    butler = Butler(workdir, broker, extra_yaml=influx_yaml(influx.url, extra)).start()
    client = Client(broker)
    try:
        failed = {"type": "failed", "host": "sense1", "taskName": "Reload Sales", "appName": "Sales",
                  "user": "INTERNAL\\sa_scheduler", "taskId": "t-1", "appId": "a-1",
                  "logTimestamp": "2024-05-01 02:30:11,123", "level": "ERROR",
                  "executionId": "e-1", "message": "Reload failed",
                  "receivedAt": "2024-05-01T00:30:11.140Z",
                  "qrs": {"taskTags": ["nightly"], "appTags": ["finance"],
                          "executionStatus": "FinishedFail",
                          "scriptLogTail": "Line 1\nError: Field 'Amount' not found"}}
        client.publish("butler/events/task/failed/t-1", json.dumps(failed))
        client.publish("butler/sense/license/access", json.dumps(
            {"professional": {"allocated": 10, "available": 2, "excess": 0, "quarantined": 1,
                              "total": 13, "used": 8}}), retain=True)
        client.publish("butler/sense/license/server", json.dumps(
            {"expired": False, "expiresAt": "2027-01-01", "daysLeft": 25}), retain=True)

        def rows(measurement):
            return influx.rows(f'SELECT * FROM "{measurement}"')
        wait_until(lambda: rows("reload_task_failed") and rows("qlik_sense_license")
                   and rows("qlik_sense_server_license") and rows("butler_memory_usage"), 20,
                   message="the node measurements")
        row = rows("reload_task_failed")[0]
        assert row["task_name"] == "Reload Sales" and row["task_id"] == "t-1"
        assert row["user"] == "INTERNAL\\sa_scheduler" and row["log_level"] == "ERROR"
        assert row["taskTag_nightly"] == "true" and row["appTag_finance"] == "true"
        assert row["task_exeuctionStatusText"] == "FinishedFail"
        assert row["scriptLog"] == "Line 1\nError: Field 'Amount' not found"
        assert row["log_message"] == "Reload failed" and row["execution_id"] == "e-1"
        assert row["site"] == "north pole"
        license_row = rows("qlik_sense_license")[0]
        assert license_row["license_type"] == "professional" and license_row["used"] == 8
        server = rows("qlik_sense_server_license")[0]
        assert server["license_expired"] is False and server["days_until_expiry"] == 25
        memory = rows("butler_memory_usage")[0]
        assert memory["process_memory"] > 0 and memory["version"]
        # The user's own route saw the failed event too: not matched (different topic).
        assert rows("reload") == []
    finally:
        client.publish("butler/sense/license/access", b"", retain=True)
        client.publish("butler/sense/license/server", b"", retain=True)
        client.close()
        butler.stop()
