"""The MQTT link against a broker that requires TLS and a password.

A Mosquitto listener with the test PKI's server certificate and a password
file: Butler connects with mqtt.tls.ca_file and its credentials (the password
from password_file), starts a task, and never logs the password; with a wrong
password it keeps retrying, /health says 503, and it still stops cleanly.
"""
import json
import os
import signal
import ssl
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import TASK_SALES, Butler, free_port, wait_until

PASSWORD = "s3cret-broker-pass"


class TlsBroker:
    def __init__(self, directory, pki_dir):
        self.directory = directory
        self.pki_dir = pki_dir
        self.port = free_port()
        self.password_file = os.path.join(directory, "passwords")
        with open(self.password_file, "w") as f:
            f.write("")
        subprocess.run(["mosquitto_passwd", "-b", self.password_file, "butler", PASSWORD],
                       check=True)
        subprocess.run(["mosquitto_passwd", "-b", self.password_file, "tester", "tester-pass"],
                       check=True)
        self.config_path = os.path.join(directory, "mosquitto-tls.conf")
        with open(self.config_path, "w") as f:
            f.write(
                f"listener {self.port} 127.0.0.1\n"
                f"cafile {pki_dir}/root.pem\n"
                f"certfile {pki_dir}/server.pem\n"
                f"keyfile {pki_dir}/server_key.pem\n"
                "allow_anonymous false\n"
                f"password_file {self.password_file}\n"
                "max_queued_messages 0\n"
                "user root\n"
                "log_dest none\n"
            )
        self.process = subprocess.Popen(["mosquitto", "-c", self.config_path],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.accepting, 10, message="TLS broker")

    def accepting(self):
        import socket
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def client(self):
        c = mqtt.Client(client_id=f"tls-test-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=os.path.join(self.pki_dir, "root.pem"), cert_reqs=ssl.CERT_REQUIRED)
        c.username_pw_set("tester", "tester-pass")
        c.messages = []
        c.on_message = lambda cl, ud, m: c.messages.append((m.topic, m.payload))
        c.connect("localhost", self.port)
        c.loop_start()
        return c

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)


@pytest.fixture
def tls_broker(workdir, qrs):
    broker = TlsBroker(workdir, qrs.pki_dir)
    yield broker
    broker.stop()


def tls_butler(workdir, broker, qrs, password):
    secret_path = os.path.join(workdir, "mqtt-password")
    with open(secret_path, "w") as f:
        f.write(password + "\n")
    b = Butler(workdir, broker, qrs, http_yaml=[], mqtt_extra=[
        "host: localhost",
        "username: butler",
        f"password_file: {json.dumps(secret_path)}",
        f"tls: {{ enable: true, ca_file: {json.dumps(os.path.join(qrs.pki_dir, 'root.pem'))} }}",
    ])
    return b


def test_tls_and_password(workdir, tls_broker, qrs):
    b = tls_butler(workdir, tls_broker, qrs, PASSWORD).start()
    client = tls_broker.client()
    try:
        client.subscribe("butler/#", qos=1)
        wait_until(lambda: any(t == "butler/status" for t, _ in client.messages),
                   message="retained status over TLS")
        client.publish("butler/task/start", json.dumps({"taskId": TASK_SALES,
                                                        "requestId": "tls-1"}), qos=1)
        wait_until(lambda: any(t == "butler/task/result" and json.loads(p)["requestId"] == "tls-1"
                               and json.loads(p)["status"] == "started"
                               for t, p in client.messages), message="result over TLS")
    finally:
        client.loop_stop()
        client.disconnect()
        assert b.stop() == 0
    assert PASSWORD not in b.log()


def test_wrong_password_keeps_retrying_and_health_says_503(workdir, tls_broker, qrs):
    import http.client
    b = tls_butler(workdir, tls_broker, qrs, "wrong-password").start(wait_online=False)
    try:
        wait_until(lambda: "refused" in b.log(), message="the broker's refusal in the log")
        wait_until(lambda: "HTTP API listening" in b.log(), message="HTTP API")
        conn = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=5)
        conn.request("GET", "/health")
        assert conn.getresponse().status == 503
        conn.close()
        assert b.process.poll() is None
    finally:
        assert b.stop() == 0
    assert "wrong-password" not in b.log()
