"""The data manifest: which files a run reads, their SHA-256 (stat-cached), and one digest over them all."""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from daemon.adapters.store import UNREADABLE, UNSTABLE, ObjectStore
from daemon.core.errors import ConfigError
from daemon.core.inputs import DataFile, Manifest, file_sha256

HashFile = Callable[[Path], str]
CACHE_VERSION = 1
RACY_WINDOW_NS = 2_000_000_000  # a hash is trusted only for files last changed this long before it
_MISSING = {errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP}  # what pathlib's is_*() treat as "no"
_RECORD_TAIL = re.compile(r"(\d{1,20}) ([0-9a-f]{64})")


class _Entry(NamedTuple):
    name: str
    real: str  # resolved absolute path: what is read, and the stat cache's key
    st: os.stat_result  # following symlinks


def _stat(path: str, *, follow: bool) -> os.stat_result | None:
    """The stat result, or None where pathlib's is_symlink()/is_dir()/is_file() would say False."""
    try:
        return os.stat(path, follow_symlinks=follow)
    except OSError as e:
        if e.errno in _MISSING:
            return None
        raise


def _examine(path: str, root: Path, max_file_bytes: int) -> tuple[str | None, os.stat_result | None]:
    """Why this entry must be refused (or None), and its stat following symlinks: one lstat for a file."""
    st = _stat(path, follow=False)
    if st is not None and stat.S_ISLNK(st.st_mode):
        try:
            target = Path(path).resolve(strict=True)
        except RuntimeError:  # Python 3.11 says "Symlink loop" this way
            return "a symlink loop", None
        except OSError as e:
            why = "a symlink loop" if e.errno == errno.ELOOP else f"a dangling symlink ({e.strerror})"
            return why, None
        if not target.is_relative_to(root):
            return f"a symlink to {target}, outside the data directory", None
        st = _stat(path, follow=True)
    if st is not None and stat.S_ISDIR(st.st_mode):
        return "a directory with a data file's name", st
    if st is None or not stat.S_ISREG(st.st_mode):
        kind = _special_kind(st.st_mode) if st is not None else "gone"
        return f"not a regular file ({kind})", st
    if st.st_size > max_file_bytes:
        return f"{st.st_size:,} bytes, over the cap of {max_file_bytes:,} (max_file_bytes)", st
    return None, st


def _special_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "a special file")


def refusal(path: Path, root: Path, max_file_bytes: int) -> str | None:
    """Why this entry must not be read as data, or None. Checked before anything reads it."""
    return _examine(str(path), root, max_file_bytes)[0]


def _matches(data_dir: Path, root: Path, pattern: str) -> list[tuple[str, str, str | None]]:
    """(name, path, resolved path if known without a syscall) of each visible match, in name order."""
    if "/" in pattern or pattern == "**" or not any(c in pattern for c in "*?["):
        found = sorted(p for p in data_dir.glob(pattern) if not p.name.startswith("."))
        return [(p.name, str(p), None) for p in found]
    match, prefix = re.compile(fnmatch.translate(pattern)).match, os.path.join(root, "")
    with os.scandir(data_dir) as it:
        listed = [e for e in it if not e.name.startswith(".") and match(e.name)]
    listed.sort(key=lambda e: e.name)
    return [(e.name, e.path, None if e.is_symlink() else prefix + e.name) for e in listed]


def _scan(
    data_dir: Path, root: Path, pattern: str, max_file_bytes: int
) -> tuple[list[_Entry], list[tuple[str, str]]]:
    entries, refused = [], []
    for name, path, real in _matches(data_dir, root, pattern):
        why, st = _examine(path, root, max_file_bytes)
        if why is not None:
            refused.append((name, why))
        elif st is not None:
            entries.append(_Entry(name, real or os.path.realpath(path), st))
    return entries, refused


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} "


def _cached_sha256(record: str | None, st: os.stat_result) -> str | None:
    """The hash a cache record holds for a file with this stat, if it can be trusted without reading.

    A record is "dev ino size mtime_ns ctime_ns hashed_at_ns sha256". It is trusted only if the stat
    key matches and the file's last change (mtime, and ctime, which utime cannot set back) was at
    least RACY_WINDOW_NS before the hash started: a write in the same timestamp tick as the stat
    that was hashed would otherwise leave the key unchanged ("racy clean", as git calls it).
    """
    key = _stat_key(st)
    if record is None or not record.startswith(key):
        return None
    tail = _RECORD_TAIL.fullmatch(record, len(key))
    if tail is None or max(st.st_mtime_ns, st.st_ctime_ns) > int(tail[1]) - RACY_WINDOW_NS:
        return None
    return tail[2]


