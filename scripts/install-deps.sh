#!/usr/bin/env bash
# Installs everything Butler needs to build, run and test on Debian 12 (as root).
# Idempotent: apt-get skips what is already installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  build-essential cmake pkg-config git ca-certificates openssl curl
  libmosquitto-dev libcurl4-openssl-dev libssl-dev libcjson-dev libyaml-dev
  libcivetweb-dev civetweb libwebsockets-dev zlib1g-dev mosquitto mosquitto-clients
  python3 python3-paho-mqtt python3-pytest python3-websockets
)
if [[ "${1:-}" == "--test" ]]; then
  # Sanitizers, fuzzing (clang's libFuzzer), valgrind and load tools for the test suite.
  packages+=(clang libclang-rt-14-dev valgrind wrk)
  # tests/integration/test_influxdb.py runs a real influxd (1.6); promtool checks deploy/grafana rules.
  packages+=(influxdb prometheus)
  # Packaging checks: the runtime image's package list in a chroot, shell lint.
  packages+=(debootstrap shellcheck)
  # tests/integration/test_status_page.py drives the status page in a real headless Chromium.
  packages+=(chromium chromium-driver python3-selenium)
  # scripts/check-packages.sh: the image and compose stack with podman (rootful:
  # runc, CNI bridge networks with name resolution, iptables), the .deb and lintian.
  packages+=(podman runc containernetworking-plugins golang-github-containernetworking-plugin-dnsname
    iptables podman-compose debhelper lintian)
elif [[ "${1:-}" == "--deb" ]]; then
  # scripts/build-deb.sh: dpkg-buildpackage with debhelper.
  packages+=(debhelper)
fi
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [[ "${1:-}" == "--test" ]]; then
  # The engine simulator's fidelity check drives it with Qlik's enigma.js (tests/sim/enigma-check).
  if command -v npm >/dev/null; then
    (cd "$(dirname "$0")/../tests/sim/enigma-check" && npm install --no-audit --no-fund)
  else
    echo "install-deps: npm not found; the enigma.js check in tests/sim/test_engine_sim.py will skip" >&2
  fi
fi
