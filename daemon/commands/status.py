"""`retraind status`: is the daemon up, what runs now and for how long, the last runs."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from typing import Any

from daemon.adapters.control import request
from daemon.adapters.store import ObjectStore
from daemon.commands.common import command, settings_of
from daemon.core.config import Settings
from daemon.core.errors import EXIT_OK, InfrastructureError
from daemon.state.journal import Journal, RunRow
from daemon.state.journal_schema import JobRow
from daemon.state.notifications import Notifications
from daemon.state.retention import run_dirs_newest_first, tree_bytes
from daemon.state.serve_status import read_status


def _run_fields(run: RunRow) -> dict[str, Any]:
    duration = (run.finished_at - run.started_at) if run.finished_at and run.started_at else None
    return {
        "run_id": run.run_id,
        "trigger": run.trigger,
        "status": run.status,
        "duration_s": round(duration, 1) if duration is not None else None,
        "f1": run.f1,
        "model_version": run.model_version,
        "commit": (run.commit or "")[:12],
        "failed_stage": run.failed_stage,
        "error": run.error,
    }


def _job_fields(job: JobRow) -> dict[str, Any]:
    return {"job_id": job.job_id, "stage": job.stage, "state": job.state or "submitted", "node": job.node}


def disk_use(settings: Settings) -> dict[str, Any]:
    """What the state directory holds (run directories, the object store) and what is left."""
    runs = run_dirs_newest_first(settings.runs_dir)
    objects = ObjectStore(settings.state_dir / "objects").all_objects()
    try:
        free = shutil.disk_usage(settings.state_dir).free
    except OSError:
        free = None
    return {
        "state_bytes": tree_bytes(settings.state_dir),
        "run_dirs": len(runs),
        "keep_runs": settings.keep_runs,
        "objects": len(objects),
        "object_bytes": sum(objects.values()),
        "free_bytes": free,
    }


def collect_status(settings: Settings, n: int, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    try:
        daemon = request(settings.state_dir / "control.sock", {"cmd": "status"}, timeout_s=3)
        daemon["up"] = True
    except InfrastructureError:
        daemon = {"up": False}
    journal = Journal.open(settings.state_dir / "journal.db")
    try:
        current = journal.current_run()
        current_fields = None
        if current is not None:
            stages = journal.stages(current.run_id)
            stage = stages[-1] if stages else None
            current_fields = _run_fields(current) | {
                "stage": stage.stage if stage else None,
                "stage_elapsed_s": round(now - stage.started_at, 1) if stage else None,
                "elapsed_s": round(now - current.started_at, 1) if current.started_at else None,
                "slurm_jobs": [_job_fields(j) for j in journal.jobs(current.run_id)],
            }
        return {
            "daemon": daemon,
            "current": current_fields,
            "recent": [_run_fields(r) for r in journal.recent_runs(n)],
            "disk": disk_use(settings),
            "serve": read_status(settings.state_dir),
            "notifications": _notifications(journal),
        }
    finally:
        journal.close()


def _notifications(journal: Journal) -> dict[str, Any]:
    """The outbox's backlog; its last error was redacted by the courier before it was stored."""
    backlog = Notifications(journal).backlog()
    return {"waiting": backlog.waiting, "oldest_at": backlog.oldest_at, "last_error": backlog.last_error,
            "dropped": backlog.dropped}  # fmt: skip


def render_status(status: dict[str, Any]) -> str:
    d = status["daemon"]
    lines = [
        f"daemon: {'up' if d['up'] else 'down'}" + (f", {d.get('queue_depth', 0)} queued" if d["up"] else "")
    ]
    held = {k: d[k] for k in ("held_journal_writes", "held_events") if d.get(k)}
    if held:
        counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in held.items())
        why = d.get("journal_error") or "the disk refused writes"
        lines.append(f"journal: {counts} kept in memory ({why}); free space in the state directory")
    c = status["current"]
    lines.append(
        "current: none"
        if c is None
        else f"current: run {c['run_id']} ({c['trigger']}), stage {c['stage']} for {c['stage_elapsed_s']} s,"
        f" {c['elapsed_s']} s in all"
    )
    if c is not None and c.get("slurm_jobs"):
        jobs = (f"{j['job_id']} ({j['stage']}, {j['state']})" for j in c["slurm_jobs"])
        lines.append(f"slurm jobs: {', '.join(jobs)}")
    if disk := status.get("disk"):
        free = f", {disk['free_bytes'] / 1e9:,.1f} GB free" if disk["free_bytes"] is not None else ""
        lines.append(
            f"state: {disk['state_bytes'] / 1e6:,.1f} MB ({disk['run_dirs']} run directories, keep_runs "
            f"{disk['keep_runs']}; {disk['objects']} data objects, "
            f"{disk['object_bytes'] / 1e6:,.1f} MB){free}"
        )
    if (serve := status.get("serve")) is not None:
        if serve["up"]:
            serving = f"v{serve['serving']}" if serve["serving"] else "nothing yet"
            shadow = f", v{serve['shadow']} in shadow" if serve.get("shadow") else ""
            lines.append(f"serve: up on {serve['address']}, serving {serving}{shadow}")
        else:
            last = f" (last served v{serve['serving']})" if serve["serving"] else ""
            lines.append(f"serve: down{last}")
        if serve.get("last_failure"):
            why = serve["last_failure"][:300]
            lines.append(f"serve: v{serve['failed_version']} not switched to: {why}")
    if (notes := status.get("notifications")) and (notes["waiting"] or notes["dropped"]):
        why = f"; last error: {notes['last_error'][:200]}" if notes["last_error"] else ""
        given_up = f", {notes['dropped']} given up" if notes["dropped"] else ""
        lines.append(f"notifications: {notes['waiting']} waiting{given_up}{why}")
    lines.append(f"{'run':<26}{'trigger':<10}{'outcome':<15}{'time s':>8}{'F1':>8}  model")
    for r in status["recent"]:
        f1 = f"{r['f1']:.4f}" if r["f1"] is not None else "-"
        dur = f"{r['duration_s']:.1f}" if r["duration_s"] is not None else "-"
        lines.append(
            f"{r['run_id']:<26}{r['trigger']:<10}{r['status']:<15}{dur:>8}{f1:>8}  "
            f"{'v' + r['model_version'] if r['model_version'] else '-'}"
        )
    failed = next((r for r in status["recent"] if r.get("error")), None)
    if failed is not None:
        lines.append(f"last error ({failed['run_id']}): {failed['error'].splitlines()[0][:300]}")
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    p = command(sub, "status", main, help="the daemon, the current run, the last runs")
    p.add_argument("-n", type=int, default=10, help="how many recent runs to show")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    status = collect_status(settings_of(args), args.n)
    print(json.dumps(status) if json_lines else render_status(status))  # one line: jq and log lines mix
    return EXIT_OK
