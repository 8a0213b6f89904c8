#!/usr/bin/env bash
# Builds and runs what users install, the way they install it:
#   1. container image: docker/Dockerfile built with podman, checked (non-root,
#      runtime packages only, volumes, HEALTHCHECK, size), run on the host
#      network against Mosquitto and the QRS simulator: healthy, a task start
#      over MQTT reaches the simulator, `podman stop` while a start is in
#      flight drains it and exits 0;
#   2. compose: docker/compose.yaml (as a user would copy and fill it in) with
#      podman-compose: healthy, a task start reaches the simulator, stop -> 0;
#   3. Debian package: built (deploy/debian, dpkg-buildpackage), lintian, then
#      `apt-get install ./butler_*.deb` in a fresh debootstrap chroot: the user,
#      /var/lib/butler, the conffile, `butler --version` and `--check-config`.
# Each step prints how long it took.
#
#   sudo bash scripts/check-packages.sh [BUILD_DIR]    (default: build; must be built)
#   KEEP_PODMAN=1 ...   keeps build/packages/podman (images, containers) afterwards
#   REUSE_PODMAN=1 ...  with a kept store: reuses its images instead of building
#                       them again (for work on this script; CI builds afresh)
#
# No registry is needed: the base images of the Dockerfile (debian:12,
# debian:12-slim) are made from the debootstrap minbase tarball that
# scripts/check-runtime-image.sh also uses (scripts/lib/debian-rootfs.sh), and
# compose's eclipse-mosquitto:2 from tests/packaging/eclipse-mosquitto.Containerfile.
# Packages come from Debian's mirror. Podman runs as root with its own storage
# (vfs) and configuration under build/packages/podman, so nothing of the
# machine's podman setup is used or changed (beyond the CNI network compose
# creates and removes).
#
# Skips (exit 0, saying why) only when it cannot run here at all: not root, no
# Debian mirror, or (for the podman steps) podman cannot start a container.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir="$PWD"
build_dir="$(cd "${1:-build}" && pwd)"
# shellcheck source=scripts/lib/debian-rootfs.sh
source scripts/lib/debian-rootfs.sh
# shellcheck source=scripts/lib/poll.sh
source scripts/lib/poll.sh
work="$root_dir/build/packages"
t0=$(date +%s.%N)
phase_start=$t0
say() { printf 'check-packages: %s\n' "$*"; }
die() { printf 'check-packages: FAIL: %s\n' "$*" >&2; exit 1; }
skip() { printf 'check-packages: SKIPPED: %s\n' "$*"; }
phase() {
  local now
  now=$(date +%s.%N)
  awk -v a="$phase_start" -v b="$now" -v what="$1" 'BEGIN { printf "check-packages: [%6.1f s] %s\n", b - a, what }'
  phase_start=$now
}

if [[ $(id -u) != 0 ]]; then skip "needs root (podman, debootstrap, chroot)"; exit 0; fi
if ! debian_rootfs_mirror_ok; then skip "Debian's mirror $DEBIAN_MIRROR is not reachable"; exit 0; fi
command -v debootstrap >/dev/null || die "debootstrap is not installed: bash scripts/install-deps.sh --test"
[[ -x "$build_dir/butler" ]] || die "$build_dir/butler is not built"
mkdir -p "$work"
rm -f "$work"/result-*.txt "$work"/calls-*.json
# Request ids unique to this run: Butler remembers them (task_start.dedup_ttl_s).
run_id=$(date +%s)

