#!/usr/bin/env bash
# Checks deploy/systemd/butler.service without booting systemd:
#   - `systemd-analyze verify` (syntax, directives, dependencies). verify also
#     insists that ExecStart's binary exists; /usr/local/bin/butler is not
#     installed on a build machine, so a copy of the unit whose ExecStart points
#     at BUILD_DIR/butler is verified (the only line that differs);
#   - `systemd-analyze security --offline=yes`: prints the exposure score and
#     fails if it is worse than 2.5 ("OK" or better on systemd's scale).
#   bash scripts/verify-systemd.sh [BUILD_DIR]     (default: build)
# Skips with a message, exit 0, when systemd-analyze is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="$(cd "${1:-build}" && pwd)"
unit=deploy/systemd/butler.service
if ! command -v systemd-analyze >/dev/null; then
  echo "verify-systemd: SKIPPED: systemd-analyze is not installed (apt-get install systemd)"
  exit 0
fi
[[ -x "$build_dir/butler" ]] || { echo "verify-systemd: FAIL: $build_dir/butler is not built" >&2; exit 1; }
grep -q '^ExecStart=/usr/local/bin/butler --config /etc/butler/butler.yaml$' "$unit" \
  || { echo "verify-systemd: FAIL: unexpected ExecStart= in $unit" >&2; exit 1; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sed -e "s|^ExecStart=/usr/local/bin/butler |ExecStart=$build_dir/butler |" "$unit" >"$scratch/butler.service"

# verify runs `man` for each Documentation=man:... page: the build tree's (cmake/man.cmake).
[[ -s "$build_dir/man/man1/butler.1" && -s "$build_dir/man/man5/butler.yaml.5" ]] \
  || { echo "verify-systemd: FAIL: $build_dir/man has no butler.1 or butler.yaml.5 (build target butler_man)" >&2; exit 1; }
export MANPATH="$build_dir/man:"
if ! systemd-analyze verify "$scratch/butler.service" >"$scratch/verify.txt" 2>&1 || [[ -s "$scratch/verify.txt" ]]; then
  cat "$scratch/verify.txt" >&2
  echo "verify-systemd: FAIL: systemd-analyze verify $unit" >&2
  exit 1
fi
echo "verify-systemd: systemd-analyze verify: $unit clean"

if systemd-analyze security --help 2>/dev/null | grep -q -- '--offline'; then
  systemd-analyze security --offline=yes --threshold=25 "$scratch/butler.service" >"$scratch/security.txt" 2>&1 \
    || { cat "$scratch/security.txt" >&2; echo "verify-systemd: FAIL: exposure above 2.5" >&2; exit 1; }
  echo "verify-systemd: systemd-analyze security: $(grep -o 'Overall exposure level.*' "$scratch/security.txt")"
fi
