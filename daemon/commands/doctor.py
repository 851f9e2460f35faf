"""`retraind doctor`: check what the daemon needs, each problem with the command that fixes it."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from daemon.adapters.control import request
from daemon.adapters.proc import run_cmd
from daemon.adapters.promotionlock import lock_target, redacted
from daemon.adapters.slurm import COMMANDS
from daemon.commands.common import command, settings_of
from daemon.core.config import Settings
from daemon.core.errors import EXIT_CONFIG, EXIT_OK, ConfigError, InfrastructureError
from daemon.core.vocab import SLURM

MIN_FREE_BYTES = 5 * 1024**3
SETUP = "bash tools/setup-podman.sh"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning_only: bool = False  # reported, but not a reason for a non-zero exit


def _podman_info(fmt: str) -> str:
    result = run_cmd(("podman", "info", f"--format={fmt}"), timeout=60)
    return result.stdout.strip() if result.returncode == 0 else ""


def check_podman(s: Settings) -> list[Check]:
    if shutil.which("podman") is None:
        return [Check("podman", False, "not installed", "sudo apt-get install podman runc uidmap catatonit")]
    checks = []
    runtime = _podman_info("{{.Host.OCIRuntime.Name}}")
    checks.append(Check("podman runtime", runtime == "runc", runtime or "podman info failed", SETUP))
    driver = _podman_info("{{.Store.GraphDriverName}}")
    checks.append(Check("podman storage driver", driver == "overlay", driver or "unknown", SETUP))
    found = run_cmd(("podman", "image", "exists", s.base_image), timeout=60).returncode == 0
    checks.append(Check("base image", found, s.base_image, "bash tools/base-image.sh"))
    return checks


def check_rootless(s: Settings) -> list[Check]:
    if os.geteuid() == 0:
        return [Check("rootless", True, "running as root: containers are rootful", warning_only=True)]
    user = getpass.getuser()
    ranges = [
        any(line.split(":")[0] == user for line in Path(f).read_text().splitlines())
        for f in ("/etc/subuid", "/etc/subgid")
        if Path(f).exists()
    ]
    fix = f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}"
    checks = [Check("subuid/subgid ranges", len(ranges) == 2 and all(ranges), f"for {user}", fix)]
    checks.append(
        Check("newuidmap", shutil.which("newuidmap") is not None, "uidmap", "sudo apt-get install uidmap")
    )
    linger = Path("/var/lib/systemd/linger") / user
    checks.append(
        Check(
            "linger",
            linger.exists(),
            "the user service runs without a login session",
            f"sudo loginctl enable-linger {user}",
            warning_only=True,
        )
    )
    return checks


def check_inotify(s: Settings) -> list[Check]:
    proc = Path("/proc/sys/fs/inotify")
    watches = int((proc / "max_user_watches").read_text())
    needed = 2 + sum(1 for p in (s.repo / ".git" / "refs").rglob("*") if p.is_dir())
    fix = (
        "echo fs.inotify.max_user_watches=524288 | sudo tee /etc/sysctl.d/60-retraind.conf"
        " && sudo sysctl --system"
    )
    checks = [Check("inotify watches", watches >= needed * 4, f"{watches} allowed, {needed} needed", fix)]
    instances = int((proc / "max_user_instances").read_text())
    fix = "echo fs.inotify.max_user_instances=512 | sudo tee -a /etc/sysctl.d/60-retraind.conf"
    checks.append(Check("inotify instances", instances >= 8, f"{instances} allowed", fix))
    return checks


def check_tracking(s: Settings) -> list[Check]:
    uri = s.tracking_uri
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
                return [Check("MLflow", r.status == 200, f"{uri} answers /health")]
        except OSError as e:
            return [Check("MLflow", False, f"{uri}: {e}", "start the tracking server (see README)")]
    s.state_dir.mkdir(parents=True, exist_ok=True)
    writable = os.access(s.state_dir, os.W_OK)
    return [Check("MLflow", writable, f"embedded store in {s.state_dir}", f"chown -R $USER {s.state_dir}")]


def check_promotion_lock(s: Settings) -> list[Check]:
    """Several daemons on one registry need the promotion lock; an http server has none of its own.
    Warning only: one daemon on a server is safe without it."""
    try:
        target = lock_target(s.tracking_uri, s.promotion_lock_uri)
    except ConfigError as e:
        return [Check("promotion lock", False, str(e), "fix promotion_lock_uri", warning_only=True)]
    if target is not None:
        return [Check("promotion lock", True, target.shown)]
    server = redacted(s.tracking_uri)
    kind = "a server" if server.startswith(("http://", "https://")) else "neither PostgreSQL nor SQLite"
    return [
        Check(
            "promotion lock",
            False,
            f"none: MLflow at {server} is {kind}, so the gate's champion read and alias move are not"
            " locked; one daemon on it is safe, several daemons on that server need"
            " promotion_lock_uri = MLflow's backend database",
            "set promotion_lock_uri (RETRAIND_PROMOTION_LOCK_URI) to the server's backend store URI,"
            " e.g. postgresql://USER:PASSWORD@HOST:5432/mlflow, on every daemon",
            warning_only=True,
        )
    ]


SHARED_FILESYSTEMS = (
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "lustre",
    "gpfs",
    "ceph",
    "fuse.ceph",
    "beegfs",
    "glusterfs",
)


def _filesystem(path: Path) -> str:
    """The type of the filesystem path is on (the longest mount point of /proc/mounts above it)."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve()) if path.exists() else str(path)
    for line in mounts:
        fields = line.split()
        if len(fields) >= 3:
            point = fields[1].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best):
                best, kind = point, fields[2]
    return kind


