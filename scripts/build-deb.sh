#!/usr/bin/env bash
# Builds the Debian package butler_<version>_<arch>.deb with dpkg-buildpackage:
#   bash scripts/build-deb.sh [OUT_DIR]          (default: build/deb)
#   sudo bash scripts/build-deb.sh --install     installs the build dependencies,
#        builds, then `apt-get install ./butler_<version>_<arch>.deb` (README, Install)
# The source tree (the files git knows of, committed or not) is copied to
# OUT_DIR/butler-<version>/ with deploy/debian as its debian/ directory, so the
# repository itself stays as it is. The version is the one in CMakeLists.txt's
# project(); debian/changelog is written from it. Needs the build dependencies
# (deploy/debian/control; scripts/install-deps.sh --test installs them) and
# debhelper. Prints the path of the .deb on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
install=0
if [[ "${1:-}" == --install ]]; then
  install=1
  shift
  bash scripts/install-deps.sh --deb >&2
fi
out="$(mkdir -p "${1:-build/deb}" && cd "${1:-build/deb}" && pwd)"
version=$(sed -n 's/^project(butler VERSION \([0-9][0-9.]*\).*/\1/p' CMakeLists.txt)
[[ -n "$version" ]] || { echo "build-deb: no version in CMakeLists.txt's project()" >&2; exit 1; }
source_dir="$out/butler-$version"
rm -rf --one-file-system "${source_dir:?}" "$out"/butler_"$version"_*
mkdir -p "$source_dir"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -C "$source_dir" -xf -
cp -a deploy/debian "$source_dir/debian"

maintainer=$(sed -n 's/^Maintainer: //p' deploy/debian/control)
cat >"$source_dir/debian/changelog" <<EOF
butler ($version) unstable; urgency=medium

  * Built from the repository at $(git rev-parse --short HEAD 2>/dev/null || echo "an unknown commit"); see its history.

 -- $maintainer  $(date -R)
EOF

(cd "$source_dir" && dpkg-buildpackage -b -us -uc -j"$(nproc)") >"$out/build.log" 2>&1 \
  || { tail -40 "$out/build.log" >&2; echo "build-deb: dpkg-buildpackage failed (log: $out/build.log)" >&2; exit 1; }
rm -rf --one-file-system "${source_dir:?}"
deb="$out/butler_${version}_$(dpkg --print-architecture).deb"
[[ -s "$deb" ]] || { echo "build-deb: $deb was not produced" >&2; exit 1; }
if ((install)); then
  # apt resolves the runtime libraries; the _apt user must be able to read the file.
  chmod a+r "$deb"
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$deb" >&2
fi
echo "$deb"
