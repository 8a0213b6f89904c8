#!/usr/bin/env python3
"""Qlik Sense log-appender emulator (sense-interfaces.md section 5).

Renders byte-exact datagrams as log4net's UdpAppender would send them for the
patterns of section 3 (profiles butler-v15 ... engine) plus the malformed
variants M01-M23 of section 5.3, and sends them over UDP.

Library:
    render(profile, event, fields=None, **options) -> bytes
    scenario(path, target=None, seed=None) -> list of send records
    send(data, target, source=None) -> dict (what was sent: hex, sha256, ...)
    variants() -> list of {"id", "description"}
    variant_datagrams(variant_id, profile="butler-v15", event=None, fields=None,
                      **options) -> list of (bytes, send_options)

CLI:
    appender_emu.py send --profile butler-v15 --event task-failed \
        --task-id GUID --target 127.0.0.1:9998 [--variant M07] [--seed N] \
        [--repeat N] [--interval-ms N] [--source 127.0.0.2] [--app-id ..] ...
    appender_emu.py list

Python 3 standard library only; run with /usr/bin/python3.
"""
import argparse
import datetime
import hashlib
import json
import random
import socket
import sys
import time

SCHEDULER_FIELDS = ["host", "task_name", "app_name", "user", "task_id", "app_id", "date",
                    "level", "execution_id", "message"]
ENGINE_FIELDS = ["host", "app_id", "session_id", "user_directory", "user_id", "date", "level",
                 "message"]
# The proxy's pattern (3.4): prefix;%hostname;%property{Command};%property{UserDirectory};
# %property{UserId};%property{Origin};%property{Context};%message (port 9997).
PROXY_FIELDS = ["host", "command", "user_directory", "user_id", "origin", "context", "message"]
# Commands (field 2) and the filter substring the appender's StringMatchFilter needs.
PROXY_COMMANDS = {
    "session-start": ("Start session", "Start session for user"),
    "session-stop": ("Stop session", "Stop session for user"),
    "connection-open": ("Open connection", "connection Opened for session"),
    "connection-close": ("Close connection", "connection Closed for session"),
}

# event -> (prefix, layout, default level, default message, task-type note)
PROFILES = {
    "butler-v15": {
        "task-failed": ("/scheduler-task-failed/", "scheduler", "ERROR",
                        "Task finished with state FinishedFail. Max retries reached."),
        "task-aborted": ("/scheduler-task-aborted/", "scheduler", "INFO",
                         "Execution State Change to Aborting"),
        "task-success": ("/scheduler-task-success//", "scheduler", "INFO",
                         "Execution State Change to FinishedSuccess"),
        "distribute": ("/scheduler-distribute/", "scheduler", "INFO",
                       "Exiting execute of Distribute task request. Result: Success"),
    },
    "butler-v12": {
        "reload-failed": ("/scheduler-reload-failed/", "scheduler", "ERROR", "Max retries reached"),
        "reload-aborted": ("/scheduler-reload-aborted/", "scheduler", "INFO",
                           "Execution State Change to Aborting"),
        "reloadtask-success": ("/scheduler-reloadtask-success/", "scheduler", "INFO",
                               "Execution State Change to FinishedSuccess"),
    },
    "butler-v9": {
        "reload-failed": ("/scheduler-reload-failed/", "scheduler", "ERROR", "Max retries reached"),
        "reload-aborted": ("/scheduler-reload-aborted/", "scheduler", "INFO",
                           "Execution State Change to Aborting"),
        "reloadtask-success": ("/scheduler-reloadtask-success/", "scheduler", "INFO",
                               "Reload complete"),
    },
    "butler-v5": {
        "reload-failed": ("/scheduler-reload-failed/", "scheduler", "ERROR", "Max retries reached"),
        "reload-aborted": ("/scheduler-reload-aborted/", "scheduler", "INFO",
                           "Execution State Change to Aborting"),
    },
    "butler-v4.2-legacy": {
        "failed": ("", "scheduler", "ERROR", "Max retries reached"),
        "aborted": ("/scheduler-reload-aborted/", "scheduler", "INFO",
                    "Execution State Change to Aborting"),
    },
    "butler-v1-legacy": {
        "failed": ("", "v1", "ERROR", "Message from ReloadProvider"),
        "failed-5": ("", "v1-5", "ERROR", "Message from ReloadProvider"),
    },
    "engine": {
        "engine-reload-failed": ("/engine-reload-failed/", "engine", "ERROR",
                                 "Reload failed: Field 'Amount' not found"),
    },
    # Port 9997: the Sense proxy's session and connection events (3.4, 3.5).
    "proxy-v5": {
        event: ("/proxy-%s/" % event.split("-")[0], "proxy", "INFO", PROXY_COMMANDS[event][1])
        for event in PROXY_COMMANDS
    },
    "butler-sos-user": {
        event: ("/qseow-proxy-%s/" % event.split("-")[0], "proxy", "INFO",
                PROXY_COMMANDS[event][1])
        for event in PROXY_COMMANDS
    },
    "proxy-legacy": {
        event: ("", "proxy-4", "INFO", PROXY_COMMANDS[event][1]) for event in PROXY_COMMANDS
    },
}