def check_executor(s: Settings) -> list[Check]:
    """Where the stages run; for Slurm: its commands, its controller, the partitions the settings
    name, the image directory, and whether the state directory can be shared with the nodes."""
    if s.executor != SLURM:
        return [Check("executor", True, "local: the stages' containers run on this machine")]
    missing = [tool for tool in COMMANDS if shutil.which(tool) is None]
    if missing:
        fix = (
            "sudo apt-get install slurm-client, and Slurm's configuration (/etc/slurm/slurm.conf, SLURM_CONF)"
        )
        return [Check("executor", False, f"slurm, but {', '.join(missing)} not on PATH", fix)]
    checks = []
    conf = os.environ.get("SLURM_CONF", "")
    if conf and not Path(conf).is_file():  # scontrol would retry for a minute before it says so
        up, detail = False, f"SLURM_CONF={conf}: no such file"
    else:
        try:
            ping = run_cmd(("scontrol", "ping"), timeout=30)
            up = ping.returncode == 0 and "UP" in ping.stdout
            detail = (ping.stdout.strip() or ping.tail(2) or "no answer").splitlines()[0]
        except InfrastructureError as e:  # no answer within the timeout
            up, detail = False, str(e)
    checks.append(
        Check(
            "slurm controller", up, detail, "start slurmctld, or point SLURM_CONF at the cluster's slurm.conf"
        )
    )
    if up:
        found = run_cmd(("sinfo", "--noheader", "--format=%R"), timeout=30)
        known = set(found.stdout.split())
        named = sorted({o.partition for o in (s.slurm.defaults, *s.slurm.per_stage.values()) if o.partition})
        unknown = [p for p in named if p not in known]
        checks.append(
            Check(
                "slurm partitions",
                not unknown,
                f"{', '.join(named) or 'the cluster default'}"
                + (f"; not in this cluster: {', '.join(unknown)}" if unknown else ""),
                f"name partitions `sinfo` shows in [slurm] / [slurm.<stage>]: {', '.join(sorted(known))}",
            )
        )
    if s.slurm.image_dir is not None:
        image_dir = s.slurm.image_dir
        usable = image_dir.is_dir() and os.access(image_dir, os.W_OK)
        checks.append(
            Check("slurm image_dir", usable, str(image_dir), f"mkdir -p {image_dir} on the shared filesystem")
        )
    kind = _filesystem(s.state_dir)
    shared = kind in SHARED_FILESYSTEMS
    checks.append(
        Check(
            "state directory for the nodes",
            shared,
            f"{s.state_dir} is on {kind}"
            + (
                ""
                if shared
                else ": the nodes must see it at the same path (fine when this machine is the only node)"
            ),
            "put state_dir on NFS or another filesystem the nodes mount at the same path (docs/scale-out.md)",
            warning_only=True,
        )
    )
    return checks