pids=()
mounted=()
containers=()
compose_dir=""
cleanup() {
  local pid mount
  for pid in "${pids[@]}"; do { kill -KILL "$pid" && wait "$pid"; } 2>/dev/null || true; done
  if [[ -n "$compose_dir" ]]; then
    (cd "$compose_dir" && podman-compose -f docker/compose.yaml down -v >/dev/null 2>&1) || true
  fi
  for container in "${containers[@]}"; do podman rm -f -v "$container" >/dev/null 2>&1 || true; done
  podman volume rm -f butler-check-state >/dev/null 2>&1 || true
  for mount in "${mounted[@]}"; do umount -l "$mount" 2>/dev/null || true; done
  if [[ -z "${KEEP_PODMAN:-}" && -d "$work/podman" ]]; then
    podman system reset -f >/dev/null 2>&1 || true
    rm -rf --one-file-system "$work/podman"
  fi
  rm -rf --one-file-system "$work/rootfs" "$work/chroot"
}
trap cleanup EXIT


# ---- podman: private storage and configuration ----------------------------------
# What makes rootful podman work on this kind of machine (a VM sandbox, cgroups v1
# without systemd): vfs storage, runc with the cgroupfs manager, no default ulimits
# (setting them is refused), file-based events (no journald). Its own tmp_dir, so
# another podman on the machine is not disturbed by the reset below.
podman_setup() {
  mkdir -p "$work/podman"
  cat >"$work/podman/containers.conf" <<EOF
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
tmp_dir = "$work/podman/tmp"
EOF
  cat >"$work/podman/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$work/podman/storage"
runroot = "$work/podman/run"
EOF
  export CONTAINERS_CONF="$work/podman/containers.conf"
  export CONTAINERS_STORAGE_CONF="$work/podman/storage.conf"
  # A fresh store each run: every image below is built from scratch.
  if [[ -z "${REUSE_PODMAN:-}" ]]; then
    podman system reset -f >/dev/null 2>&1 || true
    rm -rf --one-file-system "$work/podman/storage" "$work/podman/run" "$work/podman/tmp"
  fi
}
reusing() { [[ -n "${REUSE_PODMAN:-}" ]] && podman image exists "$1"; }

# Stand-ins for Docker Hub's debian:12 and debian:12-slim, made from the same
# debootstrap minbase tarball (Debian's images are minbase too) with what those
# images add: apt's and dpkg's docker-* settings (no .debs or package caches left
# in a layer, no fsync per file unpacked, no translations), and for the slim one no documentation, man pages or locales, with dpkg
# told not to install them again.
import_base_images() {
  local base="$work/rootfs"
  if reusing docker.io/library/debian:12-slim; then return 0; fi
  [[ -n "$work" && "$base" != / ]] || die "no work directory"
  debian_rootfs_unpack "$base" || die "debootstrap failed"
  cat >"$base/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf 'Acquire::GzipIndexes "true";\n' >"$base/etc/apt/apt.conf.d/docker-gzip-indexes"
  printf 'Acquire::Languages "none";\n' >"$base/etc/apt/apt.conf.d/docker-no-languages"
  printf 'force-unsafe-io\n' >"$base/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
  tar -C "$base" --numeric-owner -c . | podman import --quiet --change 'CMD ["bash"]' - docker.io/library/debian:12 >/dev/null
  cat >"$base/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
# As in debian:12-slim: no documentation, man pages or translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  find "${base:?}/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "${base:?}/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf --one-file-system "${base:?}"/usr/share/{man,groff,info,lintian,linda,locale}/*
  tar -C "$base" --numeric-owner -c . | podman import --quiet --change 'CMD ["bash"]' - docker.io/library/debian:12-slim >/dev/null
  rm -rf --one-file-system "${base:?}"
}

podman_can_run() {
  podman info >"$work/podman/info.txt" 2>&1 || { podman_reason="podman info failed: $(tail -1 "$work/podman/info.txt")"; return 1; }
  podman run --rm --network host docker.io/library/debian:12 true >"$work/podman/probe.txt" 2>&1 \
    || { podman_reason="podman cannot start a container here: $(tail -1 "$work/podman/probe.txt")"; return 1; }
}

