#!/bin/sh
# Signed Qlik Cloud webhooks verified and published by Butler (POST /qlik-cloud/webhook,
# 204 after the broker's PUBACK) beside CivetWeb's own ceiling for a POST of the same size
# (bench/post_ceiling.c), wrk -t2 -c16 -d5s each, same bodies; then Butler's RssAnon at idle
# and with 10,000 event ids remembered (issue 28 targets: >= 2,000/s; <= 2 MB above idle).
# Usage: bench/cloud_webhook_bench.sh [BUILD_DIR]   (default: build; Butler must be built)
# Needs: wrk, mosquitto, cc, libcivetweb-dev, python3, curl.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
butler=$build/butler
[ -x "$butler" ] || { echo "build Butler first: $butler not found" >&2; exit 2; }
work=$(mktemp -d)
pids=""
cleanup() {
    for pid in $pids; do kill "$pid" 2>/dev/null || true; done
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
    rm -r --one-file-system "${work:?}"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_http() {
    for _ in $(seq 1 50); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    exit 1
}
requests_per_s() {
    wrk -t2 -c16 -d5s "$@" | tee "$work/wrk.out" >&2
    awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out"
}
rss_anon_kb() {
    awk '/^RssAnon:/ {print $2}' "/proc/$1/status"
}
metric() {
    curl -s "http://127.0.0.1:$http_port/metrics" | awk -v m="$1" 'index($0, m " ") == 1 {print $2}'
}

secret=bench-webhook-secret-0123456789abcdef
size=$(python3 "$root/bench/cloud_bodies.py" "$work/bodies.lua" 30000 "$secret" t-bench)
python3 "$root/bench/cloud_bodies.py" "$work/same.lua" 1 "$secret" t-bench >/dev/null
cc -O2 -Wall -Wextra -o "$work/post_ceiling" "$root/bench/post_ceiling.c" -lcivetweb

mqtt_port=$(free_port)
http_port=$(free_port)
ceiling_port=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n' "$mqtt_port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids="$pids $!"
cat >"$work/butler.yaml" <<YAML
log: { level: warn }
mqtt: { host: 127.0.0.1, port: $mqtt_port, client_id: butler-bench }
http: { listen: 127.0.0.1:$http_port, threads: 32 }
udp: { enable: false }
spool: { dir: $work/state }
qlik_cloud:
  tenants:
    - name: bench
      tenant_id: t-bench
      url: http://127.0.0.1:9
      webhook_secret: $secret
YAML
"$butler" --config "$work/butler.yaml" 2>"$work/butler.log" &
butler_pid=$!
pids="$pids $butler_pid"
"$work/post_ceiling" "$ceiling_port" 32 &
pids="$pids $!"
wait_http "http://127.0.0.1:$http_port/health"
wait_http "http://127.0.0.1:$ceiling_port/"
# Warm-up with one delivery resent (one id, the rest duplicates): threads, arenas, spool and
# connections reach their working size, so "idle" below is Butler under load minus the ids.
wrk -t2 -c16 -d3s -s "$work/same.lua" "http://127.0.0.1:$http_port/qlik-cloud/webhook" >/dev/null
handled() {
    p=$(metric 'butler_cloud_events_total{outcome="published"}'); d=$(metric 'butler_cloud_events_total{outcome="duplicate"}')
    echo $(( ${p:-0} + ${d:-0} ))
}
settle() {
    want=$(metric 'butler_cloud_webhooks_total{result="accepted"}')
    for _ in $(seq 1 600); do
        [ "$(handled)" -ge "${want:-0}" ] && return 0
        sleep 0.5
    done
    echo "the handler did not catch up" >&2
}
settle
idle_kb=$(rss_anon_kb "$butler_pid")

echo "--- minimal CivetWeb POST handler, $size-byte bodies" >&2
ceiling=$(requests_per_s -s "$work/bodies.lua" "http://127.0.0.1:$ceiling_port/qlik-cloud/webhook")
echo "--- Butler POST /qlik-cloud/webhook (signed, verified, published)" >&2
butler_rps=$(requests_per_s -s "$work/bodies.lua" "http://127.0.0.1:$http_port/qlik-cloud/webhook")
refused=$(metric 'butler_cloud_webhooks_total{result="bad_signature"}')
accepted=$(metric 'butler_cloud_webhooks_total{result="accepted"}')
# Let the handler finish what the ingress accepted, then read memory with the ids remembered.
settle
published=$(metric 'butler_cloud_events_total{outcome="published"}')
loaded_kb=$(rss_anon_kb "$butler_pid")
awk -v b="$butler_rps" -v c="$ceiling" -v a="$accepted" -v r="${refused:-0}" -v p="$published" \
    -v i="$idle_kb" -v l="$loaded_kb" 'BEGIN {
    printf "civetweb POST ceiling: %.0f req/s\nbutler signed webhooks: %.0f req/s (accepted %d, refused %d)\n", c, b, a, r
    printf "ratio butler/ceiling: %.2f\n", b / c
    printf "events published (distinct ids remembered): %d\n", p
    printf "RssAnon after warm-up %d kB, with %d event ids remembered %d kB: +%d kB\n", i, p, l, l - i }'
