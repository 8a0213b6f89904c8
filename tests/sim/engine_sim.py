#!/usr/bin/python3
"""Qlik Sense engine (QIX) simulator for Butler's tests.

A WebSocket server over TLS that requires a client certificate signed by the
given CA and an X-Qlik-User header, speaks JSON-RPC 2.0 as the engine does on
port 4747 (/app/<appId> and /app/engineData), pushes the engine's
notifications (OnAuthenticationInformation, OnConnected) on connect, and
implements the calls Butler makes: EngineVersion, GetDocList, OpenDoc,
DoReloadEx, DoReload, GetProgress, DoSave, GetAppLayout, GetAppProperties,
GetScript, GetConnections, CreateSessionObject + GetLayout (object lists),
GetObject + GetFullPropertyTree, GetDimension/GetMeasure/GetBookmark/
GetVariableById + GetProperties, GetLineage.

    engine_sim.py --server-cert server.pem --server-key server_key.pem --ca root.pem \
                  [--port 0] [--control-port 0]

Prints "READY <port> <control-port>". Control API (plain HTTP on loopback):
  GET  /calls            every call so far: [{method, handle, params, app, user}]
  GET  /stats            {"open": n, "peak": n, "connections": n, "saves": {appId: n}}
  POST /fault            {"reload": null|"script_error"|"hang"|"drop",
                          "reload_ms": n, "refuse_certificate": bool,
                          "lineage": null|"error" (GetLineage answers an engine error)}
  POST /reset            clear calls, stats and faults
  POST /app              {"id", "name", "lastReloadTime"?}: add or change an app
Python standard library plus python3-websockets (Debian 12: 10.4).
"""

import argparse
import asyncio
import datetime
import http
import http.server
import json
import signal
import ssl
import sys
import threading

import websockets
import websockets.server

SCRIPT_ERROR = "Field 'Amount' not found"


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def default_apps():
    return {
        "a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34": {"name": "Sales", "lastReloadTime": "2026-01-01T00:00:00.000Z"},
        "b4d0f8e3-2a5c-4f9b-87e6-8d3fa01b2c45": {"name": "Finance", "lastReloadTime": "2026-01-01T00:00:00.000Z"},
        "c5e1a9f4-3b6d-4a0c-98f7-9e4ab12c3d56": {"name": "HR", "lastReloadTime": "2026-01-01T00:00:00.000Z"},
    }


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.apps = default_apps()
            self.calls = []
            self.open = 0
            self.peak = 0
            self.connections = 0
            self.saves = {}
            self.fault = {"reload": None, "reload_ms": 50, "refuse_certificate": False,
                          "lineage": None}

    def snapshot(self):
        with self.lock:
            return {"open": self.open, "peak": self.peak, "connections": self.connections,
                    "saves": dict(self.saves)}


STATE = State()


class RpcError(Exception):
    def __init__(self, code, message, parameter=""):
        super().__init__(message)
        self.code, self.message, self.parameter = code, message, parameter


def param(params, name, index, default=None):
    """QIX accepts params by name (object) or by position (array)."""
    if isinstance(params, dict):
        return params.get(name, default)
    if isinstance(params, list) and len(params) > index:
        return params[index]
    return default