podman_build() { # podman_build CONTAINERFILE TAG: as `docker build` would, from the repository root
  # --format docker keeps HEALTHCHECK (the OCI image format has no such field);
  # --pull=never: the base images are the stand-ins above; --layers=false: one
  # commit per stage (each vfs layer is a full copy).
  if reusing "$2"; then return 0; fi
  podman build --format docker --pull=never --isolation chroot --layers=false \
    --ignorefile docker/Dockerfile.dockerignore -f "$1" -t "$2" . >"$work/podman/build-${2//[:\/]/_}.log" 2>&1 \
    || { tail -30 "$work/podman/build-${2//[:\/]/_}.log" >&2; die "podman build -f $1 failed"; }
}

# ---- the QRS simulator and a Mosquitto on the host -------------------------------
# One simulator for both container runs, on every address (a compose container
# reaches it through host.containers.internal). Its server certificate, from the
# test CA, also names host.containers.internal.
start_simulator() {
  local pki="$work/pki"
  bash tests/pki/make_pki.sh "$pki" >/dev/null
  if [[ ! -s "$pki/containers_server.pem" ]]; then
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
      -keyout "$pki/containers_server_key.pem" -out "$pki/containers_server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,DNS:host.containers.internal\nextendedKeyUsage=serverAuth\n' \
      >"$pki/containers_server.ext"
    openssl x509 -req -in "$pki/containers_server.csr" -CA "$pki/root.pem" -CAkey "$pki/root_key.pem" \
      -set_serial "0x$(openssl rand -hex 8)" -days 30 -sha256 -extfile "$pki/containers_server.ext" \
      -out "$pki/containers_server.pem" 2>/dev/null
  fi
  coproc SIMULATOR { exec /usr/bin/python3 tests/sim/qrs_sim.py --host 0.0.0.0 \
    --server-cert "$pki/containers_server.pem" --server-key "$pki/containers_server_key.pem" \
    --ca "$pki/root.pem" 2>"$work/qrs_sim.log"; }
  pids+=("$SIMULATOR_PID")
  local ready
  read -r -t 15 -u "${SIMULATOR[0]}" ready || die "the QRS simulator did not start: $(tail -5 "$work/qrs_sim.log")"
  read -r _ sim_port sim_control <<<"$ready"
  [[ "$ready" == READY* ]] || die "the QRS simulator said: $ready"
}
sim() { # sim METHOD PATH [JSON]: the simulator's control API
  curl -sf --max-time 30 -X "$1" ${3:+-H 'Content-Type: application/json' --data "$3"} "http://127.0.0.1:$sim_control$2"
}
start_mosquitto() {
  mqtt_port=$(free_port SOCK_STREAM)
  mkdir -p "$work/mosquitto"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nuser root\nlog_dest none\n' \
    "$mqtt_port" >"$work/mosquitto/mosquitto.conf"
  mosquitto -c "$work/mosquitto/mosquitto.conf" >"$work/mosquitto/stderr.log" 2>&1 &
  pids+=("$!")
  wait_for 10 "mosquitto on the host" listening "$mqtt_port"
}

