#!/usr/bin/env bash
# Proves, without a Docker engine, that the runtime stage of docker/Dockerfile is
# enough to run Butler: a Debian 12 minbase root filesystem (debootstrap, from
# Debian's mirror) gets exactly the packages of docker/runtime-packages.txt, the
# same user and directories as the image, and the files `cmake --install` lays
# out (butler + the libssl.so/libcrypto.so shims), then inside the chroot:
#   1. every library resolves (ldd), and libssl-dev's libcrypto.so is absent
#      (so HTTPS below really goes through the shims);
#   2. butler --version; butler --check-config on the image's /etc/butler/butler.yaml;
#   3. a real start as user butler with no broker: HTTP and HTTPS answer
#      /health 503, the image's healthcheck reports unhealthy, SIGTERM -> exit 0;
#   4. a real start against Mosquitto running docker/mosquitto.conf (port and
#      paths adapted): connects, the healthcheck reports healthy, SIGTERM -> exit 0.
#
#   sudo bash scripts/check-runtime-image.sh [BUILD_DIR]   (default: build; must be built)
#   KEEP_ROOTFS=1 ...  keeps build/runtime-image/rootfs for a look around
#   DEBIAN_MIRROR=...  (default http://deb.debian.org/debian)
#
# Needs root (debootstrap, chroot, mount), debootstrap, curl and openssl on the
# host. The minbase tarball and downloaded .debs are cached in build/debian-rootfs
# (scripts/lib/debian-rootfs.sh), so a rerun debootstraps and downloads nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir="$PWD"
build_dir="$(cd "${1:-build}" && pwd)"
# shellcheck source=scripts/lib/debian-rootfs.sh
source scripts/lib/debian-rootfs.sh
# shellcheck source=scripts/lib/poll.sh
source scripts/lib/poll.sh
work="$root_dir/build/runtime-image"
rootfs="$work/rootfs"
t0=$(date +%s.%N)
phase_start=$t0
say() { printf 'check-runtime-image: %s\n' "$*"; }
die() { printf 'check-runtime-image: FAIL: %s\n' "$*" >&2; exit 1; }
phase() {
  local now
  now=$(date +%s.%N)
  awk -v a="$phase_start" -v b="$now" -v what="$1" 'BEGIN { printf "check-runtime-image: [%6.1f s] %s\n", b - a, what }'
  phase_start=$now
}

skip() { printf 'check-runtime-image: SKIPPED: %s\n' "$*"; exit 0; }
[[ $(id -u) == 0 ]] || skip "needs root (debootstrap, chroot, mount)"
command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install debootstrap"
# Not failing when Debian's mirror is out of reach (an offline machine): say so.
debian_rootfs_mirror_ok || skip "Debian's mirror $DEBIAN_MIRROR is not reachable"
[[ -x "$build_dir/butler" ]] || die "$build_dir/butler is not built"

mounted=()
pids=()
cleanup() {
  local pid mount
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for mount in "${mounted[@]}"; do umount -l "$mount" 2>/dev/null || true; done
  if [[ -z "${KEEP_ROOTFS:-}" && -d "$rootfs" ]]; then rm -rf --one-file-system "$rootfs"; fi
}
trap cleanup EXIT

# ---- 1. minbase root filesystem --------------------------------------------------
# One debootstrap per CI run, shared with scripts/check-packages.sh (scripts/lib/debian-rootfs.sh).
debian_rootfs_unpack "$rootfs" || die "debootstrap failed"
phase "debootstrap --variant=minbase bookworm (or its cached tarball), unpacked"

cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
mount -t proc proc "$rootfs/proc" && mounted+=("$rootfs/proc")

# ---- 2. exactly the Dockerfile's runtime packages --------------------------------
# shellcheck disable=SC2207  # one word per package, as the Dockerfile's $(sed ...)
packages=($(sed -e 's/#.*//' docker/runtime-packages.txt))
say "runtime packages: ${packages[*]}"
debian_rootfs_seed_debs "$rootfs"
# --force-unsafe-io: no fsync per unpacked file in a throw-away chroot (as in Debian's images).
chroot "$rootfs" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c \
  'apt-get update -q && apt-get install -y -q -o Dpkg::Options::=--force-unsafe-io --no-install-recommends "$@"' apt "${packages[@]}" \
  >"$work/apt.log" 2>&1 || { tail -30 "$work/apt.log" >&2; die "apt-get install in the chroot failed"; }
