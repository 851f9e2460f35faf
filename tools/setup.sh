#!/usr/bin/env bash
# Set up this machine for retraind, idempotently (Debian 12; root, or a user with sudo).
#
#   bash tools/setup.sh               system packages, Podman config, .venv, base image, corpus
#   bash tools/setup.sh --dev         the same plus test tools (pytest, ruff, mypy, Jest on the host,
#                                     PostgreSQL, Prometheus, Alertmanager with amtool)
#   bash tools/setup.sh --system-only only what needs root: packages and /etc/containers (CI, as root)
#
# Run as a normal user, the pipeline runs rootless (Podman in a user namespace); as root, rootful.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(podman runc catatonit uidmap slirp4netns mmdebstrap debootstrap python3 python3-venv
              git ca-certificates)
# systemd-analyze verifies the unit files in the tests; the integration tests start their own
# PostgreSQL clusters, Prometheus servers and Alertmanagers on free ports (under systemd, Debian's
# packages also start system services on 5432, 9090 and 9093/9094, which the tests never use).
# No install fails for want of systemd: without it, invoke-rc.d skips the start where there is no
# runlevel (a container) or policy-rc.d denies it; under systemd, postinst ignores a failed start.
# slurm-wlm (slurmctld, slurmd, slurm-client: sbatch, srun, squeue, scancel, scontrol, sinfo) and
# munge: the tests start their own single-node cluster and munged as the test's user, on free ports
# and a private socket (tests/integration/slurm.py), never the system's. Their postinst runs
# invoke-rc.d, skipped as above without systemd. Under systemd, munge.service starts a system
# munged (/run/munge, with the /etc/munge/munge.key postinst makes), which the tests never use, and
# slurmctld/slurmd.service are enabled but skipped, not failed, without /etc/slurm/slurm.conf
# (ConditionPathExists), which nothing here writes: no system slurmctld or slurmd runs.
DEV_APT_PACKAGES=(systemd postgresql prometheus prometheus-alertmanager slurm-wlm munge)
mode=run
case "${1:-}" in
  "") ;;
  --dev) mode=dev ;;
  --system-only) mode=system ;;
  *) echo "usage: bash tools/setup.sh [--dev | --system-only]" >&2; exit 2 ;;
esac

say() { echo "setup: $*" >&2; }
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else say "needs root for: $*  (run: bash tools/setup.sh --system-only as root)"; exit 1
  fi
}
quiet_pip() { grep -v -e 'is ignored: it is neither' -e '^$' >&2 || true; }

system_setup() {
  local missing=() p wanted=("${APT_PACKAGES[@]}")
  [[ $mode == run ]] || wanted+=("${DEV_APT_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${missing[@]}"
  fi
  if ! grep -qs '^runtime = "runc"' /etc/containers/containers.conf; then
    as_root bash tools/setup-podman.sh --system
  fi
}

python_setup() {
  local lock=requirements.lock
  [[ $mode == dev ]] && lock=requirements-dev.lock
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  # The lock and pyproject.toml (its console scripts) together decide whether to install again.
  if ! cat "$lock" pyproject.toml | cmp -s - .venv/.installed-lock; then
    say "installing Python packages from $lock"
    .venv/bin/pip install -q --require-hashes --no-deps -r "$lock" 2>&1 | quiet_pip
    .venv/bin/pip install -q --no-deps -e . 2>&1 | quiet_pip
    cat "$lock" pyproject.toml >.venv/.installed-lock
  fi
}

system_setup
[[ $mode == system ]] && exit 0
[[ $(id -u) -eq 0 ]] || bash tools/setup-podman.sh
python_setup
if [[ $mode == dev ]] && ! cmp -s scripts/package-lock.json scripts/node_modules/.installed-lock; then
  (cd scripts && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.installed-lock)
fi
schema=grafana/schema-check  # the dashboards' JSON schema check (tests only)
if [[ $mode == dev ]] && ! cmp -s $schema/package-lock.json $schema/node_modules/.installed-lock; then
  (cd $schema && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.installed-lock)
fi
bash tools/base-image.sh
PYTHON=.venv/bin/python bash tools/fetch-corpus.sh
if [[ $mode == dev ]]; then
  # One pipeline build before the tests, alone: the tests run on two workers, and two cold builds
  # of the Containerfile at once left a cached image whose config names a temporary base, so its ID
  # differed from a sequential build's (test_base_image, on a fresh machine). One cold build, too,
  # instead of one per worker.
  say "one run of the pipeline on data/sample.csv: podman's layer cache for the tests"
  warm=$(mktemp -d)
  if ! .venv/bin/retraind run --json --repo . --data-dir data --state-dir "$warm/state" >"$warm/log" 2>&1; then
    tail -20 "$warm/log" >&2
    exit 1
  fi
  chmod -R u+w "$warm"
  if [[ $(id -u) -eq 0 ]]; then rm -rf "$warm"; else podman unshare rm -rf "$warm"; fi
fi
say "ready: .venv/bin/retraind run"