# A task start over MQTT reaches the simulator, and Butler answers "started".
# $1: broker port, $2: request id; a QRS delay (ms) in $3 keeps the start in flight.
task_start_reaches_simulator() {
  local port=$1 request_id=$2-$run_id delay_ms=${3:-0} task=5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91
  sim POST /_sim/reset >/dev/null
  if ((delay_ms)); then
    sim POST /_sim/faults "{\"match\":{\"method\":\"POST\",\"path_re\":\"/start\$\"},\"action\":{\"type\":\"delay\",\"ms\":$delay_ms}}" >/dev/null \
      || die "could not add the simulator's delay"
  fi
  # -d prints the SUBACK (line-buffered): the answer cannot be missed once it is there.
  stdbuf -oL mosquitto_sub -d -h 127.0.0.1 -p "$port" -q 1 -t butler/task/result -C 1 -W 60 >"$work/result-$request_id.txt" &
  result_pid=$!
  pids+=("$result_pid")
  wait_for 10 "the subscription to butler/task/result" grep -qs SUBACK "$work/result-$request_id.txt"
  mosquitto_pub -h 127.0.0.1 -p "$port" -q 1 -t butler/task/start \
    -m "{\"taskId\": \"$task\", \"requestId\": \"$request_id\"}"
  if ((delay_ms)); then
    # In flight: QRS has the request and holds the answer.
    wait_for 20 "the task start to reach the simulator" \
      bash -c "curl -sf http://127.0.0.1:$sim_control/_sim/faults | grep -q '\"matched\": *[1-9]'"
  fi
}
task_start_finished() { # request id: the simulator recorded the start and Butler answered "started"
  local request_id=$1-$run_id task=5e2f4c1a-8b7d-4a3e-9f10-2c6d8e4b7a91
  sim GET "/_sim/calls/wait?method=POST&path_re=/task/$task/start&count=1&timeout_ms=20000" >"$work/calls-$request_id.json" \
    || die "no task start reached the simulator ($request_id)"
  wait "$result_pid" || die "no answer on butler/task/result ($request_id)"
  grep "\"requestId\":\"$request_id\"" "$work/result-$request_id.txt" | grep '"status":"started"' >/dev/null \
    || die "unexpected result: $(cat "$work/result-$request_id.txt")"
}

wait_healthy() { # container: runs the image's HEALTHCHECK until it passes, then reads the state
  wait_for 60 "$1 to be healthy" podman healthcheck run "$1" >/dev/null 2>&1
  local state
  state=$(podman inspect --format '{{.State.Health.Status}}' "$1")
  [[ "$state" == healthy ]] || die "$1: health status '$state' after a passing check"
}

stop_exits_zero() { # container: podman stop (SIGTERM), the exit code must be 0
  podman stop --time 30 "$1" >/dev/null 2>>"$work/podman/run.log"
  local code
  code=$(podman inspect --format '{{.State.ExitCode}}' "$1")
  [[ "$code" == 0 ]] || { podman logs --tail 20 "$1" >&2; die "$1 exited $code after podman stop (expected 0)"; }
}

