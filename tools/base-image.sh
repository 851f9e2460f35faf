#!/usr/bin/env bash
# Build the local Debian bookworm base image (default localhost/retraind-base:bookworm)
# from a Debian mirror, without any container registry.
#
#   root:      debootstrap --variant=minbase into a temp dir, then tar | podman import
#   non-root:  mmdebstrap --mode=unshare (needs newuidmap/newgidmap from `uidmap` and
#              /etc/subuid + /etc/subgid ranges for the user: tools/setup-podman.sh --create-user)
#
# The host's extra CA certificates (/usr/local/share/ca-certificates/*.crt) are copied in and
# trusted, so pip/npm inside builds work behind a TLS-inspecting proxy.
# Idempotent: if the image already exists in the caller's podman storage, print its ID and exit.
# The image ID is recorded in ${XDG_STATE_HOME:-$HOME/.local/state}/retraind/base-image.id.
#
# Environment:
#   RETRAIND_BASE_IMAGE              image name  (default localhost/retraind-base:bookworm)
#   RETRAIND_DEBIAN_MIRROR           mirror      (default http://deb.debian.org/debian)
#   RETRAIND_DEBIAN_SECURITY_MIRROR  written to the image's sources.list together with
#                                    bookworm-updates (default http://deb.debian.org/debian-security;
#                                    set to "" to leave security updates out)
set -euo pipefail

IMAGE=${RETRAIND_BASE_IMAGE:-localhost/retraind-base:bookworm}
SUITE=bookworm
MIRROR=${RETRAIND_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${RETRAIND_DEBIAN_SECURITY_MIRROR-http://deb.debian.org/debian-security}
STATE_DIR=${XDG_STATE_HOME:-${HOME:?HOME is not set}/.local/state}/retraind
ID_FILE=$STATE_DIR/base-image.id

log() { echo "base-image: $*" >&2; }
die() { echo "base-image: error: $*" >&2; exit 1; }

# Print the ID and remember it for the daemon.
record_id() {
  mkdir -p "$STATE_DIR"
  printf '%s\n' "$1" >"$ID_FILE"
  printf '%s\n' "$1"
}

command -v podman >/dev/null || die "podman not found (apt-get install podman)"
if [[ $(id -u) -ne 0 ]]; then
  # Rootless podman and mmdebstrap --mode=unshare both need subordinate ID ranges.
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found (apt-get install mmdebstrap)"
  command -v newuidmap >/dev/null || die "newuidmap not found (apt-get install uidmap)"
  user=$(id -un)
  if ! grep -q "^$user:" /etc/subuid || ! grep -q "^$user:" /etc/subgid; then
    die "no /etc/subuid and /etc/subgid range for $user: as root run tools/setup-podman.sh --create-user $user (or usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $user)"
  fi
fi

if podman image exists "$IMAGE"; then
  log "$IMAGE already exists"
  record_id "$(podman image inspect --format '{{.Id}}' "$IMAGE")"
  exit 0
fi

# Host CA certificates to trust inside the image (may be none).
shopt -s nullglob
EXTRA_CERTS=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/retraind-base.XXXXXX")
cleanup() {
  # debootstrap may leave /proc or /sys mounted in the rootfs if it fails: unmount them
  # (deepest first) before deleting, and never follow a mount out of $WORK.
  if [[ $(id -u) -eq 0 ]]; then
    awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r m; do umount -l "$m" || true; done
  fi
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
TARBALL=$WORK/rootfs.tar
start=$SECONDS

# The image's apt sources: the mirror plus (optionally) updates and security.
{
  echo "deb $MIRROR $SUITE main"
  if [[ -n $SECURITY_MIRROR ]]; then
    echo "deb $MIRROR $SUITE-updates main"
    echo "deb $SECURITY_MIRROR $SUITE-security main"
  fi
} >"$WORK/sources.list"

if [[ $(id -u) -eq 0 ]]; then
  command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
  ROOTFS=$WORK/rootfs
  log "debootstrap $SUITE from $MIRROR (about a minute)"
  debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 30 "$WORK/debootstrap.log" >&2
    [[ -f $ROOTFS/debootstrap/debootstrap.log ]] && tail -n 30 "$ROOTFS/debootstrap/debootstrap.log" >&2
    die "debootstrap failed (mirror $MIRROR reachable? set RETRAIND_DEBIAN_MIRROR)"
  }
  if ((${#EXTRA_CERTS[@]})); then
    cp "${EXTRA_CERTS[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
  fi
  chroot "$ROOTFS" update-ca-certificates >"$WORK/ca.log" 2>&1 || {
    cat "$WORK/ca.log" >&2
    die "update-ca-certificates failed in the new rootfs"
  }
  cp "$WORK/sources.list" "$ROOTFS/etc/apt/sources.list"
  # Nothing the image needs: package lists/cache (the Containerfile runs apt-get update),
  # device nodes (the runtime provides /dev), logs that only make the tree differ.
  rm -rf --one-file-system "${ROOTFS:?}"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
    "$ROOTFS"/var/cache/apt/archives/*.deb "${ROOTFS:?}"/dev/* "$ROOTFS"/var/log/* \
    "$ROOTFS"/var/cache/ldconfig/aux-cache
  tar --numeric-owner --xattrs -C "$ROOTFS" -cf "$TARBALL" .
else
  # copy-in runs outside the chroot as the calling user: the certificates must be readable.
  hooks=()
  if ((${#EXTRA_CERTS[@]})); then
    hooks+=(--customize-hook="copy-in ${EXTRA_CERTS[*]} /usr/local/share/ca-certificates")
  fi
  # Hooks run under sh with the chroot directory as $1 (single quotes on purpose).
  # shellcheck disable=SC2016
  hooks+=(--customize-hook='chroot "$1" update-ca-certificates >/dev/null 2>&1')
  hooks+=(--customize-hook="upload $WORK/sources.list /etc/apt/sources.list")
  # shellcheck disable=SC2016
  hooks+=(--customize-hook='rm -rf "$1"/var/log/* "$1"/var/cache/ldconfig/aux-cache')
  log "mmdebstrap --mode=unshare $SUITE from $MIRROR (about a minute)"
  # merged-usr hook: symlinked /usr as debootstrap does, with usr-is-merged; without it apt picks
  # usrmerge, which drags in perl (+50 MB). --skip=output/dev: no device nodes in the tarball
  # (the runtime provides /dev).
  mmdebstrap --mode=unshare --variant=minbase --include=ca-certificates \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --skip=output/dev \
    "${hooks[@]}" "$SUITE" "$TARBALL" "$MIRROR" >"$WORK/mmdebstrap.log" 2>&1 || {
    tail -n 30 "$WORK/mmdebstrap.log" >&2
    die "mmdebstrap failed (see above; mirror $MIRROR reachable? subuid/subgid ranges set?)"
  }
fi

log "importing $(du -h "$TARBALL" | cut -f1) rootfs as $IMAGE"
podman import --quiet --change 'CMD ["/bin/bash"]' "$TARBALL" "$IMAGE" >/dev/null ||
  die "podman import failed (run tools/setup-podman.sh first?)"
log "done in $((SECONDS - start)) s"
record_id "$(podman image inspect --format '{{.Id}}' "$IMAGE")"
