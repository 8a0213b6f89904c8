"""Answers the broker refuses (issue 22, section 4).

A request whose answer the broker refuses for good (here a v5 Response Topic
outside Butler's ACL, through Mosquitto's acl_file) must not stay in the
spool: the refusal is counted and logged, the request is marked done, and a
restart does not replay it (before: it was replayed and answered at every
start). The connection is not dropped over it either.
"""
import json
import os
import types

import pytest

from conftest import Broker, Butler, Client, wait_until
from test_held_messages import Proxy

POISON_DROPS = 3  # bridge/link/mqtt_link_internal.h


@pytest.fixture
def acl_broker(workdir):
    """A broker whose ACL lets anonymous clients (Butler, the test client) use
    butler/# only: a Response Topic elsewhere is refused."""
    broker = Broker(workdir)
    acl_path = os.path.join(workdir, "acl")
    with open(acl_path, "w") as f:
        f.write("topic readwrite butler/#\n")
    with open(broker.config_path, "a") as f:
        f.write(f"acl_file {acl_path}\n")
    broker.start()
    yield broker
    broker.stop()


def kv_start(request_id):
    return json.dumps({"requestId": request_id, "items": [
        {"type": "keyvaluestore",
         "payload": {"namespace": "acl", "key": request_id, "value": "1", "ttl": 60000}}]})


def test_a_refused_response_topic_finishes_the_request(workdir, acl_broker):
    client = Client(acl_broker)
    client.subscribe("butler/#")
    butler = Butler(workdir, acl_broker, http_yaml=[]).start()
    client.publish("butler/task/start", kv_start("refused-1"), response_topic="elsewhere/replies",
                   correlation=b"c-1")
    first = client.wait_result("refused-1")
    # The answer on the result topic went out; its copy to the Response Topic was refused.
    # A request that follows is served normally. (Mosquitto 2.0.11 also drops a
    # v5 client after refusing its publish. Usually its PUBACK with the refusal
    # arrives first: one reconnect. When the close loses it, libmosquitto sends
    # the copy again after the CONNACK and it is refused again: a few short
    # connections, until the link takes it as refused, never a storm; the next
    # test makes that case certain.)
    client.publish("butler/task/start", kv_start("after-1"))
    client.wait_result("after-1")
    log = butler.log()
    assert "kept for the next start" not in log
    assert log.count("connected to 127.0.0.1") <= 2 + POISON_DROPS
    assert butler.stop() == 0

    # Restart: nothing to replay, so no second answer for the refused request.
    butler.start()
    client.publish("butler/task/start", kv_start("after-restart"))
    client.wait_result("after-restart")
    assert client.results("refused-1") == [first]
    assert "replay" not in butler.log().split("starting (config")[-1]
    assert "the broker refused the publish to elsewhere/replies" in butler.log()
    assert butler.stop() == 0
    client.close()


def test_a_publish_the_broker_closes_on_is_not_sent_after_every_connack(workdir):
    """A broker that closes the connection on a publish it refuses, before its
    refusal reaches Butler (seen with Mosquitto 2.0.11 when the close discards the
    PUBACK it had just written): libmosquitto sent the publish again after every
    CONNACK and it was refused again, a reconnect storm without end (CI saw 10
    connections in 2 s). Here a proxy closes the connection on every publish to
    elsewhere/, so the refusal is never heard: after POISON_DROPS short-lived
    connections the link takes the copy as refused, the request is finished, and
    the connection stays up."""
    broker = Broker(workdir).start()
    proxy = Proxy(broker.port)
    proxy.cut_on_publish_to = b"elsewhere/"
    client = Client(broker)
    client.subscribe("butler/#")
    butler = Butler(workdir, types.SimpleNamespace(port=proxy.port), http_yaml=[]).start()
    try:
        client.publish("butler/task/start", kv_start("cut-1"), response_topic="elsewhere/replies",
                       correlation=b"c-1")
        first = client.wait_result("cut-1")
        wait_until(lambda: "taken as refused, not sent again" in butler.log(), 60,
                   message="the copy taken as refused")
        client.publish("butler/task/start", kv_start("after-cut"))
        client.wait_result("after-cut")
        assert proxy.cuts_on_publish == POISON_DROPS
        assert butler.log().count("connected to 127.0.0.1") == 1 + POISON_DROPS
        # The answer on the result topic can come twice: a cut can fall between it
        # and its PUBACK (QoS 1, said in guarantees.md), never a different answer.
        answers = client.results("cut-1")
        assert answers and all(a == first for a in answers), answers
        assert butler.stop() == 0
        # Finished, not left in the spool: a restart neither replays nor answers it again.
        butler.start()
        client.publish("butler/task/start", kv_start("after-restart"))
        client.wait_result("after-restart")
        assert client.results("cut-1") == answers
        assert proxy.cuts_on_publish == POISON_DROPS
        assert butler.stop() == 0
    finally:
        client.close()
        proxy.close()
        broker.stop()


def test_a_refused_route_publish_is_not_retried_for_ever(workdir, acl_broker):
    """An MQTT route whose target topic the ACL refuses: the route fails for
    good (dead letter) instead of publish_reliably retrying a refusal, which
    with Mosquitto 2.0.11 (it drops the client after each refusal) was a
    reconnect storm."""
    extra = """routes:
  - name: out
    match: butler/alerts/#
    to: mqtt
    topic: elsewhere/out
"""
    client = Client(acl_broker)
    client.subscribe("butler/#")
    butler = Butler(workdir, acl_broker, extra_yaml=extra).start()
    client.publish("butler/alerts/one", json.dumps({"n": 1}))
    letter = client.wait_for(lambda m: m["topic"] == "butler/deadletter/butler/alerts/one", 15,
                             what="the route's dead letter")
    assert "elsewhere/out" in json.loads(letter[0]["payload"])["error"]
    # The connection is up again and stays up: the refusal is not retried.
    client.publish("butler/task/start", kv_start("after-route"))
    client.wait_result("after-route")
    assert butler.log().count("connected to 127.0.0.1") <= 2
    assert butler.stop() == 0
    client.close()
