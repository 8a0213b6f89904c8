"""Holds the integration run to docs/sense-calls.md: every QRS request Butler sends to the QRS
simulator and every engine method it calls on the engine simulator must have a row there.

conftest.py starts the QRS simulator with a record file and hands each module's records to
`note_qrs_records`; test_app.py hands the engine simulator's call list to `note_engine_calls`
before each reset. At the end of the session `unlisted()` compares the union with the table
and conftest.py fails the run when something is not listed. Requests the tests themselves
send to the simulator (simctl.QrsSim.qrs) carry `User-Agent: simctl` and are not Butler's.

Standard library only.
"""

import json
import os
import re
import threading

DOC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "sense-calls.md")
TEST_USER_AGENT = "simctl"
HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")

_lock = threading.Lock()
_qrs_seen = {}     # (method, path) -> count
_engine_seen = {}  # method name -> count


def parse_table(text):
    """docs/sense-calls.md -> (qrs, engine): qrs is a list of (method, compiled path regex,
    pattern text) for rows whose first cell is an HTTP method and whose path is a backticked
    /qrs/... path; engine is the set of method names of rows whose first cell is QIX."""
    qrs, engine = [], set()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not line.lstrip().startswith("|"):
            continue
        method, target = cells[0], cells[1]
        found = re.match(r"`([^`]+)`", target)
        if not found:
            continue
        pattern = found.group(1)
        if method in HTTP_METHODS and pattern.startswith("/qrs/"):
            regex = "^" + re.sub(r"\\\{[^/]*?\\\}", "[^/]+", re.escape(pattern)) + "$"
            qrs.append((method, re.compile(regex), pattern))
        elif method == "QIX":
            engine.add(pattern)
    return qrs, engine


def read_table(path=DOC):
    with open(path, encoding="utf-8") as f:
        return parse_table(f.read())


def butler_requests(records):
    """(method, path) of the recorded QRS requests that Butler sent (not the tests, not a
    rejected TLS handshake)."""
    out = []
    for record in records:
        method, path = record.get("method"), record.get("path")
        if not method or not path:
            continue
        agent = (record.get("headers") or {}).get("user-agent") or ""
        if isinstance(agent, list):
            agent = agent[0] if agent else ""
        if agent == TEST_USER_AGENT:
            continue
        out.append((method, path))
    return out


def read_record_file(path):
    """Records of a simulator --record-file (JSON lines); a torn last line is skipped."""
    records = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass
    except FileNotFoundError:
        pass
    return records


def note_qrs_records(records):
    with _lock:
        for key in butler_requests(records):
            _qrs_seen[key] = _qrs_seen.get(key, 0) + 1


def note_engine_calls(calls):
    with _lock:
        for call in calls:
            method = call.get("method")
            if method:
                _engine_seen[method] = _engine_seen.get(method, 0) + 1


def compare(qrs_seen, engine_seen, table):
    """-> (unlisted QRS (method, path) list, unlisted engine method list)."""
    qrs_rows, engine_rows = table
    missing_qrs = sorted({(m, p) for (m, p) in qrs_seen
                          if not any(m == rm and rx.match(p) for rm, rx, _ in qrs_rows)})
    missing_engine = sorted(m for m in engine_seen if m not in engine_rows)
    return missing_qrs, missing_engine


def seen():
    with _lock:
        return dict(_qrs_seen), dict(_engine_seen)


def unlisted(path=DOC):
    qrs_seen, engine_seen = seen()
    return compare(qrs_seen, engine_seen, read_table(path))