APPLESS_EVENTS = {"distribute"}

VARIANTS = [
    ("M01", "too few fields: last field dropped (10 fields, scheduler prefix)"),
    ("M02", "too many fields: message contains ';' (12 fields)"),
    ("M03", "wrong prefix: /scheduler-task-failure/, no slashes, /foo/"),
    ("M04", "prefix in upper case"),
    ("M05", "double-slash success prefix, as shipped"),
    ("M06", "prefix-less legacy 10 / 4 / 5 fields"),
    ("M07", "empty datagram, ';;;;', single space"),
    ("M08", "oversize: limit+1 bytes (option limit, default 1024) and exactly 65507 bytes"),
    ("M09", "invalid UTF-8 in field 2 and field 10 (lone 80, truncated E2 82, overlong C0 AF, "
            "surrogate ED A0 80, FE, FF, Latin-1)"),
    ("M10", "UTF-8 BOM before the prefix"),
    ("M11", "control characters: NUL, ESC, TAB inside fields, CRLF at the end"),
    ("M12", "over-long task name (501 / 5000 / 60000 characters) and message (5000)"),
    ("M13", "non-GUID task id: task-123, upper-case GUID, GUID in braces"),
    ("M14", "(null) app name and app id"),
    ("M15", "ExecutionId empty and (null)"),
    ("M16", "the same datagram twice"),
    ("M17", "unknown task: a random valid GUID"),
    ("M18", "/scheduler-distribute/ for the (reload) task id given"),
    ("M19", "whole datagram in UTF-16LE and in windows-1252"),
    ("M20", "trailing CRLF (%newline in the pattern)"),
    ("M21", "flood: 10000 valid datagrams with distinct ExecutionIds (option count)"),
    ("M22", "spoofed source: sent from 127.0.0.2 (option source)"),
    ("M23", "session message with ';' and quotes in the message"),
]