# ======================================================================================
podman_steps() {
  podman_setup
  phase "podman: a fresh store"
  import_base_images
  if ! podman_can_run; then
    skip "container steps: $podman_reason"
    return 0
  fi
  phase "podman: base images debian:12 and debian:12-slim from the debootstrap tarball"

  # ---- 1. the image -----------------------------------------------------------------
  podman_build docker/Dockerfile localhost/butler:local
  phase "podman build -f docker/Dockerfile (build stage with compiler, runtime stage)"

  local image=localhost/butler:local size user volumes health
  size=$(podman image inspect --format '{{.Size}}' "$image")
  user=$(podman image inspect --format '{{.Config.User}}' "$image")
  volumes=$(podman image inspect --format '{{range $k, $v := .Config.Volumes}}{{$k}} {{end}}' "$image")
  health=$(podman image inspect --format '{{.Config.Healthcheck.Test}}' "$image")
  say "image size: $((size / 1000000)) MB (target: at most 120 MB); user $user; volumes: $volumes"
  ((size <= 120000000)) || die "the image is $((size / 1000000)) MB, over the 120 MB target"
  [[ "$user" == butler ]] || die "the image runs as '$user', not butler"
  [[ "$volumes" == *"/etc/butler "* && "$volumes" == *"/var/lib/butler "* ]] || die "volumes: $volumes"
  [[ "$health" == *butler-healthcheck* ]] || die "no HEALTHCHECK in the image ($health)"
  # Runtime packages only: nothing of the build stage, no compiler, no headers.
  podman run --rm --entrypoint dpkg-query "$image" -W -f '${Package}\n' >"$work/image-packages.txt" 2>>"$work/podman/run.log"
  if grep -E -- '-dev$|^(gcc|g\+\+|cpp)(-[0-9]+)?$|^(cmake|make|binutils|pkg-config|pkgconf|build-essential)$' "$work/image-packages.txt" >"$work/image-build-packages.txt"; then
    die "build packages in the runtime image: $(tr '\n' ' ' <"$work/image-build-packages.txt")"
  fi
  podman run --rm --entrypoint id "$image" -u 2>>"$work/podman/run.log" | grep -x 10001 >/dev/null || die "the image's user is not uid 10001"
  say "image: $(wc -l <"$work/image-packages.txt") packages, none for building; runs as uid 10001"
  phase "image checks"

  # ---- 2. run on the host network --------------------------------------------------
  start_simulator
  start_mosquitto
  local http_port udp_port run_dir="$work/run"
  http_port=$(free_port SOCK_STREAM)
  udp_port=$(free_port SOCK_DGRAM)
  mkdir -p "$run_dir/certs"
  install -o 10001 -g 10001 -m 0400 "$work/pki/client.pem" "$work/pki/client_key.pem" "$work/pki/root.pem" "$run_dir/certs/"
  cat >"$run_dir/butler.yaml" <<EOF
log: { level: info, format: json }
shutdown_grace_s: 20
mqtt: { host: 127.0.0.1, port: $mqtt_port, client_id: butler-podman-check }
http: { listen: "127.0.0.1:$http_port" }
udp: { listen: "127.0.0.1:$udp_port" }
qrs:
  url: https://localhost:$sim_port
  cert_file: /etc/butler/certs/client.pem
  key_file: /etc/butler/certs/client_key.pem
  ca_file: /etc/butler/certs/root.pem
spool: { dir: /var/lib/butler/state }
EOF
  containers+=(butler-check)
  podman run -d --name butler-check --network host \
    -v "$run_dir/butler.yaml:/etc/butler/butler.yaml:ro" -v "$run_dir/certs:/etc/butler/certs:ro" \
    -v butler-check-state:/var/lib/butler -e BUTLER_HEALTH_PORT="$http_port" "$image" \
    >/dev/null 2>>"$work/podman/run.log" || { cat "$work/podman/run.log" >&2; die "podman run failed"; }
  wait_healthy butler-check
  phase "podman run --network host: healthy (the image's HEALTHCHECK)"

  task_start_reaches_simulator "$mqtt_port" podman-1
  task_start_finished podman-1
  say "podman run: a task start over MQTT reached the simulator and was answered 'started'"
  # Stop while a start is in flight (QRS holds its answer 3 s): Butler drains it, then exits 0.
  task_start_reaches_simulator "$mqtt_port" podman-drain 3000
  stop_exits_zero butler-check
  task_start_finished podman-drain
  podman logs butler-check >"$work/podman/butler-check.log" 2>&1
  grep -q 'finishing in-flight work' "$work/podman/butler-check.log" || die "no drain in the log"
  say "podman stop with a task start in flight: drained (started, answered), exit code 0"
  phase "podman run: task start over MQTT, podman stop drains, exit 0"

  # ---- 3. compose --------------------------------------------------------------------
  podman_build tests/packaging/eclipse-mosquitto.Containerfile docker.io/library/eclipse-mosquitto:2
  phase "eclipse-mosquitto:2 stand-in built"
  compose_steps
  phase "podman-compose up docker/compose.yaml: healthy, task start, stop, exit 0"
}

