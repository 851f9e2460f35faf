#!/usr/bin/env bash
# Idempotent Podman configuration so plain `podman build` / `podman run` work on this kind of host
# (Debian 12, Podman 4.3, cgroup v1, no systemd as PID 1), as root and rootless.
#
#   setup-podman.sh                     as root: system config; as a user: that user's config
#   setup-podman.sh --system            system config only (root)
#   setup-podman.sh --user NAME         (root) system config + NAME's config
#   setup-podman.sh --create-user NAME  (root) create NAME with subuid/subgid ranges, then as --user
#
# System (/etc/containers/containers.conf):
#   [engine] runtime = "runc"          crun fails on this cgroup-v1 hybrid host
#   [containers] default_ulimits = ... runc fails without explicit ulimits; nofile < 20000 hard limit
# User (~/.config/containers/):
#   storage.conf   [storage] driver = "overlay"   (the vfs default is ~100x slower here)
#   containers.conf  runtime, ulimits as above, and [containers] netns = "host" so builds reach
#                    the package registries (slirp4netns cannot open /dev/net/tun here). Every
#                    container then shares the host network unless run with --network=...
# An existing file is edited in place (only these keys), after a backup FILE.bak.<time>.
# As root it also installs catatonit if missing (needed by `podman run --init`).
set -euo pipefail

ULIMITS='["nofile=16384:16384", "nproc=4096:4096"]'
SUBID_COUNT=65536

log() { echo "setup-podman: $*" >&2; }
die() { echo "setup-podman: error: $*" >&2; exit 1; }
usage() { sed -n '2,9s/^# \{0,1\}//p' "$0"; exit "${1:-0}"; }

