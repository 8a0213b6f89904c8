"""QRS change subscriptions (POST/DELETE /qrs/notification) and their callbacks.

What the simulator sends follows what public consumers of real QRS callbacks read
(docs/qrs-notifications.md): a POST with Content-Type application/json whose body
is a JSON array of change objects {"objectType", "objectID", "changeType",
"changedProperties", "engineID"}. Retries, batching and delivery order of real QRS
are not documented; here every change is one POST, sent by one background thread in
order, with knobs for delay, retries and dropped deliveries. Subscriptions live in
memory only, like in real QRS (they are gone after a QRS restart): the control call
POST /_sim/notifications/forget simulates exactly that."""

import copy
import itertools
import json
import queue
import ssl
import threading
import time
import urllib.error
import urllib.request

from . import filters

CHANGE_TYPES = {"undefined": 0, "add": 1, "update": 2, "delete": 3}
_CHANGE_NAMES = {v: k.capitalize() for k, v in CHANGE_TYPES.items()}
DELIVERIES_KEPT = 10000


class NotifyError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def parse_change_type(text):
    """'Update', 'update' or the enum number '2' -> 2; None = every change type."""
    if text is None or text == "":
        return None
    if text.isdigit() and int(text) in _CHANGE_NAMES:
        return int(text)
    value = CHANGE_TYPES.get(text.lower())
    if value is None:
        raise NotifyError(400, f"Unknown change type: {text}")
    return value


def parse_callback_body(body):
    """The body is the callback URL: a JSON string (as clients send it) or plain text."""
    text = body.decode("utf-8", "replace").strip()
    if text.startswith('"'):
        try:
            text = json.loads(text)
        except ValueError:
            raise NotifyError(400, "Body is not a URL") from None
    if not isinstance(text, str) or not text.lower().startswith(("http://", "https://")):
        raise NotifyError(400, "Body is not a URL")
    return text


class Notifier:
    def __init__(self, sim):
        self.sim = sim
        self.lock = threading.Lock()
        self.subs = {}  # handle -> {"handle", "name", "change_type", "filter", "ast", "url", "created"}
        self.deliveries = []
        self._seq = itertools.count(1)
        self.knobs = {"delay_ms": 0, "retries": 0, "retry_delay_ms": 200, "drop": 0, "timeout_ms": 5000}
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="qrs-sim-notify", daemon=True)
        self._thread.start()
        self._ssl = ssl.create_default_context()
        self._ssl.check_hostname = False
        self._ssl.verify_mode = ssl.CERT_NONE

    # ---- the QRS endpoints ------------------------------------------------

    def subscribe(self, req, guid):
        name = req.param("name")
        if not name:
            raise NotifyError(400, "Missing parameter value(s)")
        change_type = parse_change_type(req.param("changetype"))
        text = req.param("filter") or ""
        kind = name.lower()
        ast = None
        if text:
            schema = self.sim.schemas.get(kind)
            if schema is None:
                raise NotifyError(400, f"Filter not supported on {name} in the simulator")
            try:
                ast = filters.compile_filter(text, schema, self.sim.config["strict_filter"])
            except filters.FilterError as e:
                raise NotifyError(400, str(e)) from None
        url = parse_callback_body(req.body or b"")
        handle = guid
        with self.lock:
            self.subs[handle] = {"handle": handle, "name": name, "kind": kind, "change_type": change_type,
                                 "filter": text, "ast": ast, "id": (req.param("id") or "").lower(),
                                 "url": url, "created": time.time()}
        return handle

    def unsubscribe(self, handle):
        with self.lock:
            return self.subs.pop((handle or "").lower(), None) is not None

    # ---- control --------------------------------------------------------------

    def forget(self):
        """A QRS restart: every subscription is gone, nothing is called any more."""
        with self.lock:
            count = len(self.subs)
            self.subs.clear()
        return count

    def state(self, since=0):
        with self.lock:
            subs = [{k: v for k, v in s.items() if k != "ast"} for s in self.subs.values()]
            deliveries = [d for d in self.deliveries if d["seq"] > since]
        return {"subscriptions": subs, "deliveries": deliveries, "knobs": dict(self.knobs)}

    def set_knobs(self, body):
        for key, value in (body or {}).items():
            if key not in self.knobs or not isinstance(value, int) or value < 0:
                raise ValueError(f"notification knob {key!r}: expected one of {sorted(self.knobs)} "
                                 "with an integer >= 0")
        self.knobs.update(body or {})
        return dict(self.knobs)

    def reset(self):
        with self.lock:
            self.subs.clear()
            self.deliveries.clear()
        self.knobs.update({"delay_ms": 0, "retries": 0, "retry_delay_ms": 200, "drop": 0})

    # ---- changes --------------------------------------------------------------

    def changed(self, kind, entity, change_type, changed_properties=()):
        """Called by the model (lock held): queue one change; matching happens later."""
        if not self.subs:
            return
        self._queue.put((kind, copy.deepcopy(entity), change_type, list(changed_properties)))

    def _matching(self, kind, entity, change_type):
        with self.lock:
            subs = list(self.subs.values())
        for sub in subs:
            if sub["kind"] != kind or (sub["change_type"] not in (None, change_type)):
                continue
            if sub["id"] and sub["id"] != str(entity.get("id", "")).lower():
                continue
            # Qlik: the filter does not apply to deletion notifications.
            if sub["ast"] is not None and change_type != CHANGE_TYPES["delete"]:
                schema = self.sim.schemas[kind]
                if not filters.evaluate(sub["ast"], entity, schema, False):
                    continue
            yield sub

    def _loop(self):
        while True:
            kind, entity, change_type, props = self._queue.get()
            for sub in list(self._matching(kind, entity, change_type)):
                body = [{"objectType": _TYPE_NAMES.get(kind, sub["name"]),
                         "objectID": entity.get("id"), "changeType": _CHANGE_NAMES[change_type],
                         "changedProperties": props, "engineID": None}]
                self._deliver(sub, body)

    def _deliver(self, sub, body):
        knobs = self.knobs
        if knobs["delay_ms"]:
            time.sleep(knobs["delay_ms"] / 1000.0)
        record = {"seq": next(self._seq), "t_wall": time.time(), "handle": sub["handle"],
                  "url": sub["url"], "body": body, "attempts": 0, "status": None, "error": None}
        with self.lock:
            dropped = knobs["drop"] > 0
            if dropped:
                knobs["drop"] -= 1
        if dropped:
            record["error"] = "dropped by the drop knob"
        else:
            data = json.dumps(body).encode("utf-8")
            for attempt in range(1 + knobs["retries"]):
                record["attempts"] = attempt + 1
                request = urllib.request.Request(sub["url"], data=data, method="POST",
                                                 headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=knobs["timeout_ms"] / 1000.0,
                                                context=self._ssl) as answer:
                        record["status"], record["error"] = answer.status, None
                        break
                except urllib.error.HTTPError as e:
                    record["status"], record["error"] = e.code, None
                except (OSError, ValueError) as e:
                    record["status"], record["error"] = None, str(e)
                time.sleep(knobs["retry_delay_ms"] / 1000.0)
        with self.lock:
            self.deliveries.append(record)
            del self.deliveries[:-DELIVERIES_KEPT]


_TYPE_NAMES = {"executionresult": "ExecutionResult", "app": "App", "task": "Task", "user": "User"}