# What a user does (README, "Running in Docker"): certificates into docker/certs,
# qrs.url into docker/butler.yaml, `compose up`. On a copy of docker/, so the
# repository is untouched; butler:local is the image built above (compose builds
# it only when missing). The broker's 127.0.0.1:1883 and Butler's 8080 are the
# compose file's own ports.
compose_steps() {
  command -v podman-compose >/dev/null || die "podman-compose is not installed: bash scripts/install-deps.sh --test"
  local port
  for port in 1883 8080; do
    ! listening "$port" || die "port $port on the host is taken: docker/compose.yaml publishes it"
  done
  compose_dir="$work/compose"
  rm -rf "$compose_dir"
  mkdir -p "$compose_dir"
  cp -a docker "$compose_dir/docker"
  install -o 10001 -m 0400 "$work/pki/client.pem" "$work/pki/client_key.pem" "$work/pki/root.pem" "$compose_dir/docker/certs/"
  sed -i -e "s|^  url: \"\".*|  url: https://host.containers.internal:$sim_port|" "$compose_dir/docker/butler.yaml"
  grep -q "host.containers.internal:$sim_port" "$compose_dir/docker/butler.yaml" || die "docker/butler.yaml: no 'url: \"\"' line under qrs"
  (cd "$compose_dir" && podman-compose -f docker/compose.yaml up -d) >"$work/compose-up.log" 2>&1 \
    || { tail -20 "$work/compose-up.log" >&2; die "podman-compose up failed"; }
  # podman-compose 1.0.3 names the project after the directory (docker_butler_1),
  # Docker Compose after `name:` (butler-butler-1): found by its service label.
  local butler_container
  butler_container=$(podman ps -a --filter label=com.docker.compose.service=butler --format '{{.Names}}')
  [[ -n "$butler_container" ]] || die "compose started no butler container"
  wait_healthy "$butler_container"
  task_start_reaches_simulator 1883 compose-1
  task_start_finished compose-1
  say "compose: healthy, a task start over the compose broker reached the simulator"
  (cd "$compose_dir" && podman-compose -f docker/compose.yaml stop) >"$work/compose-stop.log" 2>&1 \
    || { tail -20 "$work/compose-stop.log" >&2; die "podman-compose stop failed"; }
  local code
  code=$(podman inspect --format '{{.State.ExitCode}}' "$butler_container")
  [[ "$code" == 0 ]] || { podman logs --tail 20 "$butler_container" >&2; die "compose: butler exited $code on stop"; }
  say "compose stop: butler exited 0"
  (cd "$compose_dir" && podman-compose -f docker/compose.yaml down -v) >/dev/null 2>&1 || die "podman-compose down failed"
  compose_dir=""
}

