"""Licences in the QRS model (sense-interfaces.md E16): the server licence, the
access-type overview, professional and analyzer allocations with lastUsed
dates and quarantine, and DELETE of an allocation.

Fixture (top-level ``licenses``, optional)::

    {"server": {"validTo": "2027-06-30", "isExpired": false, "serial": "...",
                "name": "...", "organization": "...", "keyDetails": "..."},
     "professional": {"total": 10, "allocations": [
         {"id": GUID?, "userId": <user GUID>, "lastUsed": ISO | "lastUsedDaysAgo": N,
          "quarantined": false, "quarantineEnd": ISO?}]},
     "analyzer": {"total": 20, "allocations": [...]},
     "user": {"enabled": false, ...}, "login": {...}, "analyzerTime": {...}}

``lastUsedDaysAgo`` is turned into a date when the fixture is loaded, so a
fixture keeps its meaning whatever day the tests run. ``keyDetails`` given
verbatim wins over ``validTo``. The overview's numbers for professional and
analyzer are computed from the allocations (allocated, used, quarantined,
available, excess), so a DELETE shows in the next overview.
"""

import time
from collections import OrderedDict

from .util import NEVER, iso_ms

DEFAULT_SERVER = {
    "serial": "9999000000001234",
    "name": "Butler Test",
    "organization": "Example Corp",
    "validTo": "2027-06-30",
    "isExpired": False,
}
ACCESS_KINDS = ("professional", "analyzer")
# Fixture name -> overview member, and the defaults of the token/minute types. The members
# of accesstypeoverview are "...Access" (sense-interfaces.md 7.1: the Node.js Butler reads
# professionalAccess, analyzerAccess, analyzerTimeAccess, loginAccess, userAccess against
# real servers); "...AccessType" are the members of the older accesstypeinfo endpoint.
OVERVIEW_MEMBER = {"professional": "professionalAccess", "analyzer": "analyzerAccess"}
OTHER_TYPES = {
    "user": ("userAccess", {"enabled": False, "tokenCost": 1, "allocatedTokens": 0,
                            "usedTokens": 0, "quarantinedTokens": 0, "unavailableTokens": 0}),
    "login": ("loginAccess", {"enabled": False, "tokenCost": 0.1, "allocatedTokens": 0,
                              "usedTokens": 0, "quarantinedTokens": 0, "unavailableTokens": 0}),
    "analyzerTime": ("analyzerTimeAccess", {"enabled": False, "allocatedMinutes": 0,
                                            "usedMinutes": 0, "unavailableMinutes": 0}),
}
SCHEMA_PATH = {"professional": "License.ProfessionalAccessType",
               "analyzer": "License.AnalyzerAccessType"}
CREATED = "2025-11-02T08:14:55.120Z"


class Allocation:
    __slots__ = ("id", "user", "last_used", "quarantined", "quarantine_end")


