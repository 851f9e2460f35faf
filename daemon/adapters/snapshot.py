"""A run's sealed inputs: the data drop as store objects, linked into the run's own directory."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from daemon.adapters.manifest import build_manifest
from daemon.adapters.store import ObjectStore, disk_error
from daemon.core.config import Settings
from daemon.core.errors import GateRejectedError
from daemon.core.inputs import Manifest

log = structlog.get_logger()
SNAPSHOT = "data"  # <run_dir>/data: what every stage mounts at /data
MANIFEST = "manifest.json"  # <run_dir>/manifest.json: the files, for retention and reproduce
ATTEMPTS = 3
_NEVER_SET = threading.Event()  # waiting on it is a sleep a stop event could replace


def object_store(settings: Settings) -> ObjectStore:
    return ObjectStore(settings.state_dir / "objects")


def scan(
    settings: Settings, store: ObjectStore | None = None, now_ns: Callable[[], int] = time.time_ns
) -> Manifest:
    """The data directory as it is now (copied into the store when one is given)."""
    return build_manifest(
        settings.data_dir,
        settings.data_glob,
        settings.max_file_bytes,
        cache_path=settings.state_dir / "manifest-cache.json",
        store=store,
        now_ns=now_ns,
    )


def take_snapshot(
    settings: Settings,
    run_dir: Path,
    wait: Callable[[float], object] = _NEVER_SET.wait,
    attempts: int = ATTEMPTS,
    store: ObjectStore | None = None,
    now_ns: Callable[[], int] = time.time_ns,
) -> Manifest:
    """Copy the drop into the store and link it into run_dir/data; the manifest names those bytes.

    A file that changes while it is copied is still being written: it is tried again after a quiet
    window (quiet_s), and after `attempts` the drop is refused rather than read half-written.
    """
    store = store or object_store(settings)
    manifest = scan(settings, store, now_ns)
    for attempt in range(2, attempts + 1):
        if not manifest.unstable:
            break
        log.warning("data_still_changing", files=list(manifest.unstable), attempt=attempt)
        wait(settings.quiet_s)
        manifest = scan(settings, store, now_ns)
    if manifest.unstable:
        names = ", ".join(json.dumps(n) for n in manifest.unstable)
        raise GateRejectedError(
            "snapshot",
            [
                f"{names} kept changing while being copied ({attempts} tries, {settings.quiet_s:g} s apart):"
                " finish writing before the drop counts (write .name.part, then rename it)"
            ],
            kinds=("unstable_file",),
        )
    store.materialise(((f.name, f.sha256) for f in manifest.files), run_dir / SNAPSHOT)
    write_manifest(run_dir, manifest)
    return manifest


def write_manifest(run_dir: Path, manifest: Manifest) -> None:
    path = run_dir / MANIFEST
    try:
        text = json.dumps({"sha256": manifest.sha256, "files": manifest.to_json()})
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise disk_error(e, run_dir) from e


def read_manifest(run_dir: Path) -> list[dict[str, object]] | None:
    """The files a run directory's manifest lists, or None if it has none (older runs, collected)."""
    try:
        files = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, list) else None