def check_disk(s: Settings) -> list[Check]:
    s.state_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(s.state_dir).free
    checks = [
        Check(
            "disk space",
            free >= MIN_FREE_BYTES,
            f"{free / 1024**3:.1f} GiB free under {s.state_dir}",
            "free some space: retraind gc (old run directories, data objects), podman image prune",
        )
    ]
    held = _held_by_daemon(s)
    if held is not None:
        writes, events, error = held
        checks.append(
            Check(
                "journal writes",
                writes == 0 and events == 0,
                f"the daemon holds {writes} journal writes and {events} events in memory"
                + (f" ({error})" if error else ""),
                f"free space in {s.state_dir}: they are written as soon as there is room",
            )
        )
    return checks


def _held_by_daemon(s: Settings) -> tuple[int, int, str] | None:
    """What a running daemon could not write to its journal (a full disk), or None if none answers."""
    try:
        reply = request(s.state_dir / "control.sock", {"cmd": "status"}, timeout_s=3)
    except InfrastructureError:
        return None
    return (
        int(reply.get("held_journal_writes") or 0),
        int(reply.get("held_events") or 0),
        str(reply.get("journal_error") or ""),
    )


def check_inputs(s: Settings) -> list[Check]:
    import pygit2  # only here: the other commands start without it

    return [
        Check(
            "data directory",
            s.data_dir.is_dir(),
            str(s.data_dir),
            f"pass the directory with --data-dir ({s.data_dir} is a file)"
            if s.data_dir.exists()
            else f"mkdir -p {s.data_dir}",
        ),
        Check(
            "git repository",
            pygit2.discover_repository(str(s.repo)) is not None,
            str(s.repo),
            f"git init {s.repo}",
        ),
    ]


def check_notify(s: Settings) -> list[Check]:
    """The notify file's mode and syntax; the targets as status shows them (no secret)."""
    from daemon.adapters.notifyfile import load_targets, notify_file

    fix = f"chmod 600 {notify_file(s, os.environ)}; see README, Notifications"
    try:
        targets = load_targets(s)
    except ConfigError as e:
        return [Check("notifications", False, str(e), fix)]
    shown = (
        ", ".join(t.shown for t in targets) or "none configured (RETRAIND_NOTIFY_WEBHOOK_URL or notify.toml)"
    )
    return [Check("notifications", True, shown, warning_only=not targets)]


CHECKS: tuple[Callable[[Settings], list[Check]], ...] = (
    check_podman,
    check_rootless,
    check_inotify,
    check_tracking,
    check_promotion_lock,
    check_executor,
    check_disk,
    check_inputs,
    check_notify,
)


def diagnose(s: Settings) -> list[Check]:
    return [c for check in CHECKS for c in check(s)]


def render(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else ("warn" if c.warning_only else "FAIL")
        lines.append(f"{mark}  {c.name}: {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"      fix: {c.fix}")
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    command(sub, "doctor", main, help="check podman, inotify, linger, MLflow, disk; say how to fix")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    checks = diagnose(settings_of(args))
    print(json.dumps([asdict(c) for c in checks]) if json_lines else render(checks))
    return EXIT_OK if all(c.ok or c.warning_only for c in checks) else EXIT_CONFIG