class Session:
    """One WebSocket connection: its handles and the reload progress."""

    def __init__(self, websocket, app_path, user):
        self.ws = websocket
        self.app_path = app_path
        self.user = user
        self.handles = {}  # handle -> ("doc", appId) | ("list", defs) | ("object", kind, id)
        self.next_handle = 1
        self.progress = {}  # request id -> {"messages": [...], "errors": [...]}

    def new_handle(self, value):
        handle = self.next_handle
        self.next_handle += 1
        self.handles[handle] = value
        return handle

    def doc_id(self, handle):
        entry = self.handles.get(handle)
        if not entry or entry[0] != "doc":
            raise RpcError(-32602, "Invalid handle", str(handle))
        return entry[1]

    async def call(self, request):
        method = request.get("method")
        handle = request.get("handle", -1)
        params = request.get("params", [])
        with STATE.lock:
            STATE.calls.append({"method": method, "handle": handle, "params": params,
                                "app": self.app_path, "user": self.user})
        if handle == -1:
            return await self.global_call(method, params, request)
        entry = self.handles.get(handle)
        if entry is None:
            raise RpcError(-32602, "Invalid handle", str(handle))
        if entry[0] == "doc":
            return await self.doc_call(entry[1], method, params, request)
        return self.object_call(entry, method, params)

    async def global_call(self, method, params, request):
        if method == "EngineVersion":
            return {"qVersion": {"qComponentVersion": "14.20.0"}}
        if method == "GetDocList":
            with STATE.lock:
                return {"qDocList": [{"qDocName": a["name"], "qDocId": i, "qTitle": a["name"],
                                      "qLastReloadTime": a["lastReloadTime"], "qMeta": {}}
                                     for i, a in STATE.apps.items()]}
        if method == "OpenDoc":
            app_id = param(params, "qDocName", 0)
            with STATE.lock:
                known = app_id in STATE.apps
            if not known:
                raise RpcError(1002, "App not found", app_id or "")
            if self.app_path not in ("engineData", app_id):
                raise RpcError(1002, "App not found", "socket opened for another app")
            return {"qReturn": {"qType": "Doc", "qHandle": self.new_handle(("doc", app_id)),
                                "qGenericId": app_id}}
        if method == "GetProgress":
            rid = param(params, "qRequestId", 0, 0)
            progress = self.progress.get(rid, {"messages": [], "errors": []})
            messages, progress["messages"] = progress["messages"], []
            return {"qProgressData": {
                "qStarted": True, "qFinished": False, "qCompleted": 0, "qTotal": 0,
                "qKB": 0, "qMillisecs": 0, "qUserInteractionWanted": False,
                "qPersistentProgress": "\n".join(messages), "qTransientProgress": "",
                "qErrorData": [{"qErrorString": e, "qLineEnd": "", "qLine": e,
                                "qErrorDataCode": 0, "qMessage": {}} for e in progress["errors"]],
                "qPersistentProgressMessages": [], "qImmediateProgress": {}}}
        if method == "CancelReload":
            return {}
        raise RpcError(-32601, "Method not found", method or "")

    async def reload(self, app_id, request, mode, partial):
        rid = request.get("id")
        progress = self.progress.setdefault(rid, {"messages": [], "errors": []})
        with STATE.lock:
            fault = dict(STATE.fault)
        progress["messages"].append(f"Started loading data (mode {mode}, partial {partial})")
        await asyncio.sleep(fault["reload_ms"] / 2000)
        progress["messages"].append("Sales << sales.qvd 1,000 Lines fetched")
        if fault["reload"] == "hang":
            await asyncio.Event().wait()  # until the socket goes away
        if fault["reload"] == "drop":
            await self.ws.close(code=1011)
            raise asyncio.CancelledError()
        await asyncio.sleep(fault["reload_ms"] / 2000)
        if fault["reload"] == "script_error":
            progress["errors"].append(SCRIPT_ERROR)
            progress["messages"].append(f"The following error occurred: {SCRIPT_ERROR}")
            return False
        progress["messages"].append("App saved")
        with STATE.lock:
            STATE.apps[app_id]["lastReloadTime"] = now_iso()
        return True

    async def doc_call(self, app_id, method, params, request):
        with STATE.lock:
            app = dict(STATE.apps.get(app_id, {}))
        if method == "DoReloadEx":
            p = param(params, "qParams", 0, {}) or {}
            ok = await self.reload(app_id, request, p.get("qMode", 0), p.get("qPartial", False))
            return {"qResult": {"qSuccess": ok, "qScriptLogFile": f"C:\\Logs\\{app_id}.log",
                                "qEndedWithErrors": not ok}}
        if method == "DoReload":
            ok = await self.reload(app_id, request, param(params, "qMode", 0, 0),
                                   param(params, "qPartial", 1, False))
            return {"qReturn": ok}
        if method == "DoSave":
            with STATE.lock:
                STATE.saves[app_id] = STATE.saves.get(app_id, 0) + 1
            return {}
        if method == "GetAppLayout":
            return {"qLayout": {"qTitle": app.get("name"), "qFileName": app_id,
                                "qLastReloadTime": app.get("lastReloadTime"), "qHasScript": True,
                                "qIsPartialReload": False, "qHasData": True}}
        if method == "GetAppProperties":
            return {"qProp": {"qTitle": app.get("name"), "qLastReloadTime": app.get("lastReloadTime"),
                              "sheetTitleBgColor": "#F2F2F2"}}
        if method == "GetScript":
            return {"qScript": f"// {app.get('name')}\nLOAD * FROM [lib://Data/sales.qvd] (qvd);\n"}
        if method == "GetLineage":
            # Doc.GetLineage (Qlik's Engine JSON API; .NET SDK LineageInfo): qLineage, one
            # LineageInfo per LOAD/SELECT/STORE statement of the script, qDiscriminator saying
            # where the data comes from (the file name for a file, INLINE, RESIDENT <table>,
            # AUTOGENERATE, the provider of a connection, STORE for a stored file) and qStatement
            # the statement itself.
            with STATE.lock:
                fault = STATE.fault.get("lineage")
            if fault == "error":
                raise RpcError(-128, "Internal engine error", "GetLineage")
            return {"qLineage": [
                {"qDiscriminator": "lib://Data/sales.qvd",
                 "qStatement": "LOAD * FROM [lib://Data/sales.qvd] (qvd)"},
                {"qDiscriminator": "RESIDENT Sales",
                 "qStatement": "LOAD Region, Sum(Amount) AS Amount RESIDENT Sales GROUP BY Region"}]}
        if method == "GetConnections":
            return {"qConnections": [{"qId": "f1e2d3c4-0000-4000-8000-000000000001",
                                      "qName": "Data", "qConnectionString": "C:\\Data",
                                      "qType": "folder"}]}
        if method == "CreateSessionObject":
            prop = param(params, "qProp", 0, {})
            return {"qReturn": {"qType": "GenericObject",
                                "qHandle": self.new_handle(("list", prop)),
                                "qGenericType": prop.get("qInfo", {}).get("qType", ""),
                                "qGenericId": "session-list"}}
        getters = {"GetObject": ("object", "GenericObject"),
                   "GetDimension": ("dimension", "GenericDimension"),
                   "GetMeasure": ("measure", "GenericMeasure"),
                   "GetBookmark": ("bookmark", "GenericBookmark"),
                   "GetVariableById": ("variable", "GenericVariable")}
        if method in getters:
            object_id = param(params, "qId", 0)
            kind, qtype = getters[method]
            generic = next((k for k, ids in LIST_ITEMS.items() if object_id in ids), kind)
            return {"qReturn": {"qType": qtype, "qGenericType": generic,
                                "qHandle": self.new_handle(("object", kind, object_id)),
                                "qGenericId": object_id}}
        raise RpcError(-32601, "Method not found", method or "")

    def object_call(self, entry, method, params):
        if entry[0] == "list" and method == "GetLayout":
            return {"qLayout": list_layout(entry[1])}
        if entry[0] == "object" and method in ("GetProperties", "GetFullPropertyTree"):
            props = {"qInfo": {"qId": entry[2], "qType": entry[1]}, "title": f"{entry[1]} {entry[2]}"}
            if method == "GetFullPropertyTree":
                return {"qPropEntry": {"qProperty": props, "qChildren": [], "qEmbeddedSnapshotRef": None}}
            return {"qProp": props}
        raise RpcError(-32601, "Method not found", method or "")


