"""The in-memory QRS model: fixture loading (sense-interfaces.md 4.3) and the
response-shaped entities of section 1.5.

Entities are kept as small Python objects and rendered into QRS JSON shapes on
demand, except ExecutionResults: those are stored directly in their full JSON
shape because the run engine mutates them in place and several endpoints serve
them verbatim. All access happens under the simulator's model lock.
"""

from collections import OrderedDict

from . import licenses
from .util import NEVER, TASK_SCHEMA, ZERO_GUID, is_guid, iso_ms

DEFAULT_CREATED = "2025-11-02T08:14:55.120Z"
DEFAULT_MODIFIED = "2026-03-01T12:00:03.554Z"
DEFAULT_MODIFIER = "INTERNAL\\sa_repository"
DEFAULT_NODE = "sense-node-01"
DEFAULT_ABOUT = {
    "buildVersion": "14.187.4",
    "buildDate": "2/5/2025 3:12:41 PM",
    "databaseProvider": "Devart.Data.PostgreSql",
    "nodeType": 1,
    "sharedPersistence": True,
    "requiresBootstrap": False,
    "singleNodeOnly": False,
    "schemaPath": "About",
}

OUTCOMES = ("success", "fail", "error", "abort", "skip", "hang")
RUN_PLAN_DEFAULTS = {
    "outcomes": ["success"],  # consumed one per start
    "cycle": True,            # False: the last outcome repeats once the list is used up
    "durationMs": 200,
    "queueMs": 0,             # time spent Triggered before Started
    "queuedStatus": False,    # show status 3 Queued during queueMs
    "retryDelayMs": 200,
    "abortStepMs": 50,        # 4 -> 5 -> 6 step time
    "udpLeadMs": 0,
    "finalLagMs": 0,
    "distributionLingerMs": 0,
    "scriptLog": None,        # None: a generated Qlik-like log
    "detailsExtra": [],       # extra Information details written at Started
    "errorDetail": "The reload failed. See the script log for details.",
}

# Bounds so a long benchmark cannot grow the simulator without limit.
MAX_RESULTS = 20000
MAX_DOWNLOADS = 10000
DOWNLOAD_TTL_S = 60.0

RESULT_CONDENSED_KEYS = (
    "id", "executingNodeName", "status", "startTime", "stopTime", "duration",
    "fileReferenceID", "scriptLogAvailable", "details", "scriptLogLocation",
    "scriptLogSize", "privileges",
)


class FixtureError(ValueError):
    pass


def _obj(value, where, allowed, required=()):
    """Check that a fixture item is an object with known keys only (typos fail loudly)."""
    if not isinstance(value, dict):
        raise FixtureError(f"{where}: expected an object")
    unknown = set(value) - set(allowed)
    if unknown:
        raise FixtureError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    for key in required:
        if key not in value:
            raise FixtureError(f"{where}: missing {key!r}")
    return value


def _list(value, where):
    if not isinstance(value, list):
        raise FixtureError(f"{where}: expected an array")
    return value


def _guid(value, where, guids):
    if value is None:
        return guids.new()
    if not isinstance(value, str) or not is_guid(value):
        raise FixtureError(f"{where}: {value!r} is not a GUID")
    return value.lower()


class Tag:
    def __init__(self, tag_id, name):
        self.id, self.name = tag_id, name


class CpDef:
    def __init__(self, cp_id, name, value_type, choices, object_types, description):
        self.id, self.name, self.value_type = cp_id, name, value_type
        self.choices, self.object_types, self.description = choices, object_types, description


class CpValue:
    def __init__(self, value_id, definition, value):
        self.id, self.definition, self.value = value_id, definition, value


class User:
    def __init__(self, user_id, directory, userid, name, email, attr_id):
        self.id, self.directory, self.userid, self.name = user_id, directory, userid, name
        self.email, self.attr_id = email, attr_id
        # Read by the licence release rules (neverRelease in the Node.js Butler).
        self.tags, self.cps = [], []
        self.inactive = self.blocked = self.removed_externally = False


