# shellcheck shell=bash
# Sourced by scripts/check-runtime-image.sh and scripts/check-packages.sh: one
# Debian 12 minbase root filesystem, made with debootstrap once and kept as a
# tarball, from which each check unpacks a fresh copy (the runtime-image
# chroot, the podman stand-ins for debian:12 and debian:12-slim, the clean
# chroot the .deb is installed in).
#
#   debian_rootfs_tarball        -> prints the tarball's path, building it if missing
#   debian_rootfs_unpack DIR     -> a fresh root filesystem in DIR (removed first)
#   debian_rootfs_mirror_ok      -> 0 when Debian's mirror answers
#
# The tarball lives in build/debian-rootfs/ (DEBIAN_ROOTFS_DIR) and is reused
# until removed: scripts/test.sh removes it at the start of each run, so one CI
# run debootstraps once and a rerun of one script by hand costs nothing.
# Downloaded .debs are cached in build/debian-rootfs/debs across runs.
# Needs root and debootstrap. DEBIAN_MIRROR (default http://deb.debian.org/debian).

debian_rootfs_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEBIAN_ROOTFS_DIR="${DEBIAN_ROOTFS_DIR:-$debian_rootfs_root/build/debian-rootfs}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

debian_rootfs_mirror_ok() {
  curl -sfI --max-time 20 "$DEBIAN_MIRROR/dists/bookworm/Release" >/dev/null
}

# The suites and sources the debian:12 images use (with the mirror chosen above).
debian_rootfs_sources() {
  cat <<EOF
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
}

debian_rootfs_tarball() {
  local tarball="$DEBIAN_ROOTFS_DIR/bookworm-minbase.tar"
  if [[ ! -s "$tarball" ]]; then
    local scratch="$DEBIAN_ROOTFS_DIR/scratch"
    mkdir -p "$DEBIAN_ROOTFS_DIR/debs"
    rm -rf --one-file-system "$scratch"
    if ! debootstrap --variant=minbase --cache-dir="$DEBIAN_ROOTFS_DIR/debs" bookworm "$scratch" \
        "$DEBIAN_MIRROR" >"$DEBIAN_ROOTFS_DIR/debootstrap.log" 2>&1; then
      tail -30 "$DEBIAN_ROOTFS_DIR/debootstrap.log" >&2
      echo "debian-rootfs: debootstrap failed" >&2
      return 1
    fi
    debian_rootfs_sources >"$scratch/etc/apt/sources.list"
    # Like the published images: no package lists, no downloaded .debs.
    rm -rf --one-file-system "$scratch"/var/lib/apt/lists/* "$scratch"/var/cache/apt/archives/*.deb
    tar -C "$scratch" --numeric-owner -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
    rm -rf --one-file-system "$scratch"
  fi
  printf '%s\n' "$tarball"
}

debian_rootfs_unpack() {
  local dir=${1:?debian_rootfs_unpack: no directory} tarball
  tarball=$(debian_rootfs_tarball) || return 1
  if [[ -d "$dir" ]]; then
    umount -l "$dir/proc" 2>/dev/null || true
    rm -rf --one-file-system "$dir"
  fi
  mkdir -p "$dir"
  tar -C "$dir" --numeric-owner -xf "$tarball"
}

# Copies cached .debs into a root filesystem before an apt-get install there,
# and the ones apt downloaded back afterwards (so reruns download nothing new).
debian_rootfs_seed_debs() { cp "$DEBIAN_ROOTFS_DIR"/debs/*.deb "$1/var/cache/apt/archives/" 2>/dev/null || true; }
debian_rootfs_harvest_debs() {
  cp -n "$1"/var/cache/apt/archives/*.deb "$DEBIAN_ROOTFS_DIR/debs/" 2>/dev/null || true
  rm -f "$1"/var/cache/apt/archives/*.deb
}
