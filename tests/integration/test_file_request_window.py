"""File commands have a requestId window, as task starts do (issue 22 section
3): a file command redelivered with the requestId of one that finished gets
the earlier answer and does not run again, also after a restart (the answer
is kept with its DONE record, family "file", and recovery hands it back).
"""
import json
import os

from conftest import Client, wait_until
from test_exactly_once_files_apps import file_butler


def answers_for(client, request_id):
    return [json.loads(m["payload"]) for m in client.messages
            if m["topic"] == "butler/file/result"
            and json.loads(m["payload"]).get("requestId") == request_id]


def test_repeated_file_request_id_is_answered_not_run_again(workdir, broker):
    butler, tree = file_butler(workdir, broker)
    victim = os.path.join(tree, "archive", "victim.qvd")
    request = json.dumps({"requestId": "del-once", "deleteFile": victim})
    with open(victim, "w") as f:
        f.write("first")
    client = Client(broker)
    client.subscribe("butler/file/result")
    butler.start()
    client.publish("butler/file/delete", request)
    wait_until(lambda: len(answers_for(client, "del-once")) == 1, 30, message="first answer")
    assert answers_for(client, "del-once")[0]["status"] == "done"
    assert not os.path.exists(victim)
    # A new file of the same name; the same request again (a client's retry).
    with open(victim, "w") as f:
        f.write("second")
    client.publish("butler/file/delete", request)
    wait_until(lambda: len(answers_for(client, "del-once")) == 2, 30, message="repeat answered")
    assert answers_for(client, "del-once")[1] == answers_for(client, "del-once")[0]
    assert os.path.exists(victim), "the repeated requestId ran the delete again"
    # After a restart the answer comes back from the spool's DONE record.
    assert butler.stop() == 0
    butler.start()
    client.publish("butler/file/delete", request)
    wait_until(lambda: len(answers_for(client, "del-once")) == 3, 30,
               message="repeat after a restart answered")
    answers = answers_for(client, "del-once")
    assert butler.stop() == 0
    client.close()
    assert answers[2] == answers[0]
    assert os.path.exists(victim), "after a restart the repeated requestId ran the delete again"
