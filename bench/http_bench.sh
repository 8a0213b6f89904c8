#!/bin/sh
# Compare Butler's GET /v4/butlerping with a minimal CivetWeb handler
# (bench/civetweb_ceiling.c) using wrk -t2 -c16 -d5s, and print the ratio.
# Usage: bench/http_bench.sh [BUILD_DIR]   (default: build; Butler must be built)
# Needs: wrk, mosquitto, cc, libcivetweb-dev. Uses free ports and a temp dir.
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
    rm -rf "$work"
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

cc -O2 -Wall -Wextra -o "$work/civetweb_ceiling" "$root/bench/civetweb_ceiling.c" -lcivetweb

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
YAML
"$butler" --config "$work/butler.yaml" 2>"$work/butler.log" &
pids="$pids $!"
"$work/civetweb_ceiling" "$ceiling_port" 32 &
pids="$pids $!"
wait_http "http://127.0.0.1:$http_port/v4/butlerping"
wait_http "http://127.0.0.1:$ceiling_port/v4/butlerping"

echo "--- minimal CivetWeb handler" >&2
ceiling=$(requests_per_s "http://127.0.0.1:$ceiling_port/v4/butlerping")
echo "--- Butler GET /v4/butlerping" >&2
butler_rps=$(requests_per_s "http://127.0.0.1:$http_port/v4/butlerping")
awk -v b="$butler_rps" -v c="$ceiling" 'BEGIN {
    printf "civetweb ceiling: %.0f req/s\nbutler butlerping: %.0f req/s\nratio butler/ceiling: %.2f\n", c, b, b / c }'
