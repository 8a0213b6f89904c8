"""A tiny spool under many commands that each note an attempt before acting
(issue 22 follow-up): notes use the last eighth of spool.max_bytes, so they
must be freed as work finishes, or every live command waits for note room
that only a finished command could free, and none finishes."""
import json
import os

from conftest import Butler, wait_until


def tiny_spool_butler(workdir, broker, extra, qrs=None):
    butler = Butler(workdir, broker, qrs, extra_yaml=extra)
    with open(butler.config_path) as f:
        text = f.read()
    with open(butler.config_path, "w") as f:
        f.write(text.replace("spool: { dir:", "spool: { max_bytes: 65536, dir:"))
    return butler


def file_answers(client):
    out = {}
    for m in list(client.messages):
        if m["topic"] == "butler/file/result":
            body = json.loads(m["payload"])
            out.setdefault(body.get("requestId"), []).append(body)
    return out


def test_many_noted_commands_through_a_tiny_spool_all_finish(workdir, broker, client):
    tree = os.path.join(workdir, "tree")
    os.makedirs(os.path.join(tree, "made"))
    extra = f"""file:
  enable: true
  workers: 4
  queue_max: 8
  mkdir: [{tree}/made]
"""
    butler = tiny_spool_butler(workdir, broker, extra).start()
    ids = [f"mk-{i}" for i in range(600)]
    for request_id in ids:
        client.publish("butler/file/mkdir", json.dumps(
            {"requestId": request_id, "directory": os.path.join(tree, "made", request_id)}))
    wait_until(lambda: set(file_answers(client)) >= set(ids), 120,
               message="all 600 mkdir answers through a 64 KiB spool")
    answers = file_answers(client)
    assert all(a["status"] == "done" for r in ids for a in answers[r])
    assert sorted(os.listdir(os.path.join(tree, "made"))) == sorted(ids)
    assert butler.stop() == 0


def test_batched_task_starts_through_a_tiny_spool_all_start(workdir, broker, qrs, client):
    """Several workers, each with a start/many batch of 50 requests whose
    attempt notes must all be recorded before the one QRS call: together more
    than the notes' eighth of a 64 KiB spool."""
    from test_exactly_once_starts import all_starts, fixture_with
    tasks = fixture_with(qrs, 40)
    butler = tiny_spool_butler(workdir, broker,
                               "task_start: { workers: 4, batch_max: 50, queue_max: 400 }\n",
                               qrs).start()
    ids = []
    for round_ in range(10):
        for i, task in enumerate(tasks):
            rid = f"b-{round_}-{i}"
            ids.append(rid)
            client.publish("butler/task/start", json.dumps({"taskId": task["id"], "requestId": rid}))

    def started():
        return {r["requestId"] for r in client.results() if r["status"] == "started"}

    wait_until(lambda: started() >= set(ids), int(os.environ.get("BREAK_WAIT", "120")), message="all 400 starts answered")  # noqa
    assert all_starts(qrs) == 400
    assert butler.stop() == 0


def test_sigkill_while_held_then_restart_starts_each_once(workdir, broker, qrs, client):
    """The same burst, Butler killed while intake is held (answers going out
    through the outlet, publishes taken back): after the restart every
    request is answered and QRS saw each start once."""
    import signal
    from test_exactly_once_starts import all_starts, fixture_with
    tasks = fixture_with(qrs, 40)
    butler = tiny_spool_butler(workdir, broker,
                               "task_start: { workers: 4, batch_max: 50, queue_max: 400 }\n",
                               qrs).start()
    ids = []
    for round_ in range(10):
        for i, task in enumerate(tasks):
            rid = f"k-{round_}-{i}"
            ids.append(rid)
            client.publish("butler/task/start", json.dumps({"taskId": task["id"], "requestId": rid}))
    wait_until(lambda: "intake held" in butler.log(), 60, message="the spool to fill")
    butler.process.send_signal(signal.SIGKILL)
    butler.process.wait(10)
    butler.process = None
    butler.log_file.close()
    killed_at = all_starts(qrs)
    butler.start()

    def started():
        return {r["requestId"] for r in client.results() if r["status"] == "started"}

    wait_until(lambda: started() >= set(ids), 120, message="all 400 starts answered")
    assert killed_at < 400, "killed after the burst: nothing was tested"
    assert all_starts(qrs) == 400, f"{all_starts(qrs)} QRS starts for 400 requests"
    assert butler.stop() == 0
