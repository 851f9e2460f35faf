"""Retention: which run directories and store objects to keep, and `retraind gc` that removes the rest.

Kept: the newest `keep_runs` run directories, and always the runs the champion and challenger
were trained by, a run still running, and a run whose registration waits in the outbox. Objects
are kept while a kept run's manifest names them, or while younger than `store_grace_s` (a drop
being admitted by another process). A stage-cache entry pointing at a collected run is deleted
before its files are, so a cache hit never refers to something collected.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.adapters.snapshot import SNAPSHOT, read_manifest
from daemon.adapters.store import ObjectStore, object_shas
from daemon.core.errors import InfrastructureError
from daemon.state.journal import Journal


@dataclass(frozen=True)
class Plan:
    keep: tuple[str, ...]  # run IDs, newest first
    collect: tuple[str, ...]
    objects: tuple[str, ...]  # sha256 of objects to remove
    pinned: tuple[str, ...]  # kept beyond keep_runs, and why is in the caller's hands


@dataclass(frozen=True)
class Collected:
    runs: tuple[str, ...]
    objects: tuple[str, ...]
    freed_bytes: int
    pinned: tuple[str, ...]
    dry_run: bool


def plan_runs(runs_newest_first: Sequence[str], keep_runs: int, pinned: Collection[str]) -> Plan:
    """Pure: the newest keep_runs plus every pinned run are kept; the rest collected."""
    newest = set(runs_newest_first[: max(keep_runs, 0)])
    keep = tuple(r for r in runs_newest_first if r in newest or r in pinned)
    collect = tuple(r for r in runs_newest_first if r not in keep)
    extra = tuple(r for r in keep if r not in newest)
    return Plan(keep, collect, (), extra)


def plan_objects(
    stored: dict[str, tuple[int, float]], needed: Collection[str], now: float, grace_s: float
) -> tuple[str, ...]:
    """Pure: objects (sha -> (size, last change)) no kept run needs and older than the grace period."""
    old = now - grace_s
    return tuple(sorted(sha for sha, (_, changed) in stored.items() if sha not in needed and changed < old))


def run_dirs_newest_first(runs_dir: Path) -> list[str]:
    """Run IDs sort by time (daemon/app.py new_run_id), so the names' order is their age."""
    if not runs_dir.is_dir():
        return []
    return sorted((e.name for e in os.scandir(runs_dir) if e.is_dir(follow_symlinks=False)), reverse=True)


def _stored(store: ObjectStore) -> dict[str, tuple[int, float]]:
    found: dict[str, tuple[int, float]] = {}
    for sha in store.all_objects():
        with contextlib.suppress(OSError):
            st = os.stat(store.path(sha))
            found[sha] = (st.st_size, max(st.st_mtime, st.st_ctime))
    return found


def journal_pins(journal: Journal) -> set[str]:
    """Runs still running, and runs whose registration waits in the outbox."""
    with journal.transaction(write=False) as tx:
        running = {str(r[0]) for r in tx.execute("SELECT run_id FROM runs WHERE status = 'running'")}
        waiting = {str(r[0]) for r in tx.execute("SELECT run_id FROM outbox WHERE delivered_at IS NULL")}
    return running | waiting


def forget_cache_entries(journal: Journal, run_ids: Iterable[str]) -> None:
    ids = list(run_ids)
    if not ids:
        return
    marks = ", ".join("?" * len(ids))
    with journal.transaction() as tx:
        tx.execute(f"DELETE FROM stage_cache WHERE run_id IN ({marks})", ids)


def remove_run_dir(path: Path) -> None:
    """The snapshot directory inside is read-only: make it writable, then remove the whole tree."""
    snapshot = path / SNAPSHOT
    with contextlib.suppress(OSError):
        snapshot.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)


def tree_bytes(path: Path) -> int:
    """Disk use of everything under path, each inode once (snapshots are hard links to objects)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(top, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def collect(
    state_dir: Path,
    journal: Journal,
    keep_runs: int,
    grace_s: float,
    pinned: Collection[str],
    dry_run: bool = False,
    now: Callable[[], float] = time.time,
) -> Collected:
    """Remove what retention does not keep (or, with dry_run, say what would go)."""
    runs_dir, store = state_dir / "runs", ObjectStore(state_dir / "objects")
    pins = set(pinned) | journal_pins(journal)
    plan = plan_runs(run_dirs_newest_first(runs_dir), keep_runs, pins)
    needed: set[str] = set()
    for run_id in plan.keep:
        files = read_manifest(runs_dir / run_id)
        needed |= object_shas(files or [])
    stored = _stored(store)
    objects = plan_objects(stored, needed, now(), grace_s)
    # A snapshot's files are links to objects: its bytes are freed with the objects, if at all.
    freed = sum(tree_bytes(runs_dir / r) - tree_bytes(runs_dir / r / SNAPSHOT) for r in plan.collect)
    freed += sum(stored[s][0] for s in objects)
    if not dry_run:
        try:
            forget_cache_entries(journal, plan.collect)
            for run_id in plan.collect:
                remove_run_dir(runs_dir / run_id)
            for sha in objects:
                store.remove(sha)
        except OSError as e:
            raise InfrastructureError(f"gc could not remove files under {state_dir}: {e}") from e
    return Collected(plan.collect, objects, freed, plan.pinned, dry_run)


PINS = "pins.json"  # <state_dir>/pins.json: the champion's and challenger's runs, as last read


def registry_pins(state_dir: Path, read: Callable[[], set[str]] | None) -> set[str] | None:
    """The runs the registry's aliases point at (read from MLflow, remembered in pins.json); the
    remembered ones when MLflow cannot (or need not: read is None) be asked; None when nothing is
    known (then collect no run that registered a model)."""
    path = state_dir / PINS
    try:
        if read is None:
            raise LookupError
        pins = read()
    except Exception as e:  # MLflow raises many kinds; retention must not fail a run
        if read is not None:
            structlog.get_logger().warning("gc_pins_unavailable", error=str(e))
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return {str(r) for r in loaded} if isinstance(loaded, list) else None
    with contextlib.suppress(OSError):
        path.write_text(json.dumps(sorted(pins)), encoding="utf-8")
    return pins


def registered_runs(journal: Journal) -> set[str]:
    """Every run the journal knows registered a model version: the conservative pin set."""
    with journal.transaction(write=False) as tx:
        rows = tx.execute("SELECT run_id FROM runs WHERE model_version IS NOT NULL")
        return {str(r[0]) for r in rows}