class Licenses:
    """Loaded by Model from the fixture; every access under the simulator lock."""

    def __init__(self, doc, users, guids, check_obj, check_list, check_guid, fixture_error):
        doc = check_obj(doc, "licenses", ("server", "professional", "analyzer", *OTHER_TYPES))
        server = check_obj(doc.get("server", {}), "licenses.server",
                           ("validTo", "isExpired", "serial", "name", "organization", "keyDetails"))
        self.server = {**DEFAULT_SERVER, **server}
        self.totals, self.allocations = {}, {}
        now = time.time()
        for kind in ACCESS_KINDS:
            where = f"licenses.{kind}"
            section = check_obj(doc.get(kind, {}), where, ("total", "allocations"))
            self.totals[kind] = int(section.get("total", 0))
            table = self.allocations[kind] = OrderedDict()
            for i, a in enumerate(check_list(section.get("allocations", []), where + ".allocations")):
                at = f"{where}.allocations[{i}]"
                check_obj(a, at, ("id", "userId", "lastUsed", "lastUsedDaysAgo", "quarantined",
                                  "quarantineEnd"), ("userId",))
                alloc = Allocation()
                alloc.id = check_guid(a.get("id"), at + ".id", guids)
                alloc.user = users.get(str(a["userId"]).lower())
                if alloc.user is None:
                    raise fixture_error(f"{at}.userId: no such user")
                if "lastUsedDaysAgo" in a:
                    alloc.last_used = iso_ms(now - float(a["lastUsedDaysAgo"]) * 86400.0)
                else:
                    alloc.last_used = a.get("lastUsed", NEVER)
                alloc.quarantined = bool(a.get("quarantined", False))
                alloc.quarantine_end = a.get("quarantineEnd",
                                             iso_ms(now + 7 * 86400) if alloc.quarantined else NEVER)
                table[alloc.id] = alloc
        self.others = {}
        for name, (member, defaults) in OTHER_TYPES.items():
            given = doc.get(name, {})
            if not isinstance(given, dict):
                raise fixture_error(f"licenses.{name}: expected an object")
            self.others[member] = {**defaults, **given}

    # ---- response shapes -------------------------------------------------------

    def server_json(self):
        s = self.server
        details = s.get("keyDetails")
        if details is None:
            details = (f"Serial: {s['serial']}\nProduct: Qlik Sense Enterprise\n"
                       f"Valid From: 2024-07-01\nValid To: {s['validTo']}\n"
                       "Professional: yes\nAnalyzer: yes")
        return {"id": "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9", "createdDate": CREATED,
                "modifiedDate": CREATED, "modifiedByUserName": "INTERNAL\\sa_repository",
                "lef": "", "serial": s["serial"], "check": "", "name": s["name"],
                "organization": s["organization"], "product": 0, "numberOfCores": -1,
                "isExpired": bool(s["isExpired"]), "expiredReason": "Expired" if s["isExpired"] else "",
                "isBlacklisted": False, "isInvalid": False, "isSubscription": False,
                "isCloudServices": False, "isElastic": False, "keyDetails": details,
                "privileges": None, "schemaPath": "License"}

    def _counts(self, kind):
        allocs = self.allocations[kind].values()
        allocated = len(allocs)
        quarantined = sum(1 for a in allocs if a.quarantined)
        total = self.totals[kind]
        # The fields sense-interfaces.md 7.1 lists for professionalAccess/analyzerAccess.
        return {"enabled": total > 0 or allocated > 0, "total": total, "allocated": allocated,
                "used": allocated - quarantined, "quarantined": quarantined,
                "excess": max(0, allocated - total), "available": max(0, total - allocated)}

    def overview_json(self):
        return {"totalTokens": 0, "availableTokens": 0, "tokensEnabled": False,
                OVERVIEW_MEMBER["professional"]: self._counts("professional"),
                "userAccess": dict(self.others["userAccess"]),
                "loginAccess": dict(self.others["loginAccess"]),
                OVERVIEW_MEMBER["analyzer"]: self._counts("analyzer"),
                "analyzerTimeAccess": dict(self.others["analyzerTimeAccess"]),
                "schemaPath": "License.AccessTypeOverview"}

    @staticmethod
    def allocation_json(kind, a, user_condensed):
        user = user_condensed(a.user)
        user["userDirectoryConnectorName"] = a.user.directory
        return {"id": a.id, "createdDate": CREATED, "modifiedDate": CREATED,
                "modifiedByUserName": "INTERNAL\\sa_repository", "user": user,
                "lastUsed": a.last_used, "excess": False, "quarantined": a.quarantined,
                "quarantineEnd": a.quarantine_end, "deletedUserId": "", "deletedUserDirectory": "",
                "privileges": None, "schemaPath": SCHEMA_PATH[kind]}

    def delete(self, kind, allocation_id):
        """-> True when the allocation existed (and is gone now)."""
        return self.allocations[kind].pop(allocation_id.lower(), None) is not None


def empty(users, guids, check_obj, check_list, check_guid, fixture_error):
    """A model without ``licenses`` still answers the licence endpoints."""
    return Licenses({}, users, guids, check_obj, check_list, check_guid, fixture_error)
