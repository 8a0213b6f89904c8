"""Qlik Cloud reload events (contract 9.2, issue 28): POST /qlik-cloud/webhook with its
signature check, the three envelopes and both event types, de-duplication, the MQTT-forwarded
path, enrichment through the tenant's REST API (tests/sim/qcs_sim.py), and bad input."""
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import urllib.request

import pytest

from conftest import BUTLER_BINARY, Butler, Client, wait_until
from qcs_sim import (APP_RELOAD_FINISHED, RELOAD_FINISHED, QcsSim, post_webhook, sign,
                     webhook)

SECRET = "s3cret-for-the-prod-webhook-0123456789"
SECRET_DEV = "another-secret-for-the-dev-tenant-xyz"
RELOAD = "0123456789abcdef01234567"


def cloud_yaml(prod_url="http://127.0.0.1:9", dev_url="http://127.0.0.1:9", prod_auth=None,
               extra="", prod_ca=None):
    prod_auth = prod_auth if prod_auth is not None else "api_key: api-key-prod"
    ca_line = f'\n      ca_file: "{prod_ca}"' if prod_ca else ""
    return f"""qlik_cloud:
  tenants:
    - name: prod
      tenant_id: t-prod
      url: "{prod_url}"
      {prod_auth}
      webhook_secret: "{SECRET}"{ca_line}
    - name: dev
      tenant_id: t-dev
      url: "{dev_url}"
      webhook_secret: "{SECRET_DEV}"
{extra}"""


def tenant_yaml(sim, **kwargs):
    """cloud_yaml with the prod tenant at `sim`, trusting the simulator's test CA (ca_file)."""
    return cloud_yaml(sim.url, prod_ca=sim.ca_file, **kwargs)


def url_of(butler):
    return f"http://127.0.0.1:{butler.http_port}/qlik-cloud/webhook"


