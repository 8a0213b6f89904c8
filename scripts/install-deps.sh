#!/usr/bin/env bash
# Installs everything Butler needs to build, run and test on Debian 12 (as root).
# Idempotent: apt-get skips what is already installed.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
  build-essential cmake pkg-config git ca-certificates openssl curl
  libmosquitto-dev libcurl4-openssl-dev libssl-dev libcjson-dev libyaml-dev
  libcivetweb-dev civetweb mosquitto mosquitto-clients
  python3 python3-paho-mqtt python3-pytest
)
if [[ "${1:-}" == "--test" ]]; then
  # Sanitizers, fuzzing (clang's libFuzzer), valgrind and load tools for the test suite.
  packages+=(clang libclang-rt-14-dev valgrind wrk)
  # Packaging checks: the runtime image's package list in a chroot, shell lint.
  packages+=(debootstrap shellcheck)
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