class App:
    __slots__ = ("id", "name", "owner", "published", "publish_time", "stream", "tags", "cps",
                 "file_size", "last_reload", "description")


class Task:
    __slots__ = ("id", "name", "task_type", "enabled", "max_retries", "session_timeout", "app",
                 "tags", "cps", "plan", "outcome_index", "operational_id", "next_execution",
                 "created", "modified", "path", "parameters", "last_result", "active_runs")

    def next_outcome(self):
        outcomes = self.plan["outcomes"]
        i = self.outcome_index
        self.outcome_index += 1
        return outcomes[i % len(outcomes)] if self.plan["cycle"] else outcomes[min(i, len(outcomes) - 1)]


def check_run_plan(plan, where):
    _obj(plan, where, RUN_PLAN_DEFAULTS)
    merged = {**RUN_PLAN_DEFAULTS, **plan}
    outcomes = merged["outcomes"]
    if not isinstance(outcomes, list) or not outcomes or any(o not in OUTCOMES for o in outcomes):
        raise FixtureError(f"{where}.outcomes: expected a non-empty list of {list(OUTCOMES)}")
    for key, default in RUN_PLAN_DEFAULTS.items():
        if isinstance(default, int) and not isinstance(default, bool):
            if not isinstance(merged[key], int) or merged[key] < 0:
                raise FixtureError(f"{where}.{key}: expected a non-negative integer (ms)")
    if not isinstance(merged["detailsExtra"], list):
        raise FixtureError(f"{where}.detailsExtra: expected an array of strings")
    return merged


