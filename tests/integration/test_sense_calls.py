"""docs/sense-calls.md against the simulators, and the session check itself (sense_calls.py).

The session check (conftest.pytest_sessionfinish) fails a run in which Butler called a QRS
route or an engine method without a row in the table; these tests show that it reads the
table as intended and that every row is one the simulators serve (a row the simulator does
not serve is a call no integration test can have exercised)."""
import os
import re

import sense_calls
from conftest import ROOT

UUID = "0f0e0d0c-0b0a-4909-8807-060504030201"


def test_the_table_has_rows_for_qrs_and_the_engine():
    qrs, engine = sense_calls.read_table()
    patterns = {(m, p) for m, _, p in qrs}
    assert ("POST", "/qrs/task/{id}/start") in patterns
    assert ("GET", "/qrs/license/accesstypeoverview") in patterns
    assert {"OpenDoc", "DoReloadEx", "GetScript"} <= engine


def test_a_call_without_a_row_is_reported_and_one_with_a_row_is_not():
    with open(sense_calls.DOC, encoding="utf-8") as f:
        text = f.read()
    seen_qrs = {("GET", "/qrs/license/accesstypeoverview"): 1, ("POST", f"/qrs/task/{UUID}/start"): 2}
    seen_engine = {"OpenDoc": 1}
    assert sense_calls.compare(seen_qrs, seen_engine, sense_calls.parse_table(text)) == ([], [])
    without = "\n".join(line for line in text.splitlines()
                        if "`/qrs/license/accesstypeoverview`" not in line and "`OpenDoc`" not in line)
    assert sense_calls.compare(seen_qrs, seen_engine, sense_calls.parse_table(without)) == \
        ([("GET", "/qrs/license/accesstypeoverview")], ["OpenDoc"])
    # A placeholder is one segment, the method must match too.
    assert sense_calls.compare({("POST", f"/qrs/task/{UUID}/x/start"): 1, ("GET", f"/qrs/task/{UUID}/start"): 1},
                               {}, sense_calls.parse_table(text))[0] == \
        [("GET", f"/qrs/task/{UUID}/start"), ("POST", f"/qrs/task/{UUID}/x/start")]


def test_tests_own_calls_are_not_counted_as_butlers():
    records = [{"method": "GET", "path": "/qrs/about", "headers": {"user-agent": "simctl"}},
               {"method": "GET", "path": "/qrs/license", "headers": {}},
               {"event": "tls_rejected", "method": None, "path": None}]
    assert sense_calls.butler_requests(records) == [("GET", "/qrs/license")]


def test_every_qrs_row_is_served_by_the_simulator():
    from qrssim.qrs_api import QrsApi

    router = QrsApi.__new__(QrsApi)
    router.sim = None
    routes = router._routes()
    unserved = []
    for method, _, pattern in sense_calls.read_table()[0]:
        path = re.sub(r"\{[^/]*\}", UUID, pattern)
        route, _, _ = routes.match(method, path)
        if route is None:
            unserved.append(f"{method} {pattern}")
    assert unserved == []


def test_every_engine_row_is_implemented_by_the_engine_simulator():
    with open(os.path.join(ROOT, "tests", "sim", "engine_sim.py"), encoding="utf-8") as f:
        source = f.read()
    missing = [m for m in sorted(sense_calls.read_table()[1]) if f'"{m}"' not in source]
    assert missing == []