def metric(butler, name, labels):
    with urllib.request.urlopen(f"http://127.0.0.1:{butler.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return int(float(line.split()[-1]))
    return 0


def raw_post(butler, sent, declared, signature):
    """POST `sent` bytes declaring Content-Length `declared`, then half-close; the status."""
    with socket.create_connection(("127.0.0.1", butler.http_port), timeout=30) as s:
        s.sendall(b"POST /qlik-cloud/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: " +
                  str(declared).encode() + b"\r\nQlik-Signature: " + signature.encode() +
                  b"\r\n\r\n")
        try:
            s.sendall(sent)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # Butler may answer and close before reading it all
        answer = s.recv(4096)
    return int(answer.split(b" ")[1]) if answer else None


def events(client, kind="#"):
    return [json.loads(m["payload"]) for m in client.messages
            if "/events/cloud/reload/" in m["topic"]]


@pytest.fixture(scope="module")
def pki_dir():
    """The test PKI (tests/pki/make_pki.sh), made once for the module."""
    directory = tempfile.mkdtemp(prefix="butler-qcs-pki-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def tenant(pki_dir):
    """The prod tenant over HTTPS, as Qlik Cloud is: Butler trusts it through ca_file."""
    with QcsSim(tenant_id="t-prod", api_key="api-key-prod", tls=True, pki_dir=pki_dir) as sim:
        sim.add_app("app-1", "Sales", owner="user-1", tags=["butler-alert", "finance"])
        sim.add_user("user-1", "Ann Analyst", email="ann@example.com")
        sim.add_reload(RELOAD, "app-1", log="line 1\r\nline 2\r\nline 3\r\nError: boom\r\n")
        yield sim


def start(workdir, broker, yaml, env=None):
    butler = Butler(workdir, broker, extra_yaml=yaml, http_yaml=[], env=env).start()
    client = Client(broker)
    client.subscribe("butler/events/cloud/#")
    return butler, client


@pytest.mark.parametrize("envelope", ["legacy", "cloudevents", "hybrid"])
@pytest.mark.parametrize("event_type", [APP_RELOAD_FINISHED, RELOAD_FINISHED])
def test_each_envelope_and_type_becomes_one_event(workdir, broker, tenant, envelope, event_type):
    butler, client = start(workdir, broker, tenant_yaml(tenant))
    try:
        body = webhook(envelope, "t-prod", "app-1", RELOAD, status="error", event_type=event_type)
        status, text = post_webhook(url_of(butler), body, secret=SECRET)
        assert status == 204, text
        found = client.wait_for(lambda m: m["topic"] == "butler/events/cloud/reload/failed/app-1",
                                what="the cloud event")
        event = json.loads(found[0]["payload"])
        assert event["tenant"] == "prod" and event["tenantId"] == "t-prod"
        assert event["appId"] == "app-1" and event["reloadId"] == RELOAD
        assert event["status"] == "error" and event["eventId"] == body.get("id", body.get("eventId"))
        assert event["errors"], event
        assert event["durationMs"] == 65000
        assert metric(butler, "butler_cloud_webhooks_total", 'result="accepted"') == 1
    finally:
        client.close()
        butler.stop()


def test_a_successful_reload_goes_to_the_ok_topic(workdir, broker, tenant):
    butler, client = start(workdir, broker, tenant_yaml(tenant))
    try:
        body = webhook("cloudevents", "t-prod", "app-1", RELOAD, status="ok")
        assert post_webhook(url_of(butler), body, secret=SECRET)[0] == 204
        found = client.wait_for(lambda m: m["topic"] == "butler/events/cloud/reload/ok/app-1")
        assert json.loads(found[0]["payload"])["status"] == "ok"
    finally:
        client.close()
        butler.stop()


def test_two_tenants_each_with_its_own_secret(workdir, broker, tenant):
    butler, client = start(workdir, broker, tenant_yaml(tenant))
    try:
        dev = webhook("hybrid", "t-dev", "app-9", "fedcba9876543210fedcba98")
        assert post_webhook(url_of(butler), dev, secret=SECRET_DEV)[0] == 204
        found = client.wait_for(lambda m: m["topic"].endswith("/failed/app-9"))
        assert json.loads(found[0]["payload"])["tenant"] == "dev"
        # dev's secret does not sign prod's events, and the other way round.
        prod = webhook("hybrid", "t-prod", "app-1", RELOAD)
        assert post_webhook(url_of(butler), prod, secret=SECRET_DEV)[0] == 403
        assert metric(butler, "butler_cloud_webhooks_total", 'result="unknown_tenant"') == 1
    finally:
        client.close()
        butler.stop()


def test_the_same_delivery_twice_is_one_event(workdir, broker, tenant):
    butler, client = start(workdir, broker, tenant_yaml(tenant))
    try:
        body = webhook("legacy", "t-prod", "app-1", RELOAD)
        assert post_webhook(url_of(butler), body, secret=SECRET)[0] == 204
        assert post_webhook(url_of(butler), body, secret=SECRET)[0] == 204
        # The other event type for the same reload is the same reload: no second event.
        other = webhook("cloudevents", "t-prod", "app-1", RELOAD, event_type=RELOAD_FINISHED)
        assert post_webhook(url_of(butler), other, secret=SECRET)[0] == 204
        # Workers run side by side: wait for the one event and for both duplicates to be
        # counted, so every delivery was handled before counting.
        client.wait_for(lambda m: m["topic"].endswith("/app-1"))
        wait_until(lambda: metric(butler, "butler_cloud_events_total",
                                  'outcome="duplicate"') == 2, message="two duplicates")
        # A marker event after them: once it is out, the earlier ones were handled.
        marker = webhook("legacy", "t-prod", "app-2", "aaaaaaaaaaaaaaaaaaaaaaaa")
        assert post_webhook(url_of(butler), marker, secret=SECRET)[0] == 204
        client.wait_for(lambda m: m["topic"].endswith("/app-2"))
        assert len([e for e in events(client) if e["appId"] == "app-1"]) == 1
    finally:
        client.close()
        butler.stop()


def test_bad_input_gets_its_status_and_counter_and_publishes_nothing(workdir, broker, tenant):
    butler, client = start(workdir, broker, tenant_yaml(tenant))
    try:
        url = url_of(butler)
        good = json.dumps(webhook("legacy", "t-prod", "app-1", RELOAD)).encode()
        assert post_webhook(url, good)[0] == 401                                  # unsigned
        assert post_webhook(url, good, signature=sign("wrong-secret", good))[0] == 401
        assert post_webhook(url, good, signature=sign(SECRET, good)[:-2])[0] == 401
        not_json = b"{not json"
        assert post_webhook(url, not_json, secret=SECRET)[0] == 400
        shape = json.dumps({"hello": "world"}).encode()
        assert post_webhook(url, shape, secret=SECRET)[0] == 400
        no_app = webhook("cloudevents", "t-prod", "", RELOAD)
        assert post_webhook(url, no_app, secret=SECRET)[0] == 400
        stranger = webhook("cloudevents", "t-elsewhere", "app-1", RELOAD)
        assert post_webhook(url, stranger, secret=SECRET)[0] == 403
        other_type = webhook("cloudevents", "t-prod", "app-1", RELOAD,
                             event_type="com.qlik.v1.app.created")
        assert post_webhook(url, other_type, secret=SECRET)[0] == 204
        big = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        assert raw_post(butler, big[:4096], len(big), sign(SECRET, big)) == 413
        # Truncated: the declared length is longer than what is sent.
        assert raw_post(butler, good[:100], len(good), sign(SECRET, good)) == 400
        counts = {result: metric(butler, "butler_cloud_webhooks_total", f'result="{result}"')
                  for result in ("unsigned", "bad_signature", "not_json", "wrong_shape",
                                 "unknown_tenant", "ignored_type", "too_large", "unreadable", "accepted")}
        assert counts == {"unsigned": 1, "bad_signature": 2, "not_json": 1, "wrong_shape": 2,
                          "unknown_tenant": 1, "ignored_type": 1, "too_large": 1, "unreadable": 1,
                          "accepted": 0}, counts
        assert SECRET not in butler.log()
        assert butler.process.poll() is None
        assert events(client) == []
    finally:
        client.close()
        butler.stop()


def test_events_forwarded_over_mqtt_are_taken_too(workdir, broker, tenant):
    yaml = tenant_yaml(tenant, extra='  mqtt_topic: "qscloud/app/reload/#"\n')
    butler, client = start(workdir, broker, yaml)
    try:
        body = webhook("legacy", "t-prod", "app-1", RELOAD)
        client.publish("qscloud/app/reload/t-prod", json.dumps(body))
        found = client.wait_for(lambda m: m["topic"].endswith("/failed/app-1"))
        assert json.loads(found[0]["payload"])["tenant"] == "prod"
        # A forwarded event of a tenant not configured is dropped and counted.
        client.publish("qscloud/app/reload/t-x", json.dumps(webhook("legacy", "t-x", "a", "r")))
        wait_until(lambda: metric(butler, "butler_cloud_events_total",
                                  'outcome="unknown_tenant"') == 1, message="unknown tenant")
    finally:
        client.close()
        butler.stop()


def test_sigkill_after_the_204_still_sends_the_event(workdir, broker, tenant):
    tenant.delay_s = 3.0  # the worker sits in enrichment when the kill comes
    butler, client = start(workdir, broker, tenant_yaml(tenant))
    try:
        body = webhook("cloudevents", "t-prod", "app-1", RELOAD)
        assert post_webhook(url_of(butler), body, secret=SECRET)[0] == 204
        wait_until(lambda: tenant.calls, message="enrichment to begin")
        butler.process.send_signal(signal.SIGKILL)
        butler.process.wait(10)
        butler.process = None
        butler.log_file.close()
        assert events(client) == []
        tenant.delay_s = 0.0
        butler.start()
        found = client.wait_for(lambda m: m["topic"].endswith("/failed/app-1"), timeout=30)
        assert json.loads(found[0]["payload"])["eventId"] == body["id"]
        # The replay was published, not taken for a duplicate; now Qlik's resend of the same
        # event and the other event type of the same reload are duplicates of it.
        wait_until(lambda: metric(butler, "butler_cloud_events_total",
                                  'outcome="published"') == 1, message="the replay handled")
        assert_redeliveries_are_duplicates(butler, client, body)
    finally:
        client.close()
        butler.stop()


def assert_redeliveries_are_duplicates(butler, client, body):
    """Deliver `body` again and the other event type of its reload: both duplicates, and still
    exactly one event for app-1 (a marker event for app-2 shows the deliveries were handled)."""
    assert post_webhook(url_of(butler), body, secret=SECRET)[0] == 204
    other = webhook("hybrid", "t-prod", "app-1", RELOAD, event_type=RELOAD_FINISHED)
    assert post_webhook(url_of(butler), other, secret=SECRET)[0] == 204
    wait_until(lambda: metric(butler, "butler_cloud_events_total", 'outcome="duplicate"') >= 2,
               timeout=20, message="both redeliveries counted as duplicates")
    marker = webhook("legacy", "t-prod", "app-2", "bbbbbbbbbbbbbbbbbbbbbbbb")
    assert post_webhook(url_of(butler), marker, secret=SECRET)[0] == 204
    client.wait_for(lambda m: m["topic"].endswith("/app-2"), timeout=20)
    assert len([e for e in events(client) if e["appId"] == "app-1"]) == 1, events(client)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_published_reload_stays_a_duplicate_after_a_restart(workdir, broker, tenant, sig):
    """Contract 9.2: one event id (and one reload) within 24 h is one event, also across a
    restart: the reloads published are remembered in spool.dir/cloud-seen.ring."""
    butler, client = start(workdir, broker, tenant_yaml(tenant))
    try:
        body = webhook("cloudevents", "t-prod", "app-1", RELOAD)
        assert post_webhook(url_of(butler), body, secret=SECRET)[0] == 204
        client.wait_for(lambda m: m["topic"].endswith("/failed/app-1"))
        # Counted once the reload is remembered: only then is the kill past that point.
        wait_until(lambda: metric(butler, "butler_cloud_events_total",
                                  'outcome="published"') == 1, message="the event handled")
        butler.stop(sig=sig)
        butler.start()
        assert_redeliveries_are_duplicates(butler, client, body)
        assert "Qlik Cloud reload(s) published within 24 h remembered" in butler.log()
    finally:
        client.close()
        butler.stop()


def test_enrichment_with_an_api_key(workdir, broker, tenant):
    tenant.add_user("user-2", "No Mail")  # a user without an email
    tenant.add_app("app-2", "Budget", owner="user-2")
    tenant.add_reload("bbbbbbbbbbbbbbbbbbbbbbbb", "app-2", log="x\r\ny\r\n")
    butler, client = start(workdir, broker, tenant_yaml(tenant, extra="  script_log_tail_lines: 2\n"))
    try:
        assert post_webhook(url_of(butler), webhook("hybrid", "t-prod", "app-1", RELOAD),
                            secret=SECRET)[0] == 204
        event = json.loads(client.wait_for(lambda m: m["topic"].endswith("/app-1"))[0]["payload"])
        assert "enrichError" not in event, event
        assert event["appName"] == "Sales"
        assert event["owner"] == {"id": "user-1", "name": "Ann Analyst",
                                  "email": "ann@example.com"}
        assert event["appTags"] == ["butler-alert", "finance"]
        assert event["scriptLogTail"] == "line 3\nError: boom"
        assert event["startTime"] == "2026-12-07T03:00:00Z"
        assert all(c["auth"] == "Bearer api-key-prod" for c in tenant.calls)
        assert len(tenant.calls_to("/api/v1/apps/app-1/reloads/logs/")) == 1
        assert post_webhook(url_of(butler), webhook("legacy", "t-prod", "app-2",
                                                    "bbbbbbbbbbbbbbbbbbbbbbbb"),
                            secret=SECRET)[0] == 204
        event = json.loads(client.wait_for(lambda m: m["topic"].endswith("/app-2"))[0]["payload"])
        assert event["owner"] == {"id": "user-2", "name": "No Mail", "email": None}
        assert "enrichError" not in event, event
    finally:
        client.close()
        butler.stop()


def test_enrichment_failure_still_publishes_with_enrich_error(workdir, broker, tenant):
    butler, client = start(workdir, broker, tenant_yaml(tenant,
                                                       prod_auth="api_key: wrong-key"))
    try:
        assert post_webhook(url_of(butler), webhook("legacy", "t-prod", "app-1", RELOAD),
                            secret=SECRET)[0] == 204
        event = json.loads(client.wait_for(lambda m: m["topic"].endswith("/app-1"))[0]["payload"])
        assert "401" in event["enrichError"] and "wrong-key" not in event["enrichError"]
        assert event["appName"] == "Sales"  # from the webhook itself
        assert "wrong-key" not in butler.log()
    finally:
        client.close()
        butler.stop()


def test_enrichment_with_oauth_renews_the_token_before_it_expires(workdir, broker, pki_dir):
    with QcsSim(tenant_id="t-prod", api_key=None, client_id="cid", client_secret="csecret-xyz",
                token_expires_in=2, tls=True, pki_dir=pki_dir) as sim:
        sim.add_app("app-1", "Sales")
        sim.add_user("user-1", "Ann")
        sim.add_reload(RELOAD, "app-1", log="a\r\n")
        auth = "oauth: {client_id: cid, client_secret: csecret-xyz}"
        butler, client = start(workdir, broker, tenant_yaml(sim, prod_auth=auth))
        try:
            assert post_webhook(url_of(butler), webhook("legacy", "t-prod", "app-1", RELOAD),
                                secret=SECRET)[0] == 204
            event = json.loads(client.wait_for(lambda m: m["topic"].endswith("/app-1"))[0]
                               ["payload"])
            assert "enrichError" not in event, event
            assert len(sim.calls_to("/oauth/token")) == 1
            first_token = sim.calls_to("/api/v1/")[0]["auth"]
            # Let the 2 s token reach its renewal point; the next event must fetch a new one
            # before using it (no call answered 401).
            time.sleep(2.2)
            second = "cccccccccccccccccccccccc"
            sim.add_reload(second, "app-1", log="b\r\n")
            assert post_webhook(url_of(butler), webhook("legacy", "t-prod", "app-1", second),
                                secret=SECRET)[0] == 204
            client.wait_for(lambda m: m["topic"].endswith("/app-1"), count=2)
            assert len(sim.calls_to("/oauth/token")) == 2
            assert sim.calls_to("/api/v1/")[-1]["auth"] != first_token
            assert [c for c in sim.calls if c.get("status") == 401] == []
            assert "csecret-xyz" not in butler.log()
        finally:
            ALL_CALLS.extend((c["method"], c["path"]) for c in sim.calls)
            client.close()
            butler.stop()


def test_enrichment_over_plain_http_still_works(workdir, broker):
    """url accepts http:// as well as https:// (config: check_http_url): a tenant reached
    through a plain-HTTP proxy is enriched as before, ca_file unused."""
    with QcsSim(tenant_id="t-prod", api_key="api-key-prod") as sim:
        sim.add_app("app-1", "Sales", tags=["finance"])
        sim.add_user("user-1", "Ann Analyst")
        sim.add_reload(RELOAD, "app-1", log="a\r\n")
        assert sim.url.startswith("http://")
        butler, client = start(workdir, broker, cloud_yaml(sim.url))
        try:
            assert post_webhook(url_of(butler), webhook("legacy", "t-prod", "app-1", RELOAD),
                                secret=SECRET)[0] == 204
            event = json.loads(client.wait_for(lambda m: m["topic"].endswith("/app-1"))[0]
                               ["payload"])
            assert "enrichError" not in event, event
            assert event["appTags"] == ["finance"] and event["scriptLogTail"] == "a"
        finally:
            ALL_CALLS.extend((c["method"], c["path"]) for c in sim.calls)
            client.close()
            butler.stop()


@pytest.mark.parametrize("trust", ["other_ca", "system_cas"])
def test_a_tenant_certificate_not_trusted_fails_enrichment_but_the_event_goes_out(
        workdir, broker, tenant, trust):
    """Butler verifies the tenant's certificate: signed by a CA other than ca_file (or, with no
    ca_file, by none of the system's CAs) is refused at the handshake; the event still goes
    out, with an enrichError naming the certificate problem (contract 9.2)."""
    ca = os.path.join(tenant.pki_dir, "rogue_ca.pem") if trust == "other_ca" else None
    butler, client = start(workdir, broker, cloud_yaml(tenant.url, prod_ca=ca))
    try:
        body = webhook("cloudevents", "t-prod", "app-1", RELOAD)
        assert post_webhook(url_of(butler), body, secret=SECRET)[0] == 204
        event = json.loads(client.wait_for(lambda m: m["topic"].endswith("/failed/app-1"))[0]
                           ["payload"])
        assert "certificate" in event.get("enrichError", "").lower(), event
        assert event["appName"] == "Sales"  # from the webhook itself
        assert event["eventId"] == body["id"]
        assert "scriptLogTail" not in event or not event["scriptLogTail"], event
        # Not one request got past the handshake: nothing was read from an unverified peer.
        assert tenant.calls == [], tenant.calls
        assert tenant.tls_failures, "the simulator saw no refused handshake"
        wait_until(lambda: metric(butler, "butler_cloud_events_total",
                                  'outcome="published"') == 1, message="the event counted")
        assert butler.process.poll() is None
    finally:
        client.close()
        butler.stop()


SHIM = os.path.join(os.environ.get("BUTLER_BUILD_DIR", os.path.dirname(BUTLER_BINARY)),
                    "libbutler_spool_faults.so")


def unlabelled_metric(butler, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{butler.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name} ") or line.startswith(f"{name}{{}} "):
            return int(float(line.split()[-1]))
    return 0


def test_a_failed_write_to_the_seen_ring_is_counted_and_the_event_still_goes_out(
        workdir, broker, tenant):
    """The spool-faults shim (tests/shim/spool_faults.c, switch seen_eio) fails every pwrite
    to spool.dir/cloud-seen.ring: the event is published all the same, the failure is logged
    and counted in butler_cloud_dedup_unrecorded_total, Butler keeps running, and once the
    disk works again the next reload is remembered. After a restart only the reload whose
    write failed may be published again (a duplicate, never a loss)."""
    assert os.path.exists(SHIM), f"{SHIM} not built"
    faults = os.path.join(workdir, "faults")
    os.makedirs(faults)
    switch = os.path.join(faults, "seen_eio")
    env = {"LD_PRELOAD": SHIM, "BUTLER_SPOOL_FAULTS": faults,
           "ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                  "verify_asan_link_order=0"]))}
    butler, client = start(workdir, broker, tenant_yaml(tenant), env=env)
    try:
        open(switch, "w").close()  # after start-up, which writes the file's header
        lost = webhook("cloudevents", "t-prod", "app-1", RELOAD)
        assert post_webhook(url_of(butler), lost, secret=SECRET)[0] == 204
        client.wait_for(lambda m: m["topic"].endswith("/failed/app-1"))
        wait_until(lambda: unlabelled_metric(butler, "butler_cloud_dedup_unrecorded_total") == 1,
                   message="the failed write counted")
        assert "cannot write reload " + RELOAD in butler.log()
        assert butler.process.poll() is None
        os.unlink(switch)  # the disk works again
        kept_reload = "eeeeeeeeeeeeeeeeeeeeeeee"
        kept = webhook("cloudevents", "t-prod", "app-2", kept_reload)
        assert post_webhook(url_of(butler), kept, secret=SECRET)[0] == 204
        client.wait_for(lambda m: m["topic"].endswith("/failed/app-2"))
        wait_until(lambda: metric(butler, "butler_cloud_events_total",
                                  'outcome="published"') == 2, message="both published")
        assert unlabelled_metric(butler, "butler_cloud_dedup_unrecorded_total") == 1
        butler.stop()
        butler.start()
        assert "1 Qlik Cloud reload(s) published within 24 h remembered" in butler.log()
        assert post_webhook(url_of(butler), kept, secret=SECRET)[0] == 204
        wait_until(lambda: metric(butler, "butler_cloud_events_total",
                                  'outcome="duplicate"') == 1, message="app-2 a duplicate")
        assert post_webhook(url_of(butler), lost, secret=SECRET)[0] == 204
        client.wait_for(lambda m: m["topic"].endswith("/failed/app-1"), count=2)
        assert len([e for e in events(client) if e["appId"] == "app-2"]) == 1
    finally:
        client.close()
        butler.stop()


def test_429_retry_after_is_honoured(workdir, broker, tenant):
    butler, client = start(workdir, broker, tenant_yaml(tenant))
    try:
        tenant.rate_limit(times=1, retry_after=2)
        assert post_webhook(url_of(butler), webhook("legacy", "t-prod", "app-1", RELOAD),
                            secret=SECRET)[0] == 204
        event = json.loads(client.wait_for(lambda m: m["topic"].endswith("/app-1"))[0]["payload"])
        assert "enrichError" not in event, event
        limited = [c for c in tenant.calls if c.get("status") == 429]
        assert len(limited) == 1
        later = [c for c in tenant.calls if c["t"] > limited[0]["t"]]
        assert later, "no call after the 429"
        # Nothing was sent before Retry-After had passed (a lower bound: slowness only adds).
        assert later[0]["t"] - limited[0]["t"] >= 1.9
    finally:
        client.close()
        butler.stop()


def test_an_app_without_the_opt_in_tag_is_not_alerted(workdir, broker, tenant, http_sink):
    tenant.add_app("app-3", "Untagged", tags=["other"])
    tenant.add_reload("dddddddddddddddddddddddd", "app-3")
    routes = f"""routes:
  - name: cloud-failed
    match: butler/events/cloud/reload/failed/#
    to: slack
    webhook_url: "{http_sink.url}/slack"
    condition: {{ tag: butler-alert }}
"""
    butler, client = start(workdir, broker, tenant_yaml(tenant) + routes)
    try:
        assert post_webhook(url_of(butler), webhook("legacy", "t-prod", "app-3",
                                                    "dddddddddddddddddddddddd"),
                            secret=SECRET)[0] == 204
        assert post_webhook(url_of(butler), webhook("legacy", "t-prod", "app-1", RELOAD),
                            secret=SECRET)[0] == 204
        client.wait_for(lambda m: m["topic"].endswith("/app-3"))
        posts = http_sink.wait_for(count=1, timeout=15)
        text = posts[0]["json"]["text"]
        assert text.startswith("Qlik Cloud reload failed: Sales (tenant prod)"), text
        assert "Error: boom" in text
        wait_until(lambda: metric(butler, "butler_route_deliveries_total",
                                  'route="cloud-failed",outcome="condition"') == 1,
                   message="the untagged app's event refused by the condition")
        assert len(http_sink.requests) == 1
    finally:
        client.close()
        butler.stop()


# ---- docs/sense-calls.md lists every call Butler made to the tenant simulator

ALL_CALLS = []


@pytest.fixture(autouse=True)
def _collect_calls(request):
    yield
    sim = request.node.funcargs.get("tenant")
    if sim is not None:
        ALL_CALLS.extend((c["method"], c["path"]) for c in sim.calls)


def listed_cloud_calls():
    import re
    path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "sense-calls.md")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Qlik Cloud"):]
    section = section[:section.index("\n## ", 3)]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        found = re.match(r"`([^`]+)`", cells[1]) if len(cells) > 2 else None
        if found and cells[0] in ("GET", "POST"):
            regex = "^" + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(found.group(1))) + "$"
            rows.append((cells[0], re.compile(regex)))
    return rows


def test_zz_every_call_to_the_tenant_is_listed_in_sense_calls():
    rows = listed_cloud_calls()
    assert len(rows) == 6
    assert ALL_CALLS, "no test of this module called the simulator"
    assert ("POST", "/oauth/token") in ALL_CALLS, "the OAuth test did not run before this one"
    unlisted = {(m, p) for m, p in ALL_CALLS
                if not any(m == rm and rx.match(p) for rm, rx in rows)}
    assert unlisted == set(), unlisted