def _load_cache(path: Path) -> dict[str, str]:
    """The cache's records by resolved path; empty if the file is missing, unreadable or corrupt."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("version") == CACHE_VERSION else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(v, str)}


def _save_cache(path: Path, records: Mapping[str, str]) -> None:
    """Write atomically: readers see the old file or the new one, never half of one."""
    text = json.dumps({"version": CACHE_VERSION, "files": records}, separators=(",", ":"))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _updated_cache(
    cache: Mapping[str, str], entries: Sequence[_Entry], hashed: Mapping[str, str], hashed_at_ns: int
) -> dict[str, str]:
    """Keep records still valid, replace those just hashed, drop those of files that no longer exist."""
    seen = {e.real: e for e in entries}
    records = {p: r for p, r in cache.items() if p not in seen and os.path.exists(p)}
    for real, e in seen.items():
        sha = hashed.get(real)
        records[real] = cache[real] if sha is None else f"{_stat_key(e.st)}{hashed_at_ns} {sha}"
    return records


def _hash_all(paths: Sequence[str], hash_file: HashFile, workers: int) -> list[str]:
    """Hashes in the order of paths, read by up to `workers` threads (hashlib releases the GIL).

    Each thread takes the next file until none is left: one task per thread, not per file, because
    a future per 100 KiB file costs about as much as hashing it.
    """
    hashes = [""] * len(paths)
    todo = iter(range(len(paths)))  # next() on it is atomic under the GIL

    def work() -> None:
        try:
            for i in todo:
                hashes[i] = hash_file(Path(paths[i]))
        except BaseException:
            for _ in todo:  # drain it: the other threads stop after their current file
                pass
            raise

    threads = min(workers, len(paths))
    if threads <= 1:
        work()
        return hashes
    with ThreadPoolExecutor(threads, thread_name_prefix="manifest-hash") as pool:
        for done in [pool.submit(work) for _ in range(threads)]:
            done.result()
    return hashes


def build_manifest(
    data_dir: Path,
    pattern: str,
    max_file_bytes: int = 2 * 1024**3,
    cache_path: Path | None = None,
    *,
    store: ObjectStore | None = None,
    hash_file: HashFile = file_sha256,
    workers: int | None = None,
    now_ns: Callable[[], int] = time.time_ns,
) -> Manifest:
    """Hash every file matching pattern directly in data_dir, in name order; list what is refused.

    With cache_path, a file whose stat key matches a trusted record of the stat cache is not read.
    With store, every file is copied into the content-addressed store while it is hashed (one
    read), unless the cache knows its hash and the store holds that object already; a file that
    changes while it is copied is left out and named in `unstable`.
    """
    if not data_dir.is_dir():
        raise ConfigError(
            f"data directory {data_dir} does not exist; fetch the corpus with "
            f"tools/fetch-corpus.sh {data_dir} or pass --data-dir"
        )
    root = data_dir.resolve()
    started_ns = now_ns()  # before any stat, so that a write after the stat is inside the racy window
    entries, refused = _scan(data_dir, root, pattern, max_file_bytes)
    if not entries and not refused:
        raise ConfigError(f"no data files matching {pattern!r} in {data_dir}")
    cache = _load_cache(cache_path) if cache_path is not None else {}
    shas = {e.real: sha for e in entries if (sha := _cached_sha256(cache.get(e.real), e.st)) is not None}
    if store is not None:  # a known hash is only enough when its object is still stored
        stats = {e.real: e.st for e in entries}
        shas = {real: sha for real, sha in shas.items() if store.has(sha, stats[real].st_size)}

        def ingest(path: Path) -> str:
            return store.ingest(str(path), stats[str(path)])

        hash_file = ingest
    todo = list(dict.fromkeys(e.real for e in entries if e.real not in shas))
    hashed = dict(zip(todo, _hash_all(todo, hash_file, workers or min(4, os.cpu_count() or 1)), strict=True))
    unreadable = {real for real, sha in hashed.items() if sha == UNREADABLE}
    unstable = {real for real, sha in hashed.items() if sha == UNSTABLE}
    hashed = {real: sha for real, sha in hashed.items() if real not in unreadable | unstable}
    if cache_path is not None and (hashed or len(cache) != len(shas)):  # else every record was a hit
        known = [e for e in entries if e.real in shas or e.real in hashed]  # not unstable, not unreadable
        records = _updated_cache(cache, known, hashed, started_ns)
        if records != cache:
            _save_cache_quietly(cache_path, records)
    shas.update(hashed)
    refused += [
        (e.name, "cannot be read by this user (permission denied)") for e in entries if e.real in unreadable
    ]
    files = tuple(DataFile(e.name, e.st.st_size, shas[e.real]) for e in entries if e.real in shas)
    late = tuple(e.name for e in entries if e.real in unstable)
    return Manifest(files, tuple(sorted(refused)), late)


def _save_cache_quietly(path: Path, records: Mapping[str, str]) -> None:
    """The stat cache only saves work: a full disk or a read-only state directory must not fail a run."""
    try:
        _save_cache(path, records)
    except OSError as e:
        structlog.get_logger().warning("manifest_cache_not_saved", path=str(path), error=str(e))


def _recorded(entry: Mapping[str, Any]) -> tuple[str, int, str]:
    try:
        return str(entry["name"]), int(entry["size"]), str(entry["sha256"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"recorded manifest entry {entry!r} lacks a name, size or sha256") from e


def manifest_diff(recorded: Sequence[Mapping[str, Any]], current: Manifest) -> list[str]:
    """How the files a run recorded (`Manifest.to_json`) differ now, one line each; [] if identical.

    Files present now but not recorded are no difference: a reproduction reads only the recorded
    files (see `extra_files`).
    """
    now, refused = {f.name: f for f in current.files}, dict(current.refused)
    lines = []
    for name, size, sha in map(_recorded, recorded):
        f = now.get(name)
        if name in refused:
            lines.append(f"refused now: {name} ({refused[name]})")
        elif f is None:
            lines.append(f"missing: {name} (recorded sha256 {sha[:12]}, {size:,} bytes)")
        elif (f.sha256, f.size) != (sha, size):
            sizes = f"{size:,} -> {f.size:,} bytes" if f.size != size else f"same size, {size:,} bytes"
            lines.append(f"changed: {name} (sha256 {sha[:12]} recorded, {f.sha256[:12]} now; {sizes})")
    return lines


def extra_files(recorded: Sequence[Mapping[str, Any]], current: Manifest) -> list[str]:
    """Names present now (read or refused) that the record does not list, in name order."""
    names = {name for name, _, _ in map(_recorded, recorded)}
    return sorted({*current.names, *(name for name, _ in current.refused)} - names)