# toml_set FILE SECTION KEY VALUE: print FILE with KEY = VALUE in [SECTION] (replacing an existing
# or commented-out KEY line, including a multi-line array), adding the section if missing.
toml_set() {
  awk -v sec="[$2]" -v key="$3" -v line="$3 = $4" '
    function emit() { if (!done) { print line; done = 1 } }
    skip { if ($0 ~ /\]/) skip = 0; next }               # rest of a replaced multi-line array
    /^[[:space:]]*\[/ {                                    # section header
      t = $0; sub(/#.*/, "", t); gsub(/[[:space:]]/, "", t)
      if (insec) emit()
      insec = (t == sec)
    }
    insec && $0 ~ "^[[:space:]]*#?[[:space:]]*" key "[[:space:]]*=" {
      emit()
      v = $0; sub(/^[^=]*=/, "", v)
      if (v ~ /\[/ && v !~ /\]/) skip = 1
      next
    }
    { print }
    END { if (!done) { if (!insec) print (NR ? "\n" : "") sec; print line } }
  ' "$1"
}

# ensure_conf FILE OWNER SECTION KEY VALUE [SECTION KEY VALUE ...]: apply the settings; write
# FILE only if it changes, keeping a backup of the previous version.
ensure_conf() {
  local file=$1 owner=$2 tmp
  shift 2
  tmp=$(mktemp)
  if [[ -f $file ]]; then cp "$file" "$tmp"; fi
  while (($#)); do
    toml_set "$tmp" "$1" "$2" "$3" >"$tmp.new" && mv "$tmp.new" "$tmp"
    shift 3
  done
  if [[ -f $file ]] && cmp -s "$file" "$tmp"; then
    log "$file: already configured"
    rm -f "$tmp"
    return
  fi
  mkdir -p "$(dirname "$file")"
  if [[ -f $file ]]; then
    cp -p "$file" "$file.bak.$(date +%Y%m%d%H%M%S)"
    log "$file: updated (backup kept); changes:"
    diff "$file" "$tmp" >&2 || true
  else
    log "$file: created"
  fi
  cat "$tmp" >"$file" && rm -f "$tmp"
  [[ -z $owner ]] || chown "$owner:" "$file" "$(dirname "$file")"
}

# `podman run --init` (used for every pipeline container) needs catatonit, which the Debian
# podman package only recommends: without it, "container-init binary not found on the host".
have_init() { [[ -x /usr/libexec/podman/catatonit ]] || command -v catatonit >/dev/null; }

setup_system() {
  [[ $(id -u) -eq 0 ]] || die "--system needs root"
  if ! have_init; then
    log "installing catatonit (podman run --init)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q catatonit >/dev/null ||
      die "apt-get install catatonit failed"
  fi
  ensure_conf /etc/containers/containers.conf "" \
    engine runtime '"runc"' \
    containers default_ulimits "$ULIMITS"
}

# Run a command as USER with a login environment (root only) or directly (user mode).
as_user() {
  if [[ $(id -un) == "$USER_NAME" ]]; then "$@"; else runuser -u "$USER_NAME" -- env -i \
    HOME="$USER_HOME" USER="$USER_NAME" LOGNAME="$USER_NAME" PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; fi
}

setup_user() {
  local owner='' cfg graphroot
  [[ $(id -un) == "$USER_NAME" ]] || owner=$USER_NAME
  if ! grep -q "^$USER_NAME:" /etc/subuid || ! grep -q "^$USER_NAME:" /etc/subgid; then
    log "warning: $USER_NAME has no /etc/subuid or /etc/subgid range; rootless podman and mmdebstrap need one (as root: $0 --create-user $USER_NAME)"
  fi
  command -v newuidmap >/dev/null || log "warning: newuidmap missing (apt-get install uidmap)"
  have_init || log "warning: podman run --init will fail: catatonit missing (as root: apt-get install catatonit)"
  cfg=$USER_HOME/.config/containers graphroot=$USER_HOME/.local/share/containers/storage
  if [[ -z $owner ]]; then  # configuring ourselves: honour our XDG directories, as podman does
    cfg=${XDG_CONFIG_HOME:-$USER_HOME/.config}/containers
    graphroot=${XDG_DATA_HOME:-$USER_HOME/.local/share}/containers/storage
  fi

  # An existing store keeps the driver it was created with (libpod's database records it), and
  # switching it to overlay needs `podman system reset -f`, which deletes every image and
  # container: do that only when the store holds nothing. (No store yet: nothing to check, and
  # asking podman now would create one with the old driver.)
  if [[ -d $graphroot ]]; then
    local driver contents
    driver=$(as_user podman info --format '{{.Store.GraphDriverName}}') ||
      die "podman info failed as $USER_NAME (see above)"
    if [[ $driver != overlay ]]; then
      contents=$(as_user podman images -aq && as_user podman ps -aq) ||
        die "cannot list $USER_NAME's podman store"
      [[ -z $contents ]] ||
        die "$USER_NAME's podman store uses $driver and is not empty. Switching to overlay deletes all its images and containers; if that is fine, run as $USER_NAME: podman system reset -f; then run this again"
      log "$USER_NAME: empty $driver store, resetting it for overlay"
      as_user podman system reset -f >/dev/null
    fi
  fi
  ensure_conf "$cfg/storage.conf" "$owner" storage driver '"overlay"'
  ensure_conf "$cfg/containers.conf" "$owner" \
    engine runtime '"runc"' \
    containers default_ulimits "$ULIMITS" \
    containers netns '"host"'
  [[ -z $owner ]] || chown "$owner:" "$USER_HOME/.config"
  local now
  now=$(as_user podman info --format '{{.Store.GraphDriverName}}') ||
    die "podman info failed as $USER_NAME (see above)"
  [[ $now == overlay ]] || die "$USER_NAME's storage driver is still $now (podman system reset -f as $USER_NAME?)"
  log "$USER_NAME: ready (storage driver overlay, runtime runc)"
}

# Next free subordinate ID range: above every range in /etc/subuid and /etc/subgid, >= 100000.
next_subid() {
  awk -F: 'BEGIN { m = 100000 } NF >= 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' \
    /etc/subuid /etc/subgid
}

create_user() {
  [[ $(id -u) -eq 0 ]] || die "--create-user needs root"
  if id "$USER_NAME" >/dev/null 2>&1; then
    log "user $USER_NAME exists"
  else
    useradd --create-home --shell /bin/bash "$USER_NAME"
    log "created user $USER_NAME"
  fi
  local start
  if ! grep -q "^$USER_NAME:" /etc/subuid; then
    start=$(next_subid)
    usermod --add-subuids "$start-$((start + SUBID_COUNT - 1))" "$USER_NAME"
  fi
  if ! grep -q "^$USER_NAME:" /etc/subgid; then
    start=$(next_subid)
    usermod --add-subgids "$start-$((start + SUBID_COUNT - 1))" "$USER_NAME"
  fi
  log "subuid $(grep "^$USER_NAME:" /etc/subuid), subgid $(grep "^$USER_NAME:" /etc/subgid)"
}

MODE='' USER_NAME=''
while (($#)); do
  case $1 in
    --system) MODE=system ;;
    --user) MODE=user USER_NAME=${2:?--user needs a name}; shift ;;
    --create-user) MODE=create USER_NAME=${2:?--create-user needs a name}; shift ;;
    -h | --help) usage ;;
    *) echo "unknown argument: $1" >&2; usage 2 ;;
  esac
  shift
done
if [[ -z $MODE ]]; then
  if [[ $(id -u) -eq 0 ]]; then MODE=system; else MODE=user USER_NAME=$(id -un); fi
fi
if [[ $MODE != system && $(id -u) -ne 0 && $USER_NAME != "$(id -un)" ]]; then
  die "only root can configure or create another user ($USER_NAME)"
fi

case $MODE in
  system) setup_system ;;
  create | user)
    [[ $MODE == user ]] || create_user
    id "$USER_NAME" >/dev/null 2>&1 || die "no such user: $USER_NAME"
    USER_HOME=$(getent passwd "$USER_NAME" | cut -d: -f6)
    [[ $(id -u) -ne 0 ]] || setup_system
    setup_user
    ;;
esac
