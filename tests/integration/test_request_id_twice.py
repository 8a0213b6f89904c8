"""The same requestId twice, by two ways in and across a restart: a task
start asked over MQTT, Butler killed after answering, then the same
requestId again over HTTP (a load script retrying with ?requestId=) and over
MQTT. QRS must see one start; both repeats get the first answer."""
import http.client
import json
import signal

from conftest import TASK_SALES, Butler, Client, start_calls, wait_until


def qrs_starts(qrs):
    return sum(1 for c in start_calls(qrs)
               if (c.get("response") or {}).get("status") in (200, 201, 204))


def test_same_request_id_over_mqtt_then_http_after_sigkill(workdir, broker, qrs):
    butler = Butler(workdir, broker, qrs, http_yaml=["task_start_timeout_ms: 8000"]).start()
    client = Client(broker)
    client.subscribe("butler/task/result")
    client.publish("butler/task/start", json.dumps({"taskId": TASK_SALES, "requestId": "twice-1"}))
    wait_until(lambda: client.results("twice-1"), 30, message="the first answer")
    first = client.results("twice-1")[0]
    assert first["status"] == "started" and qrs_starts(qrs) == 1
    butler.process.send_signal(signal.SIGKILL)
    butler.process.wait(10)
    butler.process = None
    butler.log_file.close()
    butler.start()
    connection = http.client.HTTPConnection("127.0.0.1", butler.http_port, timeout=15)
    connection.request("PUT", f"/v4/reloadtask/{TASK_SALES}/start?requestId=twice-1",
                       headers={"Content-Length": "0"})
    answer = connection.getresponse()
    body = json.loads(answer.read() or b"{}")
    assert answer.status == 200, (answer.status, body)
    assert body.get("requestId") == "twice-1", body
    client.publish("butler/task/start", json.dumps({"taskId": TASK_SALES, "requestId": "twice-1"}))
    wait_until(lambda: len(client.results("twice-1")) >= 3, 30, message="the repeats' answers")
    assert qrs_starts(qrs) == 1, "a repeated requestId started the task again"
    answers = client.results("twice-1")
    assert all(a.get("started") == first.get("started") for a in answers), answers
    assert butler.stop() == 0