# Two items of every kind an app dump lists.
LIST_ITEMS = {
    "sheet": ["sheet-1", "sheet-2"], "story": ["story-1"], "masterobject": ["master-1"],
    "appprops": ["AppPropsList"], "dimension": ["dim-1", "dim-2"], "measure": ["meas-1"],
    "bookmark": ["bm-1"], "snapshot": ["snap-1"], "variable": ["var-1", "var-2"],
}


def list_layout(prop):
    """GetLayout of a session object: every *ListDef member becomes its list."""
    layout = {"qInfo": prop.get("qInfo", {})}
    for name, definition in prop.items():
        if not isinstance(definition, dict):
            continue
        if "qAppObjectListDef" in definition:
            kind = definition["qAppObjectListDef"].get("qType")
            layout[name] = {"qAppObjectList": {"qItems": [
                {"qInfo": {"qId": i, "qType": kind}, "qMeta": {"title": i}, "qData": {}}
                for i in LIST_ITEMS.get(kind, [])]}}
        elif "qDimensionListDef" in definition:
            layout[name] = {"qDimensionList": {"qItems": [
                {"qInfo": {"qId": i, "qType": "dimension"}, "qMeta": {}} for i in LIST_ITEMS["dimension"]]}}
        elif "qMeasureListDef" in definition:
            layout[name] = {"qMeasureList": {"qItems": [
                {"qInfo": {"qId": i, "qType": "measure"}, "qMeta": {}} for i in LIST_ITEMS["measure"]]}}
        elif "qBookmarkListDef" in definition:
            kind = definition["qBookmarkListDef"].get("qType", "bookmark")
            layout[name] = {"qBookmarkList": {"qItems": [
                {"qInfo": {"qId": i, "qType": kind}, "qMeta": {}} for i in LIST_ITEMS.get(kind, [])]}}
        elif "qVariableListDef" in definition:
            layout[name] = {"qVariableList": {"qItems": [
                {"qName": f"v{i}", "qDefinition": "1", "qInfo": {"qId": i, "qType": "variable"}}
                for i in LIST_ITEMS["variable"]]}}
        elif "qFieldListDef" in definition:
            layout[name] = {"qFieldList": {"qItems": [
                {"qName": "Amount", "qCardinal": 1000, "qTags": ["$numeric"]},
                {"qName": "Region", "qCardinal": 12, "qTags": ["$text"]}]}}
        elif "qMediaListDef" in definition:
            layout[name] = {"qMediaList": {"qItems": [
                {"qUrlDef": "/media/Logo.png", "qUrl": "/media/Logo.png"}]}}
    return layout


