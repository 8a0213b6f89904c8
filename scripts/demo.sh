#!/usr/bin/env bash
# The README's first command: install what is needed, build, and run Butler in
# the foreground against a local Mosquitto (started here unless one already
# listens on 127.0.0.1:1883) and, because no Sense server is configured, against
# the QRS simulator on https://localhost:4242 with a test PKI made on the spot.
#
#   bash scripts/demo.sh                 # the demo
#   bash scripts/demo.sh my-butler.yaml  # your config (a real Sense server); Mosquitto still
#                                        # started locally if nothing listens on 1883
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
run="$PWD/run/demo"
mkdir -p "$run"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if listening 1883; then
  echo "demo: using the MQTT broker already listening on 127.0.0.1:1883"
else
  cat >"$run/mosquitto.conf" <<CONF
listener 1883 127.0.0.1
allow_anonymous true
max_queued_messages 0
set_tcp_nodelay true
persistence true
persistence_location $run/
user root
log_dest none
CONF
  mosquitto -c "$run/mosquitto.conf" & pids+=($!)
  for _ in $(seq 50); do listening 1883 && break; sleep 0.1; done
  echo "demo: started Mosquitto on 127.0.0.1:1883"
fi

config="${1:-}"
if [[ -z "$config" ]]; then
  bash tests/pki/make_pki.sh "$run/pki" >/dev/null
  /usr/bin/python3 tests/sim/qrs_sim.py --port 4242 --control-port 4243 \
    --server-cert "$run/pki/server.pem" --server-key "$run/pki/server_key.pem" \
    --ca "$run/pki/root.pem" --fixture tests/sim/fixture.json >"$run/qrs_sim.out" 2>&1 & pids+=($!)
  for _ in $(seq 100); do grep -q READY "$run/qrs_sim.out" 2>/dev/null && break; sleep 0.1; done
  config="$run/butler.yaml"
  cat >"$config" <<CONF
# Demo configuration: the QRS simulator stands in for Qlik Sense.
qrs:
  url: https://localhost:4242
  cert_file: $run/pki/client.pem
  key_file: $run/pki/client_key.pem
  ca_file: $run/pki/root.pem
spool:
  dir: $run/state
CONF
  echo "demo: QRS simulator on https://localhost:4242 (calls: curl http://127.0.0.1:4243/_sim/calls)"
fi

cat <<'HELP'

Butler is starting. In another terminal:
  mosquitto_sub -t 'butler/#' -v &
  mosquitto_pub -t butler/task/start -m 5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91
  mosquitto_pub -t butler/task/start -m '{"taskName": "Reload Sales Dashboard"}'
  mosquitto_pub -t butler/task/start -m '{"tag": "nightly"}'
  mosquitto_pub -t butler/task/start -m '{"customProperty": {"name": "Department", "value": "HR"}}'
and watch butler/task/result say "started"; the simulator's record of the start:
  curl -s 'http://127.0.0.1:4243/_sim/calls?method=POST'
HELP
echo
./build/butler --config "$config"