class Model:
    """One loaded fixture plus everything the runs add to it."""

    def __init__(self, doc, guids):
        self.guids = guids
        self.results = OrderedDict()     # ExecutionResult id -> full JSON dict
        self.results_by_execution = {}   # executionID -> [its results] (QRS has it indexed)
        self.by_fileref = {}             # fileReferenceID -> result
        self.script_logs = {}            # result id -> generated lines (list) or fixture text (str)
        self.downloads = OrderedDict()   # download ref -> (result id, expiry wall time)
        self.sessions = {}               # execution session id -> Run (active runs only)
        self._load(_obj(doc, "fixture", (
            "about", "executingNodeName", "users", "tags", "customPropertyDefinitions",
            "apps", "tasks", "executionResults", "licenses")))

    # ---- fixture loading -------------------------------------------------

    def _load(self, doc):
        g = self.guids
        self.about = {**DEFAULT_ABOUT, **_obj(doc.get("about", {}), "about", DEFAULT_ABOUT)}
        self.node_name = doc.get("executingNodeName", DEFAULT_NODE)
        self.node_id = g.new()

        self.users = OrderedDict()
        for i, u in enumerate(_list(doc.get("users", []), "users")):
            where = f"users[{i}]"
            _obj(u, where, ("id", "userDirectory", "userId", "name", "email", "tags",
                            "customProperties", "inactive", "blocked", "removedExternally"),
                 ("userDirectory", "userId"))
            uid = _guid(u.get("id"), where + ".id", g)
            user = self.users[uid] = User(uid, u["userDirectory"], u["userId"],
                                          u.get("name", u["userId"]), u.get("email"), g.new())
            user.inactive = bool(u.get("inactive", False))
            user.blocked = bool(u.get("blocked", False))
            user.removed_externally = bool(u.get("removedExternally", False))

        self.tags = OrderedDict()   # id -> Tag
        self.tag_names = {}         # lower-case name -> Tag
        for i, t in enumerate(_list(doc.get("tags", []), "tags")):
            _obj(t, f"tags[{i}]", ("id", "name"), ("name",))
            self._add_tag(Tag(_guid(t.get("id"), f"tags[{i}].id", g), t["name"]))

        self.cpdefs = OrderedDict()  # id -> CpDef
        self.cpdef_names = {}        # lower-case name -> CpDef
        for i, c in enumerate(_list(doc.get("customPropertyDefinitions", []), "customPropertyDefinitions")):
            where = f"customPropertyDefinitions[{i}]"
            _obj(c, where, ("id", "name", "valueType", "choiceValues", "objectTypes", "description"),
                 ("name",))
            d = CpDef(_guid(c.get("id"), where + ".id", g), c["name"], c.get("valueType", "Text"),
                      list(c.get("choiceValues", [])), list(c.get("objectTypes", ["ReloadTask"])),
                      c.get("description", ""))
            self.cpdefs[d.id] = self.cpdef_names[d.name.lower()] = d

        # User tags and custom properties once tags and definitions exist.
        for i, u in enumerate(doc.get("users", [])):
            user = self.users[_guid(u.get("id"), f"users[{i}].id", g)] if u.get("id") else None
            if user is None:
                if u.get("tags") or u.get("customProperties"):
                    raise FixtureError(f"users[{i}]: tags and customProperties need an explicit id")
                continue
            user.tags = self._tag_refs(u.get("tags", []), f"users[{i}].tags")
            user.cps = self._cp_values(u.get("customProperties", []), f"users[{i}].customProperties",
                                       "User")

        self.licenses = licenses.Licenses(doc.get("licenses", {}), self.users, g, _obj, _list, _guid,
                                          FixtureError)

        self.streams = {}  # name -> stream condensed
        self.apps = OrderedDict()
        for i, a in enumerate(_list(doc.get("apps", []), "apps")):
            self._load_app(a, f"apps[{i}]")

        self.tasks = OrderedDict()
        for i, t in enumerate(_list(doc.get("tasks", []), "tasks")):
            self._load_task(t, f"tasks[{i}]")

        for i, r in enumerate(_list(doc.get("executionResults", []), "executionResults")):
            where = f"executionResults[{i}]"
            _obj(r, where, ("taskId", *_HISTORY_KEYS), ("taskId",))
            task = self.tasks.get(str(r["taskId"]).lower())
            if task is None:
                raise FixtureError(f"{where}.taskId: no such task")
            self._load_history(task, r, where)

    def _add_tag(self, tag):
        self.tags[tag.id] = self.tag_names[tag.name.lower()] = tag
        return tag

    def _tag_refs(self, names, where):
        out = []
        for name in _list(names, where):
            if not isinstance(name, str):
                raise FixtureError(f"{where}: tag names must be strings")
            tag = self.tag_names.get(name.lower())
            if tag is None:  # tags have no constraints, so undeclared ones are created
                tag = self._add_tag(Tag(self.guids.new(), name))
            out.append(tag)
        return out

    def _cp_values(self, items, where, object_type):
        out = []
        for i, cp in enumerate(_list(items, where)):
            _obj(cp, f"{where}[{i}]", ("name", "value"), ("name", "value"))
            definition = self.cpdef_names.get(cp["name"].lower())
            if definition is None:
                raise FixtureError(f"{where}[{i}]: custom property {cp['name']!r} is not defined")
            if object_type not in definition.object_types:
                raise FixtureError(f"{where}[{i}]: custom property {cp['name']!r} does not apply to "
                                   f"{object_type} (objectTypes {definition.object_types})")
            out.append(CpValue(self.guids.new(), definition, str(cp["value"])))
        return out

    def _load_app(self, a, where):
        _obj(a, where, ("id", "name", "ownerUserId", "published", "publishTime", "streamName", "tags",
                        "customProperties", "fileSize", "lastReloadTime", "description"), ("name",))
        app = App()
        app.id = _guid(a.get("id"), where + ".id", self.guids)
        app.name = a["name"]
        owner = a.get("ownerUserId")
        app.owner = None
        if owner is not None:
            app.owner = self.users.get(str(owner).lower())
            if app.owner is None:
                raise FixtureError(f"{where}.ownerUserId: no such user")
        app.published = bool(a.get("published", "streamName" in a))
        app.publish_time = a.get("publishTime", DEFAULT_MODIFIED if app.published else NEVER)
        app.stream = None
        if a.get("streamName"):
            name = a["streamName"]
            app.stream = self.streams.setdefault(name, {"id": self.guids.new(), "name": name,
                                                        "privileges": None})
        app.tags = self._tag_refs(a.get("tags", []), where + ".tags")
        app.cps = self._cp_values(a.get("customProperties", []), where + ".customProperties", "App")
        app.file_size = a.get("fileSize", 10485760)
        app.last_reload = a.get("lastReloadTime", NEVER)
        app.description = a.get("description", "")
        self.apps[app.id] = app

    def _load_task(self, t, where):
        _obj(t, where, ("id", "name", "taskType", "enabled", "maxRetries", "taskSessionTimeout", "appId",
                        "tags", "customProperties", "lastExecution", "run", "nextExecution",
                        "createdDate", "modifiedDate", "path", "parameters"), ("name",))
        task = Task()
        task.id = _guid(t.get("id"), where + ".id", self.guids)
        if task.id in self.tasks:
            raise FixtureError(f"{where}.id: duplicate task id")
        task.name = t["name"]
        task.task_type = t.get("taskType", 0)
        if task.task_type not in TASK_SCHEMA:
            raise FixtureError(f"{where}.taskType: expected 0..4")
        task.enabled = bool(t.get("enabled", True))
        task.max_retries = int(t.get("maxRetries", 0))
        task.session_timeout = int(t.get("taskSessionTimeout", 1440))
        task.app = None
        if task.task_type in (0, 4):
            app_id = t.get("appId")
            if app_id is None:
                raise FixtureError(f"{where}.appId: reload and preload tasks need an app")
            task.app = self.apps.get(str(app_id).lower())
            if task.app is None:
                raise FixtureError(f"{where}.appId: no such app")
        elif "appId" in t:
            raise FixtureError(f"{where}.appId: only reload (0) and preload (4) tasks have an app")
        task.tags = self._tag_refs(t.get("tags", []), where + ".tags")
        task.cps = self._cp_values(t.get("customProperties", []), where + ".customProperties",
                                   TASK_SCHEMA[task.task_type])
        task.plan = check_run_plan(t.get("run", {}), where + ".run")
        task.outcome_index = 0
        task.operational_id = self.guids.new()
        task.next_execution = t.get("nextExecution", NEVER)
        task.created = t.get("createdDate", DEFAULT_CREATED)
        task.modified = t.get("modifiedDate", DEFAULT_MODIFIED)
        task.path = t.get("path", "C:\\Scripts\\run.cmd" if task.task_type == 1 else None)
        task.parameters = t.get("parameters", "")
        task.active_runs = []
        task.last_result = self._never_result()
        self.tasks[task.id] = task
        if "lastExecution" in t:
            self._load_history(task, t["lastExecution"], where + ".lastExecution")

    def _load_history(self, task, h, where):
        """A past ExecutionResult from the fixture; it becomes the task's newest result."""
        _obj(h, where, _HISTORY_KEYS)
        status = h.get("status", 7)
        if not isinstance(status, int) or not 0 <= status <= 14:
            raise FixtureError(f"{where}.status: expected 0..14")
        stop = h.get("stopTime", "2026-03-14T01:16:07.482Z")
        details = []
        for d in _list(h.get("details", []), where + ".details"):
            if isinstance(d, str):
                d = {"message": d}
            _obj(d, where + ".details[]", ("message", "detailsType", "detailCreatedDate"), ("message",))
            details.append({"id": self.guids.new(), "detailsType": d.get("detailsType", 2),
                            "message": d["message"], "detailCreatedDate": d.get("detailCreatedDate", stop),
                            "privileges": None})
        r = self.new_result(task, h.get("executionId") or self.guids.new(), None, DEFAULT_MODIFIER)
        r["status"] = status
        r["startTime"] = h.get("startTime", "2026-03-14T01:15:02.311Z")
        r["stopTime"] = stop
        r["duration"] = h.get("duration", 65171)
        r["executingNodeName"] = h.get("executingNodeName", self.node_name)
        r["createdDate"] = r["modifiedDate"] = r["startTime"]
        r["details"] = details
        if status > 1:
            self.attach_script_log(task, r, None, h.get("scriptLog"))
            self.finish_script_log(r, status)

    # ---- PATCH /_sim/tasks/{id} ---------------------------------------------

    def patch_task(self, task, changes):
        """Mutate a task in place. Everything is validated before anything changes."""
        where = "patch"
        _obj(changes, where, ("enabled", "name", "maxRetries", "taskSessionTimeout", "tags",
                              "customProperties", "run", "status", "lastExecution", "nextExecution"))
        updates = {}
        if "tags" in changes:
            updates["tags"] = self._tag_refs(changes["tags"], where + ".tags")
        if "customProperties" in changes:
            updates["cps"] = self._cp_values(changes["customProperties"], where + ".customProperties",
                                             TASK_SCHEMA[task.task_type])
        if "run" in changes:  # merged into the current plan; outcomes start over
            run = _obj(changes["run"], where + ".run", RUN_PLAN_DEFAULTS)
            updates["plan"] = check_run_plan({**task.plan, **run}, where + ".run")
        status = changes.get("status")
        if status is not None and (not isinstance(status, int) or not 0 <= status <= 14):
            raise FixtureError(f"{where}.status: expected 0..14")
        for key in ("maxRetries", "taskSessionTimeout"):
            if key in changes and (not isinstance(changes[key], int) or changes[key] < 0):
                raise FixtureError(f"{where}.{key}: expected a non-negative integer")
        if "lastExecution" in changes:
            self._load_history(task, changes["lastExecution"], where + ".lastExecution")
        if "enabled" in changes:
            task.enabled = bool(changes["enabled"])
        task.name = changes.get("name", task.name)
        task.max_retries = changes.get("maxRetries", task.max_retries)
        task.session_timeout = changes.get("taskSessionTimeout", task.session_timeout)
        task.next_execution = changes.get("nextExecution", task.next_execution)
        task.tags = updates.get("tags", task.tags)
        task.cps = updates.get("cps", task.cps)
        if "plan" in updates:
            task.plan, task.outcome_index = updates["plan"], 0
        if status is not None:  # e.g. force status 8 to exercise a failure path
            task.last_result["status"] = status

    # ---- execution results and script logs -------------------------------

    def new_result(self, task, execution_id, t_wall, modifier):
        now = iso_ms(t_wall) if t_wall is not None else DEFAULT_MODIFIED
        r = {
            "id": self.guids.new(), "createdDate": now, "modifiedDate": now,
            "modifiedByUserName": modifier, "taskID": task.id, "executionID": execution_id,
            "appID": task.app.id if task.app else ZERO_GUID, "executingNodeID": self.node_id,
            "executingNodeName": self.node_name, "status": 0, "startTime": NEVER, "stopTime": NEVER,
            "duration": 0, "fileReferenceID": ZERO_GUID, "scriptLogAvailable": False,
            "scriptLogLocation": "", "scriptLogSize": 0, "details": [], "privileges": None,
            "schemaPath": "ExecutionResult",
        }
        self.results[r["id"]] = r
        self.results_by_execution.setdefault(r["executionID"].lower(), []).append(r)
        if len(self.results) > MAX_RESULTS:
            _, old = self.results.popitem(last=False)
            runs = self.results_by_execution.get(old["executionID"].lower(), [])
            runs[:] = [x for x in runs if x is not old]
            if not runs:
                self.results_by_execution.pop(old["executionID"].lower(), None)
            self.by_fileref.pop(old["fileReferenceID"], None)
            self.script_logs.pop(old["id"], None)
        task.last_result = r
        return r

    def _never_result(self):
        """What QRS shows for a task that never ran (not listed under /executionresult)."""
        return {"id": self.guids.new(), "executingNodeName": "", "status": 0, "startTime": NEVER,
                "stopTime": NEVER, "duration": 0, "fileReferenceID": ZERO_GUID,
                "scriptLogAvailable": False, "details": [], "scriptLogLocation": "",
                "scriptLogSize": 0, "privileges": None}

    def attach_script_log(self, task, r, t_wall, text):
        """Give a result its fileReferenceID and the beginning of its script log."""
        fid = self.guids.new()
        r["fileReferenceID"] = fid
        self.by_fileref[fid] = r
        stamp = _log_stamp(r["startTime"]) if t_wall is None else _log_stamp(iso_ms(t_wall))
        if task.app is not None:
            r["scriptLogLocation"] = (f"{self.node_name}\\Script\\{task.app.id}.{stamp}."
                                      f"{fid.replace('-', '')[:16].upper()}.log")
        if text is not None:  # a fixture's own log text is served verbatim
            self.script_logs[r["id"]] = text
        else:
            self.script_logs[r["id"]] = [
                f"{stamp} Execution started.",
                f"{stamp} Qlik Sense Server Version {self.about['buildVersion']}",
                f"{stamp} Task: {task.name}",
                f"{stamp} App: {task.app.name if task.app else ''}",
                f"{stamp} LOAD * INLINE [Region, Amount];",
            ]

    def finish_script_log(self, r, status):
        log = self.script_logs.get(r["id"])
        if log is None:
            return
        if isinstance(log, list):
            word = "Execution finished." if status == 7 else "Execution Failed"
            log.append(f"{_log_stamp(r['stopTime'])} {word}")
        r["scriptLogAvailable"] = True
        r["scriptLogSize"] = len(self.script_log_text(r["id"]).encode("utf-8"))

    def script_log_text(self, result_id):
        log = self.script_logs.get(result_id)
        if log is None or isinstance(log, str):
            return log
        return "\r\n".join(log) + "\r\n"

    def new_download(self, result_id, now):
        ref = self.guids.new()
        self.downloads[ref] = (result_id, now + DOWNLOAD_TTL_S)
        if len(self.downloads) > MAX_DOWNLOADS:
            self.downloads.popitem(last=False)
        return ref

    def take_download(self, ref, now):
        """Refs are single-use and expire, like QRS's download references."""
        entry = self.downloads.pop(ref, None)
        if entry is None or entry[1] < now:
            return None
        return self.script_log_text(entry[0])

    # ---- response shapes ---------------------------------------------------

    @staticmethod
    def tag_ref(tag):
        return {"id": tag.id, "name": tag.name, "privileges": None}

    @staticmethod
    def tag_full(tag):
        return {"id": tag.id, "createdDate": DEFAULT_CREATED, "modifiedDate": DEFAULT_MODIFIED,
                "modifiedByUserName": DEFAULT_MODIFIER, "name": tag.name, "privileges": None,
                "schemaPath": "Tag"}

    @staticmethod
    def cpdef_condensed(d):
        return {"id": d.id, "name": d.name, "valueType": d.value_type, "choiceValues": d.choices,
                "privileges": None}

    @staticmethod
    def cpdef_full(d):
        return {"id": d.id, "createdDate": DEFAULT_CREATED, "modifiedDate": DEFAULT_MODIFIED,
                "modifiedByUserName": DEFAULT_MODIFIER, "name": d.name, "valueType": d.value_type,
                "choiceValues": d.choices, "objectTypes": d.object_types, "description": d.description,
                "privileges": None, "schemaPath": "CustomPropertyDefinition"}

    def cp_value(self, v):
        return {"id": v.id, "createdDate": DEFAULT_CREATED, "modifiedDate": DEFAULT_MODIFIED,
                "modifiedByUserName": DEFAULT_MODIFIER, "value": v.value,
                "definition": self.cpdef_condensed(v.definition), "privileges": None,
                "schemaPath": "CustomPropertyValue"}

    @staticmethod
    def user_condensed(u):
        return {"id": u.id, "userId": u.userid, "userDirectory": u.directory, "name": u.name,
                "privileges": None}

    def user_full(self, u):
        attributes = []
        if u.email:
            attributes.append({"id": u.attr_id, "createdDate": DEFAULT_CREATED,
                               "modifiedDate": DEFAULT_MODIFIED, "modifiedByUserName": DEFAULT_MODIFIER,
                               "attributeType": "email", "attributeValue": u.email,
                               "externalId": u.attr_id, "schemaPath": "UserAttribute"})
        return {"id": u.id, "createdDate": DEFAULT_CREATED, "modifiedDate": DEFAULT_MODIFIED,
                "modifiedByUserName": DEFAULT_MODIFIER, "userId": u.userid,
                "userDirectory": u.directory, "name": u.name, "roles": [], "attributes": attributes,
                "inactive": u.inactive, "removedExternally": u.removed_externally,
                "blacklisted": u.blocked, "deleteProhibited": False,
                "tags": [self.tag_ref(t) for t in u.tags],
                "customProperties": [self.cp_value(v) for v in u.cps], "privileges": None,
                "schemaPath": "User"}

    def allocation_full(self, kind, a):
        return self.licenses.allocation_json(kind, a, self.user_condensed)

    @staticmethod
    def app_condensed(a):
        return {"id": a.id, "name": a.name, "appId": "", "publishTime": a.publish_time,
                "published": a.published, "stream": a.stream, "savedInProductVersion": "14.187.4",
                "migrationHash": "9b2a8b1c5e7d4f3a0c6e8d2b1a4f7c9e0d3b5a6c",
                "availabilityStatus": 0, "privileges": None}

    def app_full(self, a):
        return {"id": a.id, "createdDate": DEFAULT_CREATED, "modifiedDate": DEFAULT_MODIFIED,
                "modifiedByUserName": DEFAULT_MODIFIER,
                "customProperties": [self.cp_value(v) for v in a.cps],
                "owner": self.user_condensed(a.owner) if a.owner else None,
                "name": a.name, "appId": "", "sourceAppId": ZERO_GUID, "targetAppId": ZERO_GUID,
                "publishTime": a.publish_time, "published": a.published,
                "tags": [self.tag_ref(t) for t in a.tags], "description": a.description,
                "stream": a.stream, "fileSize": a.file_size, "lastReloadTime": a.last_reload,
                "thumbnail": "", "savedInProductVersion": "14.187.4",
                "migrationHash": "9b2a8b1c5e7d4f3a0c6e8d2b1a4f7c9e0d3b5a6c", "dynamicColor": "",
                "availabilityStatus": 0, "privileges": None, "schemaPath": "App"}

    @staticmethod
    def result_condensed(r):
        return {k: r[k] for k in RESULT_CONDENSED_KEYS}

    def task_full(self, t):
        """The Task/ReloadTask shape of section 1.5 (also used for filtering)."""
        d = {"id": t.id, "createdDate": t.created, "modifiedDate": t.modified,
             "modifiedByUserName": DEFAULT_MODIFIER, "name": t.name, "taskType": t.task_type,
             "enabled": t.enabled, "taskSessionTimeout": t.session_timeout,
             "maxRetries": t.max_retries, "tags": [self.tag_ref(x) for x in t.tags],
             "customProperties": [self.cp_value(v) for v in t.cps]}
        if t.task_type in (0, 4):
            d["app"] = self.app_condensed(t.app)
        if t.task_type == 0:
            d["isPartialReload"] = False
        elif t.task_type == 1:
            d["path"] = t.path
            d["parameters"] = t.parameters
        d["isManuallyTriggered"] = False
        d["operational"] = {"id": t.operational_id,
                            "lastExecutionResult": self.result_condensed(t.last_result),
                            "nextExecution": t.next_execution, "privileges": None}
        d["privileges"] = None
        d["schemaPath"] = TASK_SCHEMA[t.task_type]
        return d

    @staticmethod
    def task_condensed(t):
        return {"id": t.id, "name": t.name, "taskType": t.task_type, "enabled": t.enabled,
                "privileges": None}

    def session_prototype(self):
        """A session carrying every property path a live one can have (for the filter engine)."""
        t = next(iter(self.tasks.values()))
        condensed = self.task_condensed(t)
        return {"id": GUID_ZERO_PROTOTYPE, "createdDate": t.created, "modifiedDate": t.created,
                "modifiedByUserName": DEFAULT_MODIFIER, "reloadTask": condensed,
                "externalProgramTask": condensed, "userSyncTask": condensed,
                "app": {"id": GUID_ZERO_PROTOTYPE, "name": "a", "privileges": None},
                "executingNodeID": self.node_id,
                "executionResult": {"id": GUID_ZERO_PROTOTYPE, "privileges": None},
                "privileges": None, "schemaPath": "ExecutionSession"}

    def session(self, run):
        t = run.task
        typed = {0: "reloadTask", 1: "externalProgramTask", 2: "userSyncTask"}.get(t.task_type, "task")
        return {"id": run.sid, "createdDate": run.created, "modifiedDate": run.created,
                "modifiedByUserName": DEFAULT_MODIFIER, typed: self.task_condensed(t),
                "app": {"id": t.app.id, "name": t.app.name, "privileges": None} if t.app else None,
                "executingNodeID": self.node_id,
                "executionResult": {"id": run.result["id"], "privileges": None},
                "privileges": None, "schemaPath": "ExecutionSession"}


