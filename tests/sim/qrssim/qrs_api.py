"""The QRS request pipeline (sense-interfaces.md 4.2) and endpoints (4.4).

``QrsApi.handle`` turns a parsed request into a ``Response``; the transport in
``server.py`` writes it, honouring ``Response.transport`` for the fault actions
that act on the connection itself (drop, hang, truncate, slow_body).
"""

import json
import re
import time
from urllib.parse import unquote

from . import filters
from .notify import NotifyError
from .util import STATUS_NAMES, ZERO_GUID, is_guid

XRF_TEXT = "XSRF prevention check failed. Possible XSRF discovered."
_XRF_RE = re.compile(r"^[0-9A-Za-z]{16}$")
JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"

# Condensed views are projections of the full objects (every key is in both).
CONDENSED_KEYS = {
    "task": ("id", "name", "taskType", "enabled", "privileges"),
    "app": ("id", "name", "appId", "publishTime", "published", "stream", "savedInProductVersion",
            "migrationHash", "availabilityStatus", "privileges"),
    "user": ("id", "userId", "userDirectory", "name", "privileges"),
    "custompropertydefinition": ("id", "name", "valueType", "choiceValues", "privileges"),
    "tag": ("id", "name", "privileges"),
    "executionsession": ("id", "privileges"),
}

ENUMS = {
    "TaskExecutionStatus": {"usages": ["ExecutionResult.Status", "ExecutionResultCondensed.Status"],
                            "values": [f"{i}: {n}" for i, n in enumerate(STATUS_NAMES)]},
    "TaskType": {"usages": ["Task.TaskType"],
                 "values": ["0: Reload", "1: ExternalProgram", "2: UserSync", "3: Distribute",
                            "4: Preload"]},
    "ExecutionResultDetailType": {"usages": ["ExecutionResultDetail.DetailsType"],
                                  "values": ["0: Error", "1: Warning", "2: Information"]},
}

# Memo tables (filters, routes, X-Qlik-User values): clients repeat the same
# values, so parsing each once takes work off the hot path. Cleared when full.
_MEMO_MAX = 4096


class Request:
    __slots__ = ("method", "target", "path", "query", "qlower", "missing_value", "headers", "body",
                 "tls_verified", "record", "user")

    def param(self, name):
        """First value of a query parameter; names are matched case-insensitively."""
        values = self.qlower.get(name)
        return values[0] if values else None


class Response:
    __slots__ = ("status", "body", "ctype", "headers", "transport")

    def __init__(self, status, body=b"", ctype=None, headers=()):
        self.status, self.body, self.ctype, self.headers = status, body, ctype, list(headers)
        self.transport = None  # a fault action the transport must carry out


def json_response(status, obj):
    return Response(status, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
                    JSON_TYPE)


def text_response(status, text):
    return Response(status, text.encode("utf-8"), TEXT_TYPE)


def parse_qlik_user(value):
    """'UserDirectory=<d>; UserId=<u>' in any case, spaces optional, values URL-encoded.
    -> (directory, id), or None when malformed."""
    fields = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        key, eq, val = part.partition("=")
        if not eq:
            return None
        fields[key.strip().lower()] = unquote(val.strip())
    directory, userid = fields.get("userdirectory"), fields.get("userid")
    if not directory or not userid:
        return None
    return directory, userid


class _Route:
    __slots__ = ("name", "method", "segs", "literals", "handler")


class Router:
    """Routes by method and path; path matching is case-insensitive after /qrs/ and a
    trailing slash is tolerated. ``{x}`` matches one segment; the most literal match
    wins, so /task/full never reaches /task/{id}."""

    def __init__(self):
        self._by_len = {}
        self._memo = {}

    def add(self, method, pattern, name, handler):
        r = _Route()
        r.name, r.method, r.handler = name, method, handler
        r.segs = tuple(None if s.startswith("{") else s for s in pattern.split("/"))
        r.literals = sum(s is not None for s in r.segs)
        routes = self._by_len.setdefault(len(r.segs), [])
        routes.append(r)
        routes.sort(key=lambda x: -x.literals)

    def match(self, method, path):
        """-> (route, params, allowed_methods)."""
        key = (method, path)
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) >= _MEMO_MAX:
                self._memo.clear()
            hit = self._memo[key] = self._match(method, path)
        return hit

    def _match(self, method, path):
        low = path.lower()
        if not low.startswith("/qrs/"):
            return None, None, ()
        segs = low[5:].rstrip("/").split("/")
        best, allowed = None, []
        for r in self._by_len.get(len(segs), ()):
            if allowed and r.literals < best:
                break
            if all(s is None or s == seg for s, seg in zip(r.segs, segs)):
                best = r.literals
                if r.method == method:
                    return r, [seg for s, seg in zip(r.segs, segs) if s is None], ()
                allowed.append(r.method)
        return None, None, allowed


