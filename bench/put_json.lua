-- wrk script: PUT a JSON body (bench/run.sh, /v4/mqttpublishmessage)
wrk.method = "PUT"
wrk.body = '{"topic":"bench/http/publish","message":"hello from wrk","qos":1}'
wrk.headers["Content-Type"] = "application/json"