debian_rootfs_harvest_debs "$rootfs"
rm -rf --one-file-system "$rootfs"/var/lib/apt/lists/*
phase "apt-get install --no-install-recommends (${#packages[@]} packages)"

# The same user and directories as the Dockerfile's runtime stage.
chroot "$rootfs" sh -c '
  groupadd --gid 10001 butler &&
  useradd --uid 10001 --gid butler --home-dir /var/lib/butler --no-create-home \
    --shell /usr/sbin/nologin butler &&
  install -d -o butler -g butler -m 0750 /var/lib/butler &&
  install -d -m 0755 /etc/butler /etc/butler/certs'
# What the build stage's `cmake --install` produces, then the Dockerfile's COPYs.
staging="$work/staging"
rm -rf "$staging"
DESTDIR="$staging" cmake --install "$build_dir" --prefix /usr/local --strip >/dev/null
cp -a "$staging/usr/local/." "$rootfs/usr/local/"
install -m 0755 docker/healthcheck.sh "$rootfs/usr/local/bin/butler-healthcheck"
install -m 0644 docker/butler.yaml "$rootfs/etc/butler/butler.yaml"
say "installed: $(cd "$rootfs" && find usr/local -type f | sort | tr '\n' ' ')"
say "root filesystem: $(du -shx "$rootfs" | cut -f1) (debootstrap minbase + runtime packages + Butler)"
phase "user, directories, cmake --install"

# ---- 3. libraries ------------------------------------------------------------------
[[ ! -e "$rootfs/usr/lib/x86_64-linux-gnu/libcrypto.so" ]] \
  || die "libcrypto.so (libssl-dev) is in the chroot: the HTTPS check would prove nothing"
chroot "$rootfs" ldd /usr/local/bin/butler >"$work/ldd.txt"
if grep -q "not found" "$work/ldd.txt"; then cat "$work/ldd.txt" >&2; die "unresolved libraries"; fi
grep -q "libssl.so => /usr/local/bin/../lib/butler/libssl.so" "$work/ldd.txt" || die "libssl.so shim not used"
grep -q "libcrypto.so => /usr/local/bin/../lib/butler/libcrypto.so" "$work/ldd.txt" || die "libcrypto.so shim not used"
say "ldd: every library resolves; the shims come from /usr/local/lib/butler"

in_chroot() { chroot --userspec=butler:butler "$rootfs" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/var/lib/butler "$@"; }
version=$(in_chroot butler --version) || die "butler --version failed"
say "butler --version: $version"
in_chroot butler --check-config /etc/butler/butler.yaml >"$work/check-config.txt" \
  || { cat "$work/check-config.txt" >&2; die "butler --check-config /etc/butler/butler.yaml failed"; }
say "butler --check-config /etc/butler/butler.yaml: ok"

# ---- 4. real starts ---------------------------------------------------------------
alive() { kill -0 "$1" 2>/dev/null; }

# Certificates for an HTTPS listener (what CivetWeb loads through the shims).
bash tests/pki/make_pki.sh "$work/pki" >/dev/null
install -o 10001 -g 10001 -m 0400 "$work/pki/server.pem" "$work/pki/server_key.pem" "$rootfs/etc/butler/certs/"

http_port=$(free_port SOCK_STREAM)
https_port=$(free_port SOCK_STREAM)
udp_port=$(free_port SOCK_DGRAM)
mqtt_port=$(free_port SOCK_STREAM)
log="$rootfs/var/lib/butler/butler.log"

start_butler() { # the image's config; only the addresses and the certificate are overridden
  : >"$log"
  chown 10001:10001 "$log"
  chroot --userspec=butler:butler "$rootfs" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin \
    HOME=/var/lib/butler \
    BUTLER_MQTT_HOST=127.0.0.1 BUTLER_MQTT_PORT="$mqtt_port" \
    BUTLER_MQTT_RECONNECT_MAX_MS=1000 \
    BUTLER_HTTP_LISTEN="127.0.0.1:$http_port,127.0.0.1:${https_port}s" \
    BUTLER_HTTP_TLS_CERT_FILE=/etc/butler/certs/server.pem \
    BUTLER_HTTP_TLS_KEY_FILE=/etc/butler/certs/server_key.pem \
    BUTLER_UDP_LISTEN="127.0.0.1:$udp_port" \
    bash -c 'cd /var/lib/butler && exec butler --config /etc/butler/butler.yaml >>butler.log 2>&1' &
  butler_pid=$!
  pids+=("$butler_pid")
  wait_for 15 "butler's HTTP API" bash -c "grep -q 'HTTP API listening' '$log' || ! kill -0 $butler_pid"
  alive "$butler_pid" || { cat "$log" >&2; die "butler exited at start"; }
}
stop_butler() {
  kill -TERM "$butler_pid"
  local code=0
  wait "$butler_pid" || code=$?
  pids=("${pids[@]/$butler_pid/}")
  ((code == 0)) || { tail -20 "$log" >&2; die "butler exited $code on SIGTERM (expected 0)"; }
}
health_code() { # scheme port -> HTTP status of GET /health
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$work/pki/root.pem" "$1://127.0.0.1:$2/health"
}

# 4a. No broker: Butler runs, /health says 503 over HTTP and HTTPS, SIGTERM -> 0.
start_butler
code=$(health_code http "$http_port")
[[ "$code" == 503 ]] || die "GET /health without a broker: $code (expected 503)"
code=$(health_code https "$https_port")
[[ "$code" == 503 ]] || { cat "$log" >&2; die "HTTPS GET /health: '$code' (expected 503): TLS through the shims failed"; }
if in_chroot env BUTLER_HEALTH_PORT="$http_port" bash /usr/local/bin/butler-healthcheck 2>"$work/probe.txt"; then
  die "healthcheck reported healthy without a broker"
fi
say "no broker: /health 503 over HTTP and HTTPS; healthcheck unhealthy ($(cat "$work/probe.txt"))"
stop_butler
say "no broker: SIGTERM -> exit 0"
phase "start without a broker, HTTP + HTTPS, SIGTERM"

# 4b. Mosquitto with docker/mosquitto.conf (port, data directory and log adapted to the host).
mkdir -p "$work/mosquitto"
sed -e "s|^listener 1883\$|listener $mqtt_port 127.0.0.1|" \
    -e "s|^persistence_location .*|persistence_location $work/mosquitto/|" \
    -e "s|^log_dest stdout|log_dest file $work/mosquitto/mosquitto.log|" \
    docker/mosquitto.conf >"$work/mosquitto/mosquitto.conf"
echo "user root" >>"$work/mosquitto/mosquitto.conf"
grep -q "^listener $mqtt_port 127.0.0.1\$" "$work/mosquitto/mosquitto.conf" || die "docker/mosquitto.conf: no 'listener 1883' line"
mosquitto -c "$work/mosquitto/mosquitto.conf" >"$work/mosquitto/stderr.log" 2>&1 &
mosquitto_pid=$!
pids+=("$mosquitto_pid")
wait_for 10 "mosquitto (docker/mosquitto.conf)" listening "$mqtt_port"
start_butler
wait_for 15 "butler to connect to the broker" grep -q "connected to" "$log"
wait_for 10 "GET /health 200" bash -c "[[ \$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$http_port/health) == 200 ]]"
in_chroot env BUTLER_HEALTH_PORT="$http_port" bash /usr/local/bin/butler-healthcheck \
  || die "healthcheck reported unhealthy while connected"
say "with Mosquitto (docker/mosquitto.conf): connected, /health 200, healthcheck healthy"
stop_butler
say "with Mosquitto: SIGTERM -> exit 0"
kill -TERM "$mosquitto_pid"
wait "$mosquitto_pid" || true
pids=()
phase "start against Mosquitto, healthcheck, SIGTERM"

awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "check-runtime-image: PASSED in %.1f s: docker/runtime-packages.txt is enough to run Butler\n", b - a }'