class QrsApi:
    def __init__(self, sim):
        self.sim = sim
        self._filter_cache = {}
        self._users = {}
        self.router = self._routes()

    # ---- pipeline ---------------------------------------------------------

    def handle(self, req):
        sim, rec = self.sim, req.record
        if not req.tls_verified:  # only reachable in the http-401/http-403 auth modes
            if sim.config["auth_mode"] == "http-401":
                return text_response(401, "Unauthorized")
            return text_response(403, "Forbidden")
        rule = sim.faults.pick(req.method, req.path)
        if rule is None:
            return self._serve(req)
        action = rule.action
        kind = action["type"]
        rec.fault = {"id": rule.id, "type": kind}
        if kind == "delay":
            if action.get("when") == "after_processing":
                resp = self._serve(req)
                time.sleep(action["ms"] / 1000.0)
                return resp
            time.sleep(action["ms"] / 1000.0)
            return self._serve(req)
        if kind == "status":
            if action.get("when") == "after_processing":
                self._serve(req)  # handled; its answer is replaced by the fault's
            body = action["body"]
            if isinstance(body, str):
                resp = Response(action["status"], body.encode("utf-8"), action["content_type"] or TEXT_TYPE)
            else:
                resp = json_response(action["status"], body)
                resp.ctype = action["content_type"] or JSON_TYPE
            resp.headers = [(str(k), str(v)) for k, v in action["headers"].items()]
            return resp
        if kind == "flip_xrf":
            rec.xrf_ok, rec.xrf_reason = False, "flip_xrf"
            return text_response(sim.config["xrf_failure_status"], XRF_TEXT)
        if kind == "hang" or (kind == "drop" and action["when"] == "before_response"):
            resp = Response(0)
            resp.transport = action
            return resp
        return _after_fault(self._serve(req), action)

    def _serve(self, req):
        rec, cfg = req.record, self.sim.config
        reason = _xrf_problem(req)
        rec.xrf_ok, rec.xrf_reason = reason is None, reason
        if reason is not None:
            return text_response(cfg["xrf_failure_status"], XRF_TEXT)

        raw_user = req.headers.get("x-qlik-user")
        if raw_user is None:
            if cfg["xqu_missing_status"]:
                return text_response(cfg["xqu_missing_status"], "Missing X-Qlik-User header")
            req.user = ("INTERNAL", "sa_api")
        else:
            user = self._users.get(raw_user, False)
            if user is False:
                if len(self._users) >= _MEMO_MAX:
                    self._users.clear()
                user = self._users[raw_user] = parse_qlik_user(raw_user)
            req.user = user
            if user is None:
                return text_response(cfg["xqu_malformed_status"], "Malformed X-Qlik-User header")
        rec.user = req.user
        allowed = cfg["allowed_users"]
        if allowed is not None and f"{req.user[0]}\\{req.user[1]}".lower() not in {u.lower() for u in allowed}:
            return text_response(403, "Forbidden")

        route, params, methods = self.router.match(req.method, req.path)
        if route is None:
            if methods:
                resp = text_response(405, "Method Not Allowed")
                resp.headers.append(("Allow", ", ".join(sorted(set(methods)))))
                return resp
            return text_response(404, "Not Found")
        rec.route = route.name
        if req.missing_value:  # a raw '&' inside a value split the query
            return text_response(400, "Missing parameter value(s)")
        return route.handler(req, *params)

    # ---- helpers ------------------------------------------------------------

    def _malformed(self):
        return text_response(self.sim.config["malformed_id_status"], "Invalid id")

    def _compile(self, req, kind):
        text = req.param("filter") or ""
        strict = self.sim.config["strict_filter"]
        key = (kind, text, strict)
        ast = self._filter_cache.get(key)
        if ast is None and key not in self._filter_cache:
            ast = filters.compile_filter(text, self.sim.schemas[kind], strict)
            if len(self._filter_cache) >= _MEMO_MAX:
                self._filter_cache.clear()
            self._filter_cache[key] = ast
        return ast

    def _list(self, req, kind, table, full, condensed=False, accept=None, by=None):
        """A (filtered) collection of table (id -> entity); accept restricts it (e.g. to
        one task type); by = (real-key path, GUID -> entities) looks a filter on that key up
        instead of scanning. Called with the model lock held."""
        try:
            ast = self._compile(req, kind)
        except filters.FilterError as e:
            return text_response(400, str(e))
        # Skip the scan for 'id eq X' (or 'id eq X or id eq Y ...'), and likewise for `by`.
        # Filter values are lower-cased by the parser, as the tables' GUID keys are.
        wanted = filters.id_candidates(ast)
        by_wanted = filters.id_candidates(ast, by[0]) if wanted is None and by else None
        if wanted is not None:
            entities = [table[g] for g in sorted(wanted) if g in table]
        elif by_wanted is not None:
            entities = [e for g in sorted(by_wanted) for e in by[1](g)]
        else:
            entities = table.values()
        if accept is not None:
            entities = [e for e in entities if accept(e)]
        if ast is None:
            objs = [full(e) for e in entities]
        else:
            schema = self.sim.schemas[kind]
            correlated = self.sim.config["cp_filter_semantics"] == "correlated"
            objs = [o for o in map(full, entities) if filters.evaluate(ast, o, schema, correlated)]
        if condensed:
            keys = CONDENSED_KEYS[kind]
            objs = [{k: o[k] for k in keys} for o in objs]
        return json_response(200, objs)

    def _one(self, ident, table, full, accept=None):
        if not is_guid(ident):
            return self._malformed()
        with self.sim.lock:
            entity = table(self.sim.model).get(ident)
            if entity is None or (accept is not None and not accept(entity)):
                return text_response(404, "Not Found")
            return json_response(200, full(self.sim.model, entity))

    # ---- tasks --------------------------------------------------------------

    def _task_list(self, req, condensed=False, task_type=None):
        accept = None if task_type is None else (lambda t: t.task_type == task_type)
        with self.sim.lock:
            m = self.sim.model
            return self._list(req, "task", m.tasks, m.task_full, condensed, accept)

    def _reloadtask_ok(self, task):
        return task.task_type == 0 or self.sim.config["reloadtask_serves_all_types"]

    def _start_locked(self, task, req, sync):
        """Start a run unless the task cannot run. -> Run or None. Model lock held."""
        cfg = self.sim.config
        if not task.enabled or (sync and cfg["no_scheduler"]):
            return None
        return self.sim.engine.start(task, f"{req.user[0]}\\{req.user[1]}",
                                     want_started=sync and cfg["sync_start_wait"] == "started")

    def _count_starts(self, runs):
        """Counted after the model lock is released: never hold two locks at once."""
        for run in runs:
            if run is not None:
                self.sim.recorder.count_start(run.task.id)

    def _start_answer(self, run, sync, disabled=False):
        cfg = self.sim.config
        if not sync:
            status = cfg["disabled_start_status"] if disabled else 204
            return Response(status) if 200 <= status < 300 else text_response(status, "Task is disabled")
        sid = ZERO_GUID if run is None else run.sid
        if run is not None and run.started_evt is not None:
            run.started_evt.wait(30.0)  # outside the lock: the scheduler must run meanwhile
        # sense-interfaces.md 7.2: clients read {"value": "<guid>"}; Qlik's reference page
        # describes a bare GUID, which the "bare" knob answers instead.
        if cfg["sync_start_value_shape"] == "bare":
            return json_response(cfg["sync_start_status"], sid)
        return json_response(cfg["sync_start_status"], {"value": sid})

    def start(self, req, task_id, sync=False):
        if not is_guid(task_id):
            return self._malformed()
        with self.sim.lock:
            task = self.sim.model.tasks.get(task_id)
            if task is None:
                return text_response(404, "Task not found")
            run = self._start_locked(task, req, sync)
        self._count_starts([run])
        return self._start_answer(run, sync, disabled=not task.enabled)

    def start_by_name(self, req, sync=False):
        name = req.param("name")
        if not name:
            return text_response(400, "Missing parameter value(s)")
        with self.sim.lock:
            tasks = [t for t in self.sim.model.tasks.values() if t.name.lower() == name.lower()]
            if not tasks:
                return text_response(404, "Task not found")
            runs = [self._start_locked(t, req, sync) for t in tasks]
        self._count_starts(runs)
        started = [r for r in runs if r is not None]
        return self._start_answer(started[0] if started else None, sync, disabled=not started)

    def start_many(self, req):
        try:
            ids = json.loads(req.body or b"null")
        except ValueError:
            ids = None
        if not isinstance(ids, list) or not all(isinstance(i, str) and is_guid(i) for i in ids):
            return text_response(400, "Expected a JSON array of task ids")
        with self.sim.lock:
            tasks = [self.sim.model.tasks.get(i.lower()) for i in ids]
            runs = [self._start_locked(t, req, False) for t in tasks if t is not None]
        self._count_starts(runs)
        return Response(204)

    def stop(self, req, task_id):
        if not is_guid(task_id):
            return self._malformed()
        with self.sim.lock:
            task = self.sim.model.tasks.get(task_id)
            if task is None:
                return text_response(404, "Task not found")
            self.sim.engine.stop(task)
        return Response(204)

    # ---- executions and script logs -----------------------------------------

    def execution_session(self, req, sid):
        if not is_guid(sid):
            return self._malformed()
        with self.sim.lock:
            run = self.sim.model.sessions.get(sid)
            if run is None:  # finished sessions are gone, as on a real QRS
                return text_response(404, "Not Found")
            return json_response(200, self.sim.model.session(run))

    def execution_sessions(self, req, condensed=False):
        """The sessions of the runs going on now, filterable like every QRS entity list
        (reference 1.2): a finished run's session is gone, so it is not listed."""
        with self.sim.lock:
            m = self.sim.model
            return self._list(req, "executionsession", m.sessions, m.session, condensed)

    def execution_results(self, req):
        with self.sim.lock:
            m = self.sim.model
            return self._list(req, "executionresult", m.results, _same,
                              by=(("executionID",), lambda g: m.results_by_execution.get(g, [])))

    def _script_log_ref(self, task_id, result):
        """A download reference for the script log of a result of this task. Model lock held."""
        if result is None or result["taskID"] != task_id or result["id"] not in self.sim.model.script_logs:
            return None
        return self.sim.model.new_download(result["id"], time.time())

    def script_log(self, req, task_id):
        """The deprecated fileReferenceId API (Butler tries it first)."""
        mode = self.sim.config["deprecated_scriptlog_api"]
        if mode != "ok":
            return text_response(int(mode), "Not Found" if mode == "404" else "Bad Request")
        fid = req.param("filereferenceid")
        if not is_guid(task_id) or not fid or not is_guid(fid):
            return self._malformed()
        with self.sim.lock:
            ref = self._script_log_ref(task_id, self.sim.model.by_fileref.get(fid.lower()))
        if ref is None:
            return text_response(404, "Not Found")
        return json_response(200, {"value": ref})

    def script_log_file(self, req, task_id):
        """The May-2025 executionResultId API."""
        erid = req.param("executionresultid")
        if not is_guid(task_id) or not erid or not is_guid(erid):
            return self._malformed()
        with self.sim.lock:
            ref = self._script_log_ref(task_id, self.sim.model.results.get(erid.lower()))
        if ref is None:
            return text_response(404, "Not Found")
        if self.sim.config["scriptlogfile_value_shape"] == "bare":
            return json_response(200, ref)
        return json_response(200, {"value": ref})

    def download(self, req, ref, filename):
        # The ticket selects the log; the last segment is any file name the client
        # chooses (sense-interfaces.md 7.2: /download/reloadtask/{ticket}/{any file name}).
        if not is_guid(ref):
            return text_response(404, "Not Found")
        with self.sim.lock:
            text = self.sim.model.take_download(ref, time.time())
        if text is None:
            return text_response(404, "Not Found")
        return text_response(200, text)

    # ---- change subscriptions (notify.py) ----------------------------------------

    def notification_create(self, req):
        with self.sim.lock:
            guid = self.sim.model.guids.new()
        try:
            handle = self.sim.notifier.subscribe(req, guid)
        except NotifyError as e:
            return text_response(e.status, str(e))
        return json_response(self.sim.config.get("notification_create_status", 201), {"value": handle})

    def notification_delete(self, req):
        if self.sim.notifier.unsubscribe(req.param("handle")):
            return Response(204)
        return text_response(404, "Not Found")

    # ---- route table ----------------------------------------------------------

    def _routes(self):
        r = Router()

        def listing(kind, attr, full_name, condensed):
            def handler(req):
                with self.sim.lock:
                    model = self.sim.model
                    return self._list(req, kind, getattr(model, attr), getattr(model, full_name),
                                      condensed)
            return handler

        def single(attr, full_name):
            return lambda req, ident: self._one(ident, lambda mdl: getattr(mdl, attr),
                                                lambda mdl, e: getattr(mdl, full_name)(e))

        task_full = lambda mdl, t: mdl.task_full(t)  # noqa: E731
        tasks = lambda mdl: mdl.tasks  # noqa: E731
        G, P = "GET", "POST"
        r.add(G, "task", "task.list", lambda req: self._task_list(req, condensed=True))
        r.add(G, "task/full", "task.full", lambda req: self._task_list(req))
        r.add(G, "task/{id}", "task.get", lambda req, i: self._one(i, tasks, task_full))
        r.add(P, "task/{id}/start", "task.start", lambda req, i: self.start(req, i))
        r.add(P, "task/{id}/start/synchronous", "task.start.sync", lambda req, i: self.start(req, i, True))
        r.add(P, "task/start", "task.start.name", lambda req: self.start_by_name(req))
        r.add(P, "task/start/synchronous", "task.start.name.sync", lambda req: self.start_by_name(req, True))
        r.add(P, "task/start/many", "task.start.many", self.start_many)
        r.add(P, "task/{id}/stop", "task.stop", self.stop)
        r.add(G, "reloadtask", "reloadtask.list", lambda req: self._task_list(req, True, 0))
        r.add(G, "reloadtask/full", "reloadtask.full", lambda req: self._task_list(req, False, 0))
        r.add(G, "reloadtask/{id}", "reloadtask.get",
              lambda req, i: self._one(i, tasks, task_full, self._reloadtask_ok))
        r.add(G, "externalprogramtask/{id}", "externalprogramtask.get",
              lambda req, i: self._one(i, tasks, task_full, lambda t: t.task_type == 1))
        r.add(G, "usersynctask/{id}", "usersynctask.get",
              lambda req, i: self._one(i, tasks, task_full, lambda t: t.task_type == 2))
        r.add(G, "reloadtask/{id}/scriptlog", "reloadtask.scriptlog", self.script_log)
        r.add(G, "reloadtask/{id}/scriptlogfile", "reloadtask.scriptlogfile", self.script_log_file)
        r.add(G, "download/reloadtask/{ref}/{file}", "download.scriptlog", self.download)
        r.add(G, "executionsession", "executionsession.list", lambda req: self.execution_sessions(req, True))
        r.add(G, "executionsession/full", "executionsession.full", lambda req: self.execution_sessions(req))
        r.add(G, "executionsession/{id}", "executionsession.get", self.execution_session)
        r.add(G, "executionresult", "executionresult.list", self.execution_results)
        r.add(G, "executionresult/full", "executionresult.full", self.execution_results)
        r.add(G, "executionresult/{id}", "executionresult.get",
              lambda req, i: self._one(i, lambda mdl: mdl.results, lambda mdl, x: x))
        for name, attr, full_name in (("app", "apps", "app_full"), ("user", "users", "user_full"),
                                      ("custompropertydefinition", "cpdefs", "cpdef_full"),
                                      ("tag", "tags", "tag_full")):
            r.add(G, name, f"{name}.list", listing(name, attr, full_name, True))
            r.add(G, f"{name}/full", f"{name}.full", listing(name, attr, full_name, False))
            r.add(G, f"{name}/{{id}}", f"{name}.get", single(attr, full_name))
        r.add(P, "notification", "notification.create", self.notification_create)
        r.add("DELETE", "notification", "notification.delete", self.notification_delete)
        r.add(G, "license", "license.get", lambda req: self._locked_json(lambda mdl: mdl.licenses.server_json()))
        r.add(G, "license/accesstypeoverview", "license.overview",
              lambda req: self._locked_json(lambda mdl: mdl.licenses.overview_json()))
        for kind in ("professional", "analyzer"):
            self._license_routes(r, kind)
        r.add(G, "about", "about", lambda req: self._locked_json(lambda mdl: mdl.about))
        r.add(G, "about/api/enums", "about.enums", lambda req: json_response(200, ENUMS))
        return r

    def _license_routes(self, r, kind):
        """Allocations of one access type: list, full list (filterable), one, DELETE."""
        name = f"{kind}accesstype"

        def table(mdl):
            return mdl.licenses.allocations[kind]

        def full(mdl, a):
            return mdl.allocation_full(kind, a)

        def listing(req, condensed):
            with self.sim.lock:
                mdl = self.sim.model
                resp = self._list(req, name, table(mdl), lambda a: full(mdl, a))
            if condensed and resp.status == 200:
                objs = json.loads(resp.body)
                resp = json_response(200, [{k: o[k] for k in ("id", "user", "lastUsed", "excess",
                                                               "quarantined", "privileges")}
                                           for o in objs])
            return resp

        def delete(req, ident):
            if not is_guid(ident):
                return self._malformed()
            with self.sim.lock:
                gone = self.sim.model.licenses.delete(kind, ident)
            return Response(204) if gone else text_response(404, "Not Found")

        r.add("GET", f"license/{name}", f"license.{kind}.list", lambda req: listing(req, True))
        r.add("GET", f"license/{name}/full", f"license.{kind}.full", lambda req: listing(req, False))
        r.add("GET", f"license/{name}/{{id}}", f"license.{kind}.get",
              lambda req, i: self._one(i, table, full))
        r.add("DELETE", f"license/{name}/{{id}}", f"license.{kind}.delete", delete)

    def _locked_json(self, get):
        with self.sim.lock:
            return json_response(200, get(self.sim.model))


