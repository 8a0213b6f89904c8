"""A request at the spool's per-request notes limit (SPOOL_NOTES_MAX, 4,096)
fails with a clear reason instead of waiting until shutdown (issue 22, debt of
section 5): the limit is final for that request, unlike a full spool.

Each test crafts a spool whose one unfinished request already carries 4,096
notes (none of them an attempt), so its replay's attempt note hits the limit.
Before the limit had a status of its own (BUTLER_ERR_LIMIT) the note wait took
it for a full spool and waited: no answer came until SIGTERM.
"""
import json
import time

from conftest import Butler, Client, start_calls, wait_until
from test_exactly_once_files_apps import file_butler, file_results, write_spool
from test_exactly_once_starts import ADD, PROGRESS, fixture_with, message_record, spool_record

NOTES_MAX = 4096


def filler_notes(record_id, now_ms):
    return [spool_record(PROGRESS, record_id, now_ms - 1000, f"filler {i}".encode())
            for i in range(NOTES_MAX)]


def test_task_start_at_the_notes_limit_fails_with_a_reason(workdir, broker, qrs):
    task = fixture_with(qrs, 1)[0]
    butler = Butler(workdir, broker, qrs)
    butler.start()  # creates the state directory
    assert butler.stop() == 0
    now_ms = int(time.time() * 1000)
    request = json.dumps({"taskId": task["id"], "requestId": "at-limit"}).encode()
    write_spool(workdir, [
        spool_record(ADD, 1, now_ms - 2000, message_record(
            "task_start", "butler/task/start", request, now_ms - 2000)),
    ] + filler_notes(1, now_ms))
    results = Client(broker)
    results.subscribe("butler/task/result")
    butler.start()
    wait_until(lambda: results.results("at-limit"), 30,
               message="the request at the notes limit answered (not held until shutdown)")
    answer = results.results("at-limit")[0]
    assert butler.stop() == 0
    results.close()
    assert not start_calls(qrs, task["id"]), "started without its attempt note"
    assert answer["status"] != "started", answer
    assert "limit of 4096 notes" in json.dumps(answer), answer


def test_file_command_at_the_notes_limit_fails_with_a_reason(workdir, broker):
    butler, tree = file_butler(workdir, broker)
    butler.start()
    assert butler.stop() == 0
    now_ms = int(time.time() * 1000)
    target = f"{tree}/archive/kept.qvd"
    with open(target, "w") as f:
        f.write("data")
    write_spool(workdir, [
        spool_record(ADD, 1, now_ms - 2000, message_record(
            "file", "butler/file/delete",
            json.dumps({"requestId": "file-at-limit", "deleteFile": target}).encode(),
            now_ms - 2000)),
    ] + filler_notes(1, now_ms))
    client = Client(broker)
    client.subscribe("butler/file/result")
    butler.start()
    wait_until(lambda: "file-at-limit" in file_results(client), 30,
               message="the file command at the notes limit answered")
    answer = file_results(client)["file-at-limit"]
    assert butler.stop() == 0
    client.close()
    assert answer["status"] != "done", answer
    assert "limit of 4096 notes" in json.dumps(answer), answer
    with open(target) as f:  # not deleted: no call before its note
        assert f.read() == "data"