# ---- Debian package -----------------------------------------------------------------
# The apt sources of this machine that point at Debian (its mirror configuration),
# for the chroot; the tarball's own sources.list when there are none.
copy_debian_sources() {
  local chroot_dir=$1 file copied=()
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [[ -f "$file" ]] && grep -Eq '^[^#]*(debian\.org|'"${DEBIAN_MIRROR//./\\.}"')' "$file"; then
      ((${#copied[@]})) || rm -f "$chroot_dir/etc/apt/sources.list"
      cp "$file" "$chroot_dir/etc/apt/${file#/etc/apt/}"
      copied+=("$file")
    fi
  done
  if ((${#copied[@]})); then say "chroot apt sources, this machine's: ${copied[*]}"; fi
}

deb_steps() {
  local deb
  wait "$deb_build_pid" || { cat "$work/build-deb.out" >&2; die "scripts/build-deb.sh failed"; }
  deb=$(tail -1 "$work/build-deb.out")
  say "built $(basename "$deb"): $(du -k "$deb" | cut -f1) kB, in $(cat "$work/build-deb.seconds") s (beside the podman steps)"
  phase "dpkg-buildpackage -b (scripts/build-deb.sh), waited for"

  # Depends: every runtime package the image needs (docker/runtime-packages.txt).
  local depends package runtime_packages
  depends=$(dpkg-deb -f "$deb" Depends)
  say "Depends: $depends"
  mapfile -t runtime_packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' docker/runtime-packages.txt)
  for package in "${runtime_packages[@]}"; do
    [[ ", $depends," == *", $package "* || ", $depends," == *", $package,"* ]] \
      || die "Depends lacks $package (docker/runtime-packages.txt)"
  done
  dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -x /etc/butler/butler.yaml >/dev/null \
    || die "/etc/butler/butler.yaml is not a conffile"

  command -v lintian >/dev/null || die "lintian is not installed: bash scripts/install-deps.sh --test"
  lintian --fail-on error --display-info "$deb" >"$work/lintian.txt" 2>&1 \
    || { cat "$work/lintian.txt" >&2; die "lintian reports errors"; }
  say "lintian: no errors ($(grep -c '^W: ' "$work/lintian.txt" || true) warnings, $(grep -c '^I: ' "$work/lintian.txt" || true) notes; $work/lintian.txt)"
  phase "lintian"

  # A fresh Debian 12 (the debootstrap tarball), apt-get install ./butler_*.deb:
  # apt resolves the dependencies from the mirror (no fsync per file: a throw-away chroot).
  local chroot_dir="$work/chroot"
  debian_rootfs_unpack "$chroot_dir" || die "debootstrap failed"
  copy_debian_sources "$chroot_dir"
  cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
  mount -t proc proc "$chroot_dir/proc" && mounted+=("$chroot_dir/proc")
  cp "$deb" "$chroot_dir/tmp/"
  chroot "$chroot_dir" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
    "apt-get update -q && apt-get install -y -q -o Dpkg::Options::=--force-unsafe-io ./tmp/$(basename "$deb")" >"$work/deb-install.log" 2>&1 \
    || { tail -30 "$work/deb-install.log" >&2; die "apt-get install ./$(basename "$deb") in a fresh chroot failed"; }
  say "apt-get install ./$(basename "$deb"): $(grep -c '^Setting up' "$work/deb-install.log") packages set up"
  phase "apt-get install ./butler_*.deb in a fresh debootstrap chroot"

  local passwd version
  passwd=$(chroot "$chroot_dir" getent passwd butler) || die "no user butler after the install"
  IFS=: read -r _ _ uid _ _ home shell <<<"$passwd"
  if ((uid >= 1000)) || [[ "$home" != /var/lib/butler || "$shell" != /usr/sbin/nologin ]]; then
    die "user butler: $passwd (expected a system user, home /var/lib/butler, no shell)"
  fi
  # Owners as the chroot names them.
  owner() { chroot "$chroot_dir" stat -c '%U:%G %a' "$1"; }
  [[ $(owner /var/lib/butler) == "butler:butler 750" ]] || die "/var/lib/butler: $(owner /var/lib/butler)"
  [[ $(owner /etc/butler) == "root:butler 750" ]] || die "/etc/butler: $(owner /etc/butler)"
  [[ -s "$chroot_dir/usr/share/man/man1/butler.1.gz" ]] || die "no butler(1) man page in the package"
  zgrep -q '^\.B mqtt\.host$' "$chroot_dir/usr/share/man/man5/butler.yaml.5.gz" \
    || die "no butler.yaml(5) with the key table in the package"
  [[ -L "$chroot_dir/etc/systemd/system/multi-user.target.wants/butler.service" ]] \
    || die "butler.service is not enabled"
  grep -q '^ExecStart=/usr/bin/butler --config /etc/butler/butler.yaml$' "$chroot_dir/lib/systemd/system/butler.service" \
    || die "the packaged unit does not run /usr/bin/butler"
  [[ ! -e "$chroot_dir/usr/lib/x86_64-linux-gnu/libcrypto.so" ]] || die "libssl-dev in the chroot: the TLS check would prove nothing"
  chroot "$chroot_dir" ldd /usr/bin/butler >"$work/deb-ldd.txt"
  if grep -q "not found" "$work/deb-ldd.txt"; then cat "$work/deb-ldd.txt" >&2; die "unresolved libraries"; fi
  grep -q "libcrypto.so => /usr/bin/../lib/butler/libcrypto.so" "$work/deb-ldd.txt" || die "the libcrypto.so shim is not used"
  as_butler() { chroot --userspec=butler:butler "$chroot_dir" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/var/lib/butler "$@"; }
  version=$(as_butler butler --version) || die "butler --version failed in the chroot"
  as_butler butler --check-config /etc/butler/butler.yaml >"$work/deb-check-config.txt" 2>&1 \
    || { cat "$work/deb-check-config.txt" >&2; die "butler --check-config /etc/butler/butler.yaml failed"; }
  say "installed: user butler (uid $uid), /var/lib/butler ($(owner /var/lib/butler)), /etc/butler ($(owner /etc/butler)), service enabled, butler(1), butler.yaml(5)"
  say "in the chroot, as user butler: '$version'; --check-config /etc/butler/butler.yaml: ok"

  # The packaged configuration really runs: as the service would (user butler,
  # /var/lib/butler), with only the addresses moved to free ports; no broker,
  # so /health answers 503; SIGTERM -> exit 0.
  local http_port udp_port log="$chroot_dir/var/lib/butler/butler.log" code=0
  http_port=$(free_port SOCK_STREAM)
  udp_port=$(free_port SOCK_DGRAM)
  install -o "$uid" -m 0600 /dev/null "$log"
  # chroot, env and sh exec one another: $! is butler itself.
  chroot --userspec=butler:butler "$chroot_dir" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/var/lib/butler \
    BUTLER_HTTP_LISTEN="127.0.0.1:$http_port" BUTLER_UDP_LISTEN="127.0.0.1:$udp_port" \
    BUTLER_MQTT_PORT="$(free_port SOCK_STREAM)" \
    sh -c 'cd /var/lib/butler && exec butler --config /etc/butler/butler.yaml >>butler.log 2>&1' &
  local butler_pid=$!
  pids+=("$butler_pid")
  wait_for 15 "the packaged butler's HTTP API" bash -c "grep -q 'HTTP API listening' '$log' || ! kill -0 $butler_pid"
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$http_port/health") == 503 ]] \
    || { cat "$log" >&2; die "the packaged butler: GET /health is not 503 without a broker"; }
  kill -TERM "$butler_pid"
  wait "$butler_pid" || code=$?
  ((code == 0)) || { tail -20 "$log" >&2; die "the packaged butler exited $code on SIGTERM"; }
  [[ -d "$chroot_dir/var/lib/butler/state" ]] || die "no spool in /var/lib/butler/state"
  say "the packaged configuration runs as user butler: /health 503 (no broker), spool in /var/lib/butler/state, SIGTERM -> 0"

  chroot "$chroot_dir" dpkg --purge butler >"$work/deb-purge.log" 2>&1 || { cat "$work/deb-purge.log" >&2; die "dpkg --purge butler failed"; }
  [[ ! -e "$chroot_dir/var/lib/butler" && ! -e "$chroot_dir/etc/butler" && ! -e "$chroot_dir/usr/bin/butler" ]] \
    || die "dpkg --purge left files behind"
  say "dpkg --purge butler: binary, configuration and spool removed"
  phase "installed package: user, directories, --version, --check-config, a run, purge"
}

# ======================================================================================
# The .deb builds (a compiler, 2 cores) while the podman steps wait on dpkg and the network.
(
  started=$SECONDS
  bash scripts/build-deb.sh "$work/deb" >"$work/build-deb.out" 2>&1
  echo $((SECONDS - started)) >"$work/build-deb.seconds"
) &
deb_build_pid=$!
pids+=("$deb_build_pid")
if ! command -v podman >/dev/null; then
  skip "container steps: podman is not installed (bash scripts/install-deps.sh --test)"
else
  podman_steps
fi
deb_steps

awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "check-packages: PASSED in %.1f s\n", b - a }'
