-- wrk script: POST a small JSON body (bench/run.sh, the HTTP sink's own ceiling)
wrk.method = "POST"
wrk.body = '{"text":"Reload of Reload Sales Dashboard (Sales Dashboard) failed on sense-node-01"}'
wrk.headers["Content-Type"] = "application/json"