def _same(x):
    return x


def _xrf_problem(req):
    """None when the Xrfkey query parameter and header agree, else the reason."""
    values = req.qlower.get("xrfkey")
    if not values:
        return "missing_query"
    header = req.headers.get("x-qlik-xrfkey")
    if header is None:
        return "missing_header"
    if not _XRF_RE.match(values[0]) or not _XRF_RE.match(header):
        return "bad_format"
    if values[0] != header:
        return "mismatch"
    return None


def _after_fault(resp, action):
    """Fault actions that alter a normally produced response."""
    kind = action["type"]
    if kind == "malformed_json":
        if resp.status == 204:
            resp.status = 200
        resp.body = resp.body[: max(1, len(resp.body) // 2)] if resp.body else b'{"value":'
        resp.ctype = JSON_TYPE
    elif kind == "wrong_content_type":
        resp.ctype = "text/html; charset=utf-8"
    elif kind == "empty_body":
        resp.status, resp.body, resp.ctype = 200, b"", JSON_TYPE
    elif kind == "shape":
        resp.body = _reshape(resp.body, action)
        resp.ctype = JSON_TYPE
    else:  # drop (after_*), truncate, slow_body: the transport carries them out
        resp.transport = action
    return resp


def _reshape(body, action):
    """The shape fault: replace the JSON, or remove / set dotted paths in it (in
    every element when the answer is an array)."""
    if action["json"] is not None:
        doc = action["json"]
    else:
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            return body
        for obj in doc if isinstance(doc, list) else [doc]:
            for path in action["remove"]:
                parent, key = _walk(obj, path)
                if isinstance(parent, dict):
                    parent.pop(key, None)
            for path, value in action["set"].items():
                parent, key = _walk(obj, path)
                if isinstance(parent, dict):
                    parent[key] = value
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _walk(obj, dotted):
    keys = dotted.split(".")
    for k in keys[:-1]:
        obj = obj.get(k) if isinstance(obj, dict) else None
    return obj, keys[-1]