GUID_ZERO_PROTOTYPE = "00000000-0000-4000-8000-0000000000ff"

_HISTORY_KEYS = ("status", "startTime", "stopTime", "duration", "details", "scriptLog",
                 "executionId", "executingNodeName")


def _log_stamp(iso):
    """2026-03-14T01:15:02.311Z -> 20260314T011502.311+0000 (Qlik script-log time stamps)."""
    return iso[0:4] + iso[5:7] + iso[8:10] + "T" + iso[11:13] + iso[14:16] + iso[17:23] + "+0000"


# A fixture with one of everything, so the filter engine can learn every
# property path (including those through arrays) of each entity kind.
PROTOTYPE_FIXTURE = {
    "users": [{"id": "00000000-0000-4000-8000-000000000001", "userDirectory": "D", "userId": "u",
               "email": "u@example.com", "tags": ["t"], "customProperties": [{"name": "P", "value": "a"}]}],
    "customPropertyDefinitions": [{"name": "P", "choiceValues": ["a"],
                                   "objectTypes": ["App", "User", *TASK_SCHEMA.values()]}],
    "licenses": {kind: {"total": 1, "allocations": [{"userId": "00000000-0000-4000-8000-000000000001",
                                                     "lastUsedDaysAgo": 1}]}
                 for kind in licenses.ACCESS_KINDS},
    "apps": [{"id": "00000000-0000-4000-8000-000000000002", "name": "A", "streamName": "S",
              "ownerUserId": "00000000-0000-4000-8000-000000000001", "tags": ["t"],
              "customProperties": [{"name": "P", "value": "a"}]}],
    "tasks": [
        {"name": "T0", "taskType": 0, "appId": "00000000-0000-4000-8000-000000000002", "tags": ["t"],
         "customProperties": [{"name": "P", "value": "a"}],
         "lastExecution": {"status": 7, "details": ["d"]}},
        {"name": "T1", "taskType": 1, "tags": ["t"], "customProperties": [{"name": "P", "value": "a"}]},
    ],
}


def prototype_objects(guids):
    """kind -> sample response objects covering every property path of that kind."""
    m = Model(PROTOTYPE_FIXTURE, guids)
    return {
        "task": [m.task_full(t) for t in m.tasks.values()],
        "app": [m.app_full(a) for a in m.apps.values()],
        "user": [m.user_full(u) for u in m.users.values()],
        "custompropertydefinition": [m.cpdef_full(d) for d in m.cpdefs.values()],
        "tag": [m.tag_full(t) for t in m.tags.values()],
        "executionresult": list(m.results.values()),
        "executionsession": [m.session_prototype()],
        **{f"{kind}accesstype": [m.allocation_full(kind, a) for a in m.licenses.allocations[kind].values()]
           for kind in licenses.ACCESS_KINDS},
    }
