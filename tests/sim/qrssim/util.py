"""Small shared helpers: GUIDs, date formats and QRS constants."""

import random
import re
import time
from urllib.parse import unquote

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
ZERO_GUID = "00000000-0000-0000-0000-000000000000"
# QRS renders "never" as this sentinel (Butler checks the first 4 characters).
NEVER = "1753-01-01T00:00:00.000Z"

STATUS_NAMES = (
    "NeverStarted", "Triggered", "Started", "Queued", "AbortInitiated", "Aborting",
    "Aborted", "FinishedSuccess", "FinishedFail", "Skipped", "Retry", "Error", "Reset",
    "DistributionQueue", "DistributionRunning",
)

# taskType -> schemaPath of the typed task entity, and the CP objectType it needs.
TASK_SCHEMA = {0: "ReloadTask", 1: "ExternalProgramTask", 2: "UserSyncTask",
               3: "DistributeTask", 4: "PreloadTask"}


def is_guid(text):
    return bool(GUID_RE.match(text))


class GuidSource:
    """Seeded version-4 GUIDs, so a fixture and a seed give the same ids every run."""

    _VERSION_MASK = ~(0xF << 76 | 0x3 << 62)
    _VERSION_BITS = 0x4 << 76 | 0x2 << 62

    def __init__(self, seed):
        self._rng = random.Random(seed)

    def new(self):
        # getrandbits is a single C call, so concurrent threads cannot interleave inside it.
        h = "%032x" % (self._rng.getrandbits(128) & self._VERSION_MASK | self._VERSION_BITS)
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# (second, formatted prefix): runs stamp many dates per second. A tuple is swapped
# in whole, so a concurrent reader never pairs one second with another's prefix.
_iso_second = (None, "")


def iso_ms(t_wall):
    """QRS date: ISO-8601 UTC with milliseconds and Z."""
    global _iso_second
    ms = int(t_wall * 1000)
    sec = ms // 1000
    cached = _iso_second
    if cached[0] != sec:
        cached = _iso_second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return cached[1] + ".%03dZ" % (ms % 1000)


def log4net_date(t_wall):
    """log4net's ISO8601 %date: local time, comma before the milliseconds."""
    ms = int(t_wall * 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms // 1000)) + ",%03d" % (ms % 1000)


def parse_query(raw):
    """Split a raw query string the way QRS does: on '&' *before* percent-decoding,
    and with '+' taken literally. Returns (params, missing_value) where params maps
    the decoded name to a list of values and missing_value says some part had no
    '=' (QRS answers that with 400 "Missing parameter value(s)")."""
    params, missing = {}, False
    if raw:
        for part in raw.split("&"):
            if not part:
                continue
            name, eq, value = part.partition("=")
            if not eq:
                missing = True
            params.setdefault(unquote(name), []).append(unquote(value))
    return params, missing
