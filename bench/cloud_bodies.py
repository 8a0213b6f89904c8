#!/usr/bin/env python3
"""Write a wrk script that POSTs N distinct, signed Qlik Cloud webhook deliveries in turn
(bench/cloud_webhook_bench.sh). Each body is a CloudEvents app.reload.finished event with its
own event id and reload id, signed with SECRET as Qlik does (Qlik-Signature: hex HMAC-SHA256 of
the raw body). Usage: cloud_bodies.py OUT.lua COUNT SECRET TENANT_ID"""
import hashlib
import hmac
import json
import sys


def main():
    out, count, secret, tenant = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    with open(out, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                "local bodies, signatures = {}, {}\n")
        for i in range(count):
            body = json.dumps({
                "specversion": "1.0", "id": f"bench-{i:08d}", "time": "2026-12-07T03:00:00Z",
                "type": "com.qlik.v1.app.reload.finished", "source": "com.qlik/engine",
                "tenantid": tenant, "userid": "user-1", "ownerid": "user-1",
                "spaceid": "space-1", "toplevelresourceid": f"app-{i % 50}",
                "data": {"status": "error", "reloadId": f"{i:024x}", "name": "Sales",
                         "duration": 65000, "endTime": "2026-12-07T03:01:05Z",
                         "errors": ["Field not found: <Amount>"], "warnings": [],
                         "isPartialReload": False}}, separators=(",", ":"))
            signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
            f.write(f"bodies[{i + 1}] = {json.dumps(body)}\nsignatures[{i + 1}] = \"{signature}\"\n")
        f.write(f"local n, i = {count}, 0\n"
                "request = function()\n"
                "  i = i % n + 1\n"
                '  wrk.headers["Qlik-Signature"] = signatures[i]\n'
                "  return wrk.format(nil, nil, nil, bodies[i])\n"
                "end\n")
    print(len(body))


if __name__ == "__main__":
    main()
