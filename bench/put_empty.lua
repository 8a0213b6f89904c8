-- wrk script: PUT with no body (bench/run.sh, /v4/reloadtask/{id}/start)
wrk.method = "PUT"