def user_of(headers):
    value = headers.get("X-Qlik-User", "")
    parts = dict(p.strip().split("=", 1) for p in value.split(";") if "=" in p)
    if not parts.get("UserDirectory") or not parts.get("UserId"):
        return None
    return f"{parts['UserDirectory']}\\{parts['UserId']}"


async def process_request(path, headers):
    with STATE.lock:
        refuse = STATE.fault["refuse_certificate"]
    if refuse:
        return (http.HTTPStatus.FORBIDDEN, [("Content-Type", "text/plain")], b"Certificate not accepted\n")
    if not path.startswith("/app/") or len(path) <= len("/app/"):
        return (http.HTTPStatus.NOT_FOUND, [("Content-Type", "text/plain")], b"Not found\n")
    if user_of(headers) is None:
        return (http.HTTPStatus.UNAUTHORIZED, [("Content-Type", "text/plain")], b"X-Qlik-User header missing\n")
    return None


async def handler(websocket, path):
    user = user_of(websocket.request_headers)
    app_path = path[len("/app/"):].split("?")[0]
    with STATE.lock:
        STATE.open += 1
        STATE.connections += 1
        STATE.peak = max(STATE.peak, STATE.open)
    session = Session(websocket, app_path, user)
    tasks = set()
    try:
        directory, _, user_id = user.partition("\\")
        await websocket.send(json.dumps({"jsonrpc": "2.0", "method": "OnAuthenticationInformation",
                                         "params": {"userId": user_id, "userDirectory": directory,
                                                    "logoutUri": "https://localhost/qps/user",
                                                    "mustAuthenticate": False}}))
        await websocket.send(json.dumps({"jsonrpc": "2.0", "method": "OnConnected",
                                         "params": {"qSessionState": "SESSION_CREATED"}}))
        async for text in websocket:
            try:
                request = json.loads(text)
            except ValueError:
                continue
            task = asyncio.ensure_future(answer(session, request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except websockets.ConnectionClosed:
        pass
    finally:
        # Calls in progress are not cancelled: a real engine finishes a reload
        # whose client went away (what Butler's replay check relies on).
        with STATE.lock:
            STATE.open -= 1


async def answer(session, request):
    reply = {"jsonrpc": "2.0", "id": request.get("id")}
    try:
        reply["result"] = await session.call(request)
    except RpcError as e:
        reply["error"] = {"code": e.code, "parameter": e.parameter, "message": e.message}
    except asyncio.CancelledError:
        return
    try:
        await session.ws.send(json.dumps(reply))
    except websockets.ConnectionClosed:
        pass


class Control(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/calls":
            with STATE.lock:
                return self.reply(200, list(STATE.calls))
        if self.path == "/stats":
            return self.reply(200, STATE.snapshot())
        if self.path == "/apps":
            with STATE.lock:
                return self.reply(200, STATE.apps)
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/fault":
            with STATE.lock:
                STATE.fault.update(body)
            return self.reply(200, STATE.fault)
        if self.path == "/reset":
            STATE.reset()
            return self.reply(200, {})
        if self.path == "/app":
            with STATE.lock:
                entry = STATE.apps.setdefault(body["id"], {"name": body["id"],
                                                            "lastReloadTime": now_iso()})
                entry.update({k: v for k, v in body.items() if k != "id"})
            return self.reply(200, {})
        self.reply(404, {"error": "not found"})


def main(argv=None):
    p = argparse.ArgumentParser(description="Qlik Sense engine (QIX) simulator")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--control-port", type=int, default=0)
    p.add_argument("--server-cert", required=True)
    p.add_argument("--server-key", required=True)
    p.add_argument("--ca", required=True, help="trust anchor for client certificates")
    args = p.parse_args(argv)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.server_cert, args.server_key)
    context.load_verify_locations(args.ca)
    context.verify_mode = ssl.CERT_REQUIRED

    control = http.server.ThreadingHTTPServer(("127.0.0.1", args.control_port), Control)
    threading.Thread(target=control.serve_forever, daemon=True).start()

    async def run():
        stop = asyncio.get_running_loop().create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        async with websockets.server.serve(handler, "127.0.0.1", args.port, ssl=context,
                                           process_request=process_request,
                                           max_size=1 << 20, ping_interval=None) as server:
            port = server.sockets[0].getsockname()[1]
            print(f"READY {port} {control.server_address[1]}", flush=True)
            await stop

    asyncio.run(run())
    control.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
