"""Fault-injection rules (sense-interfaces.md 4.9).

A rule is ``{"id", "match": {method, path_re, nth, times, probability}, "action": {"type", ...}}``.
Rules are tried in insertion order; the first one that matches *and fires*
(nth / times / probability) is applied to the request. ``tls_abort`` rules are
consulted per connection, before the TLS handshake, ignoring method and path.
"""

import itertools
import random
import re
import threading

REQUIRED = object()

# type -> {parameter: default or REQUIRED}.
ACTIONS = {
    # when="after_processing" is an addition to the spec: the request is handled at
    # once (a task really starts) and only the answer waits, as a QRS that accepted
    # a start and answered past the client's timeout.
    "delay": {"ms": REQUIRED, "when": "before_processing"},
    "slow_body": {"bytes_per_sec": 200, "chunk": 16},
    # status when="after_processing" (an addition to the spec): the request is handled
    # (a task really starts) and the answer is replaced, as by a gateway in front of
    # QRS that forwarded the call and then answered 502 or 504 itself.
    "status": {"status": REQUIRED, "body": "", "content_type": None, "headers": {},
               "when": "before_processing"},
    # after_processing is an addition to the spec: the request is handled (a task
    # really starts) but nothing is answered, which is the "QRS accepted, client
    # never heard" case. 204 answers have no body, so after_headers cannot show it.
    "drop": {"when": "before_response", "how": "rst"},
    "tls_abort": {},
    "hang": {},
    "malformed_json": {},
    "truncate": {},
    "wrong_content_type": {},
    "empty_body": {},
    "shape": {"json": None, "remove": [], "set": {}},
    "flip_xrf": {},
}
_DROP_WHEN = ("before_response", "after_processing", "after_headers", "mid_body")
_DROP_HOW = ("rst", "fin")


class FaultError(ValueError):
    pass


class Rule:
    __slots__ = ("id", "method", "path_re", "nth", "times", "probability", "action", "matched",
                 "applied", "spec")

    def to_json(self):
        return {**self.spec, "id": self.id, "matched": self.matched, "applied": self.applied}


def _validate_action(action):
    if not isinstance(action, dict) or action.get("type") not in ACTIONS:
        raise FaultError(f"action.type: expected one of {sorted(ACTIONS)}")
    params = ACTIONS[action["type"]]
    unknown = set(action) - set(params) - {"type"}
    if unknown:
        raise FaultError(f"action: unknown parameter(s) {sorted(unknown)} for {action['type']}")
    merged = {"type": action["type"]}
    for key, default in params.items():
        if default is REQUIRED and key not in action:
            raise FaultError(f"action.{key} is required for {action['type']}")
        merged[key] = action.get(key, default)
    t = merged["type"]
    if t == "drop" and (merged["when"] not in _DROP_WHEN or merged["how"] not in _DROP_HOW):
        raise FaultError(f"drop: when in {list(_DROP_WHEN)}, how in {list(_DROP_HOW)}")
    if t == "status" and not (isinstance(merged["status"], int) and 100 <= merged["status"] <= 599):
        raise FaultError("status.status: expected an HTTP status")
    if t == "status" and not isinstance(merged["headers"], dict):
        raise FaultError("status.headers: expected an object")
    if t in ("delay",) and not (isinstance(merged["ms"], (int, float)) and merged["ms"] >= 0):
        raise FaultError("delay.ms: expected a non-negative number")
    if t in ("delay", "status") and merged["when"] not in ("before_processing", "after_processing"):
        raise FaultError(f"{t}.when: before_processing or after_processing")
    if t == "slow_body" and not (merged["bytes_per_sec"] > 0 and merged["chunk"] > 0):
        raise FaultError("slow_body: bytes_per_sec and chunk must be positive")
    return merged


class FaultTable:
    def __init__(self, seed):
        self._lock = threading.Lock()
        self._rules = []
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)  # seeded, so probabilistic faults repeat

    def add(self, spec):
        if not isinstance(spec, dict):
            raise FaultError("expected a JSON object")
        unknown = set(spec) - {"id", "match", "action"}
        if unknown:
            raise FaultError(f"unknown key(s) {sorted(unknown)}")
        match = spec.get("match", {})
        if not isinstance(match, dict) or set(match) - {"method", "path_re", "nth", "times", "probability"}:
            raise FaultError("match: expected an object with method, path_re, nth, times, probability")
        rule = Rule()
        rule.method = match["method"].upper() if match.get("method") else None
        try:
            rule.path_re = re.compile(match["path_re"]) if match.get("path_re") else None
        except re.error as e:
            raise FaultError(f"match.path_re: {e}") from None
        rule.nth = int(match.get("nth", 1))
        rule.times = int(match.get("times", -1))
        rule.probability = float(match.get("probability", 1.0))
        rule.action = _validate_action(spec.get("action"))
        rule.matched = rule.applied = 0
        with self._lock:
            rule.id = str(spec.get("id") or f"f{next(self._ids)}")
            if any(r.id == rule.id for r in self._rules):
                raise FaultError(f"duplicate fault id {rule.id!r}")
            rule.spec = {"match": match, "action": rule.action}
            self._rules.append(rule)
        return rule

    def list(self):
        with self._lock:
            return [r.to_json() for r in self._rules]

    def remove(self, rule_id):
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rule_id]
            return len(self._rules) != before

    def clear(self):
        with self._lock:
            self._rules = []

    def pick(self, method, path):
        """The action to apply to this request, or None. Cheap when no rules exist."""
        if not self._rules:
            return None
        with self._lock:
            for r in self._rules:
                if r.action["type"] == "tls_abort":
                    continue
                if (r.method is None or r.method == method) and \
                        (r.path_re is None or r.path_re.search(path)):
                    if self._fires(r):
                        return r
        return None

    def pick_tls(self):
        if not self._rules:
            return None
        with self._lock:
            for r in self._rules:
                if r.action["type"] == "tls_abort" and self._fires(r):
                    return r
        return None

    def _fires(self, r):
        r.matched += 1
        if r.matched < r.nth or (0 <= r.times <= r.applied):
            return False
        if r.probability < 1.0 and self._rng.random() >= r.probability:
            return False
        r.applied += 1
        return True
