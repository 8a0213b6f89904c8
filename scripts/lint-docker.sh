#!/usr/bin/env bash
# Static checks of the container packaging (no Docker engine needed):
#   - docker/Dockerfile with npm's dockerfilelint (installed once into
#     build/tools/dockerfilelint; skipped with a message if npm cannot reach
#     its registry, never failed for that);
#   - every file the Dockerfile COPYs from the build context exists;
#   - docker/compose.yaml parses and the files it mounts exist;
#   - docker/butler.yaml passes `butler --check-config` (when build/butler exists);
#   - shellcheck on the packaging scripts (when shellcheck is installed).
# Exit status: 0 clean (or skipped parts), 1 a check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
fail() { echo "lint-docker: FAIL: $*" >&2; status=1; }
note() { echo "lint-docker: $*"; }

# ---- dockerfilelint ----------------------------------------------------------
version=1.8.0
prefix="$PWD/build/tools/dockerfilelint"
lint="$prefix/node_modules/.bin/dockerfilelint"
if [[ ! -x "$lint" ]] || ! grep -q "\"version\": \"$version\"" "$prefix/node_modules/dockerfilelint/package.json" 2>/dev/null; then
  if ! command -v npm >/dev/null; then
    note "SKIPPED dockerfilelint: npm is not installed"
    lint=""
  else
    mkdir -p "$prefix"
    if ! timeout 180 npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
        "dockerfilelint@$version" >"$prefix/npm-install.log" 2>&1; then
      if timeout 30 npm ping >/dev/null 2>&1; then
        cat "$prefix/npm-install.log" >&2
        fail "npm reaches its registry but 'npm install dockerfilelint@$version' failed"
      else
        note "SKIPPED dockerfilelint: npm cannot reach its registry (see $prefix/npm-install.log)"
      fi
      lint=""
    fi
  fi
fi
if [[ -n "$lint" ]]; then
  if "$lint" docker/Dockerfile; then
    note "dockerfilelint $version: docker/Dockerfile clean"
  else
    fail "dockerfilelint found issues in docker/Dockerfile"
  fi
fi

# ---- files the Dockerfile copies from the context ----------------------------
while read -r source; do
  [[ "$source" == "." || -e "$source" ]] || fail "docker/Dockerfile copies $source, which does not exist"
done < <(awk 'toupper($1) == "COPY" && $2 !~ /^--/ { for (i = 2; i < NF; i++) print $i }' docker/Dockerfile)
[[ -s docker/runtime-packages.txt ]] || fail "docker/runtime-packages.txt is missing or empty"

# ---- compose.yaml -------------------------------------------------------------
if /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
  /usr/bin/python3 - <<'PY' || fail "docker/compose.yaml"
import os, sys, yaml
base = "docker"
with open(os.path.join(base, "compose.yaml")) as f:
    compose = yaml.safe_load(f)
errors = []
services = compose.get("services") or {}
for name in ("mosquitto", "butler"):
    if name not in services:
        errors.append(f"service {name} missing")
for name, service in services.items():
    for volume in service.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith((".", "/")) and not os.path.exists(os.path.join(base, source)):
            errors.append(f"{name}: mounts {source}, which does not exist")
        elif not source.startswith((".", "/")) and source not in (compose.get("volumes") or {}):
            errors.append(f"{name}: named volume {source} is not declared")
    build = service.get("build")
    if build:
        context = os.path.join(base, build.get("context", "."))
        if not os.path.exists(os.path.join(context, build.get("dockerfile", "Dockerfile"))):
            errors.append(f"{name}: no Dockerfile at {build}")
for error in errors:
    print("compose.yaml:", error, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
  note "docker/compose.yaml parses; its mounts and Dockerfile exist"
else
  note "SKIPPED compose.yaml check: python3-yaml is not installed"
fi

# ---- the container's Butler configuration -------------------------------------
if [[ -x build/butler ]]; then
  if build/butler --check-config docker/butler.yaml >/dev/null; then
    note "docker/butler.yaml passes butler --check-config"
  else
    fail "docker/butler.yaml does not pass butler --check-config"
  fi
else
  note "SKIPPED docker/butler.yaml check: build/butler is not built"
fi

# ---- shell scripts -------------------------------------------------------------
if command -v shellcheck >/dev/null; then
  if shellcheck -x docker/healthcheck.sh scripts/lint-docker.sh scripts/check-runtime-image.sh \
      scripts/check-packages.sh scripts/build-deb.sh scripts/lib/debian-rootfs.sh scripts/lib/poll.sh \
      scripts/verify-systemd.sh; then
    note "shellcheck: packaging scripts clean"
  else
    fail "shellcheck found issues"
  fi
else
  note "SKIPPED shellcheck: not installed"
fi

exit $status
