"""File commands and app reloads replayed after a crash decide from their own
attempt notes (issue 22 section 2), with spools crafted as a crash leaves them.

- A replayed delete of a file that never existed is refused (not_found), not
  answered done; with its attempt noted (the file was there) and the file gone,
  it is done.
- A replayed copy without a requestId finds and removes the temporary file
  its crashed run left (the id, and the temporary file's token, are stable).
- A replayed app reload whose attempt was never noted reloads, even when
  someone else reloaded the app after the request arrived.
"""
import json
import os
import time

from conftest import Butler, Client, wait_until
from test_exactly_once_starts import ADD, PROGRESS, message_record, spool_record
from test_app import APP_SALES, app_result, engine, engine_module, start_butler  # noqa: F401


def file_butler(workdir, broker):
    tree = os.path.join(workdir, "tree")
    for name in ("stage", "prod", "archive"):
        os.makedirs(os.path.join(tree, name), exist_ok=True)
    extra = f"""file:
  enable: true
  copy: [{{from: {tree}/stage, to: {tree}/prod}}]
  delete: [{tree}/archive]
"""
    return Butler(workdir, broker, extra_yaml=extra), tree


def write_spool(workdir, records):
    with open(os.path.join(workdir, "state", "spool.log"), "wb") as f:
        f.write(b"".join(records))


def file_results(client):
    return {json.loads(m["payload"])["requestId"]: json.loads(m["payload"])
            for m in client.messages if m["topic"] == "butler/file/result"}


def temp_token(request_id):
    """topics/file.c temp_token: FNV-1a of the requestId, 16 hex digits."""
    value = 1469598103934665603
    for byte in request_id.encode():
        value = ((value ^ byte) * 1099511628211) % (1 << 64)
    return f"{value:016x}"


def test_replayed_deletes_decide_from_their_attempt_note(workdir, broker):
    butler, tree = file_butler(workdir, broker)
    butler.start()
    assert butler.stop() == 0
    now = int(time.time() * 1000)
    never = os.path.join(tree, "archive", "never-existed.qvd")
    gone = os.path.join(tree, "archive", "deleted-before-crash.qvd")
    write_spool(workdir, [
        spool_record(ADD, 1, now - 3000, message_record(
            "file", "butler/file/delete",
            json.dumps({"requestId": "del-never", "deleteFile": never}).encode(), now - 3000)),
        spool_record(ADD, 2, now - 2000, message_record(
            "file", "butler/file/delete",
            json.dumps({"requestId": "del-gone", "deleteFile": gone}).encode(), now - 2000)),
        # Its attempt saw the file; the crash came after the unlink, before "done".
        spool_record(PROGRESS, 2, now - 1900, b"attempt source=1 target=0"),
    ])
    client = Client(broker)
    client.subscribe("butler/file/result")
    butler.start()
    wait_until(lambda: {"del-never", "del-gone"} <= set(file_results(client)), 30,
               message="both replays answered")
    results = file_results(client)
    assert butler.stop() == 0
    client.close()
    assert results["del-never"]["status"] == "refused", results["del-never"]
    assert results["del-never"]["reason"] == "not_found"
    assert results["del-gone"]["status"] == "done", results["del-gone"]


def test_replayed_copy_without_request_id_removes_its_temporary_file(workdir, broker):
    butler, tree = file_butler(workdir, broker)
    butler.start()
    assert butler.stop() == 0
    source = os.path.join(tree, "stage", "data.qvd")
    target = os.path.join(tree, "prod", "data.qvd")
    with open(source, "wb") as f:
        f.write(b"qvd" * 1000)
    now = int(time.time() * 1000)
    write_spool(workdir, [
        spool_record(ADD, 7, now - 2000, message_record(
            "file", "butler/file/copy",
            json.dumps({"fromFile": source, "toFile": target}).encode(), now - 2000)),
        spool_record(PROGRESS, 7, now - 1900, b"attempt source=1 target=0"),
    ])
    # What the crashed run left: its temporary file, named with its token.
    stale = os.path.join(tree, "prod",
                         f".butler-tmp-{temp_token(f'spool-7-{now - 2000}')}-abcdef.tmp")
    with open(stale, "wb") as f:
        f.write(b"qvd" * 100)
    client = Client(broker)
    client.subscribe("butler/file/result")
    butler.start()
    wait_until(lambda: f"spool-7-{now - 2000}" in file_results(client), 30,
               message="the replayed copy answered")
    result = file_results(client)[f"spool-7-{now - 2000}"]
    assert butler.stop() == 0
    client.close()
    assert result["status"] == "done", result
    with open(target, "rb") as f:
        assert f.read() == b"qvd" * 1000
    leftovers = [n for n in os.listdir(os.path.join(tree, "prod")) if n.startswith(".butler-tmp-")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_replayed_reload_without_attempt_is_not_answered_by_another_reload(
        workdir, broker, client, qrs, engine):
    butler = start_butler(workdir, broker, qrs, engine)
    assert butler.stop() == 0
    arrived = int(time.time() * 1000) - 5000
    # Someone else's reload of the same app after the request arrived.
    other = start_butler(workdir, broker, qrs, engine)
    client.publish("butler/app/reload", json.dumps({"appId": APP_SALES, "requestId": "other"}))
    assert app_result(client, "other")["status"] == "done"
    assert other.stop() == 0
    reloads_before = len(engine.calls("DoReloadEx"))
    write_spool(workdir, [
        spool_record(ADD, 3, arrived, message_record(
            "app", "butler/app/reload",
            json.dumps({"appId": APP_SALES, "requestId": "mine", "reloadMode": 1,
                        "partialReload": True}).encode(), arrived)),
    ])
    butler.start()
    result = app_result(client, "mine", timeout=30)
    reloads = engine.calls("DoReloadEx")
    assert butler.stop() == 0
    assert result["status"] == "done" and "reloadedBeforeRestart" not in result, result
    # Its own reload ran, with its own mode and partial flag.
    assert len(reloads) == reloads_before + 1
    assert reloads[-1]["params"]["qParams"]["qPartial"] is True
    assert reloads[-1]["params"]["qParams"]["qMode"] == 1