class Generator:
    """Seeded GUIDs and a fixable clock, so a seed reproduces the bytes."""

    def __init__(self, seed=None, clock=None):
        self.seed = seed if seed is not None else random.randrange(1 << 31)
        self.random = random.Random(self.seed)
        self.clock = clock

    def guid(self):
        value = self.random.getrandbits(128)
        value &= ~(0xF000 << 64)
        value |= 0x4000 << 64  # version 4
        value &= ~(0xC000 << 48)
        value |= 0x8000 << 48  # variant
        h = "%032x" % value
        return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])

    def date(self):
        now = self.clock or datetime.datetime.now()
        return now.strftime("%Y-%m-%d %H:%M:%S,") + "%03d" % (now.microsecond // 1000)


_default_generator = Generator()


def default_fields(profile, event, generator=None, missing_property_render="empty"):
    g = generator or _default_generator
    prefix, layout, level, message = PROFILES[profile][event]
    null = "(null)" if missing_property_render == "(null)" else ""
    appless = event in APPLESS_EVENTS
    return {
        "host": "sense-node-01",
        "task_name": "Reload Sales Dashboard" if not appless else "Distribute Sales",
        "app_name": null if appless else "Sales Dashboard",
        "user": "INTERNAL\\sa_scheduler",
        "task_id": g.guid(),
        "app_id": null if appless else g.guid(),
        "date": g.date(),
        "level": level,
        "execution_id": g.guid(),
        "message": message,
        "session_id": g.guid(),
        "user_directory": "CORP",
        "user_id": "jdoe",
        # Proxy events: the message carries the filter substring and, for
        # connections, a UserAgent with ';' in it, as the proxy writes it.
        **_proxy_defaults(event, message, g),
    }


def _proxy_defaults(event, message, g):
    if event not in PROXY_COMMANDS:
        return {}
    command = PROXY_COMMANDS[event][0]
    if event.startswith("session"):
        text = "%s 'CORP\\jdoe'" % message
        context = "/hub/"
    else:
        app = g.guid()
        text = ("%s '%s'; UserAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64)'"
                % (message, g.guid()))
        context = "/app/%s" % app
    return {"host": "sense-proxy-01", "command": command, "origin": "AppAccess",
            "context": context, "proxy_message": text}


def render(profile, event, fields=None, encoding="utf-8", fix_success_prefix=False,
           missing_property_render="empty", generator=None):
    """The datagram bytes for one logging event, exactly as the appender would render it."""
    if profile not in PROFILES or event not in PROFILES[profile]:
        raise ValueError("unknown profile/event %s/%s" % (profile, event))
    prefix, layout, _, _ = PROFILES[profile][event]
    values = default_fields(profile, event, generator, missing_property_render)
    values.update(fields or {})
    if fix_success_prefix and prefix.endswith("//"):
        prefix = prefix[:-1]
    if layout == "scheduler":
        parts = [values[k] for k in SCHEDULER_FIELDS]
    elif layout == "engine":
        parts = [values[k] for k in ENGINE_FIELDS]
    elif layout == "proxy":
        values.setdefault("proxy_message", values["message"])
        if fields and "message" in fields:
            values["proxy_message"] = fields["message"]
        parts = [values[k] for k in PROXY_FIELDS[:-1]] + [values["proxy_message"]]
    elif layout == "proxy-4":
        parts = [values["host"], values["command"], values["user_directory"], values["user_id"]]
    elif layout == "v1":
        parts = [values["host"], values["task_name"], values["app_name"],
                 values["user"].split("\\")[-1]]
    else:  # v1-5
        parts = [values["host"], values["task_name"], values["app_name"], values["message"],
                 values["level"]]
    text = ";".join(([prefix] if prefix else []) + parts)
    return text.encode(encoding)


def _base(profile, event, fields, options):
    profile = profile or "butler-v15"
    event = event or next(iter(PROFILES[profile]))
    return render(profile, event, fields, **options)


def _with(profile, event, fields, options, **changes):
    merged = dict(fields or {})
    merged.update(changes)
    return _base(profile, event, merged, options)


def variants():
    return [{"id": i, "description": d} for i, d in VARIANTS]


def variant_datagrams(variant_id, profile="butler-v15", event=None, fields=None, limit=1024,
                      count=10000, source="127.0.0.2", **options):
    """The datagrams of one malformed variant, each with its send options."""
    g = options.setdefault("generator", Generator())
    base = _base(profile, event, fields, options)
    v = variant_id.upper()
    out = []
    if v == "M01":
        out = [base.rsplit(b";", 1)[0]]
    elif v == "M02":
        out = [_with(profile, event, fields, options, message="Error; see log")]
    elif v == "M03":
        tail = base.split(b";", 1)[1]
        out = [b"/scheduler-task-failure/;" + tail, b"scheduler-task-failed;" + tail,
               b"/foo/;" + tail]
    elif v == "M04":
        head, tail = base.split(b";", 1)
        out = [head.upper() + b";" + tail]
    elif v == "M05":
        out = [render("butler-v15", "task-success", fields, generator=g)]
    elif v == "M06":
        out = [render("butler-v4.2-legacy", "failed", fields, generator=g),
               render("butler-v1-legacy", "failed", fields, generator=g),
               render("butler-v1-legacy", "failed-5", fields, generator=g)]
    elif v == "M07":
        out = [b"", b";;;;", b" "]
    elif v == "M08":
        def padded(size):
            return base + b"x" * (size - len(base)) if size > len(base) else base[:size]
        out = [padded(limit + 1), padded(65507)]
    elif v == "M09":
        bad = [b"\x80", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xfe", b"\xff",
               b"F\xf6rs\xe4ljning"]
        for seq in bad:
            parts = base.split(b";")
            parts[2] = parts[2] + seq
            out.append(b";".join(parts))
            parts = base.split(b";")
            parts[-1] = parts[-1] + seq
            out.append(b";".join(parts))
    elif v == "M10":
        out = [b"\xef\xbb\xbf" + base]
    elif v == "M11":
        out = [_with(profile, event, fields, options, task_name="Reload\x00 Sales\tDash\x1bboard",
                     message="Max retries reached\r\n")]
    elif v == "M12":
        # The task name carries the length, so 60000 still fits one datagram.
        out = [_with(profile, event, fields, options, task_name="T" * n)
               for n in (501, 5000, 60000)]
        out.append(_with(profile, event, fields, options, message="M" * 5000))
    elif v == "M13":
        guid = g.guid()
        out = [_with(profile, event, fields, options, task_id="task-123"),
               _with(profile, event, fields, options, task_id=guid.upper()),
               _with(profile, event, fields, options, task_id="{%s}" % guid)]
    elif v == "M14":
        out = [_with(profile, event, fields, options, app_name="(null)", app_id="(null)")]
    elif v == "M15":
        out = [_with(profile, event, fields, options, execution_id=""),
               _with(profile, event, fields, options, execution_id="(null)")]
    elif v == "M16":
        out = [base, base]
    elif v == "M17":
        out = [_with(profile, event, fields, options, task_id=g.guid())]
    elif v == "M18":
        f = dict(fields or {})
        out = [render("butler-v15", "distribute", f, generator=g)]
    elif v == "M19":
        f = dict(fields or {})
        f.setdefault("task_name", "F\u00f6rs\u00e4ljning")
        text = _base(profile, event, f, options).decode("utf-8")
        out = [text.encode("utf-16-le"), text.encode("cp1252", errors="replace")]
    elif v == "M20":
        out = [base + b"\r\n"]
    elif v == "M21":
        out = [_with(profile, event, fields, options, execution_id=g.guid())
               for _ in range(count)]
    elif v == "M22":
        return [(base, {"source": source})]
    elif v == "M23":
        out = [b"/proxy-connection/;sense-proxy-01;Open connection;CORP;jdoe;AppAccess;"
               b"/app/a3c9e7d2-1f4b-4e8a-b6d5-7c2e9f0a1b34;connection Opened for session "
               b"'f0e1d2c3-b4a5-4968-8776-655443322110'; UserAgent: 'a;b'"]
    else:
        raise ValueError("unknown variant %s" % variant_id)
    return [(d, {}) for d in out]


_seq = 0


def send(data, target, source=None, sock=None):
    """Send one datagram to "host:port" (or a (host, port) tuple); returns what was sent."""
    global _seq
    if isinstance(target, str):
        host, port = target.rsplit(":", 1)
        target = (host.strip("[]"), int(port))
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    own = sock is None
    if own:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if source:
            sock.bind((source, 0))
    try:
        sock.sendto(data, target)
        src = "%s:%d" % sock.getsockname()[:2]
        error = None
    except OSError as exc:  # EMSGSIZE for M08 (c): reported, not raised
        src, error = None, str(exc)
    finally:
        if own:
            sock.close()
    _seq += 1
    return {"seq": _seq, "t_wall": time.time(), "src": src, "dst": "%s:%d" % target[:2],
            "bytes_len": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "hex": data[:256].hex(), "text_preview": data[:200].decode("utf-8", "replace"),
            "error": error}


def scenario(path, target=None, seed=None):
    """Play a JSON-lines scenario: {at_ms, profile, event, fields, variant?, target?} a line.
    Returns the send records, in order."""
    generator = Generator(seed)
    with open(path, encoding="utf-8") as f:
        steps = [json.loads(line) for line in f if line.strip()]
    steps.sort(key=lambda step: step.get("at_ms", 0))
    start = time.monotonic()
    records = []
    for step in steps:
        delay = start + step.get("at_ms", 0) / 1000.0 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        profile = step.get("profile", "butler-v15")
        event = step.get("event") or next(iter(PROFILES[profile]))
        fields = step.get("fields") or {}
        if step.get("variant"):
            datagrams = variant_datagrams(step["variant"], profile, event, fields,
                                          generator=generator)
        else:
            datagrams = [(render(profile, event, fields, generator=generator), {})]
        for data, options in datagrams:
            record = send(data, step.get("target") or target or "127.0.0.1:9998",
                          source=options.get("source"))
            record.update({"profile": profile, "event": event, "variant": step.get("variant")})
            records.append(record)
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list profiles, events and variants")
    s = sub.add_parser("send", help="render and send datagrams")
    s.add_argument("--profile", default="butler-v15", choices=sorted(PROFILES))
    s.add_argument("--event")
    s.add_argument("--target", default="127.0.0.1:9998")
    s.add_argument("--variant")
    s.add_argument("--seed", type=int)
    s.add_argument("--clock", help="fixed:<ISO> fixes %%date")
    s.add_argument("--source", help="bind this source address")
    s.add_argument("--repeat", type=int, default=1)
    s.add_argument("--interval-ms", type=int, default=0)
    s.add_argument("--limit", type=int, default=1024, help="receiver limit for M08")
    s.add_argument("--null", action="store_true", help="render unset properties as (null)")
    s.add_argument("--fix-success-prefix", action="store_true")
    s.add_argument("--encoding", default="utf-8")
    for name in ["task-id", "app-id", "task-name", "app-name", "host", "user", "execution-id",
                 "message", "level", "date"]:
        s.add_argument("--" + name)
    s.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "list":
        for profile, events in PROFILES.items():
            print("%-20s %s" % (profile, ", ".join(events)))
        for v in variants():
            print("%s  %s" % (v["id"], v["description"]))
        return 0
    clock = None
    if args.clock and args.clock.startswith("fixed:"):
        clock = datetime.datetime.fromisoformat(args.clock[6:])
    generator = Generator(args.seed, clock)
    print(json.dumps({"seed": generator.seed}), file=sys.stderr)
    fields = {}
    for name in ["task_id", "app_id", "task_name", "app_name", "host", "user", "execution_id",
                 "message", "level", "date"]:
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
    options = {"generator": generator, "encoding": args.encoding,
               "fix_success_prefix": args.fix_success_prefix,
               "missing_property_render": "(null)" if args.null else "empty"}
    event = args.event or next(iter(PROFILES[args.profile]))
    for _ in range(args.repeat):
        if args.variant:
            datagrams = variant_datagrams(args.variant, args.profile, event, fields,
                                          limit=args.limit, **options)
        else:
            datagrams = [(render(args.profile, event, fields, **options), {})]
        for data, send_options in datagrams:
            record = send(data, args.target, source=send_options.get("source", args.source))
            record.update({"profile": args.profile, "event": event, "variant": args.variant})
            if not args.quiet:
                print(json.dumps(record))
            if args.interval_ms:
                time.sleep(args.interval_ms / 1000.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
