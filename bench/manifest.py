"""Benchmark the data manifest over 10,000 CSV files totalling 1 GB: cold hashing (no stat cache) beside
raw hashlib SHA-256 over the same bytes in memory; the cold data snapshot (copy into the object store,
hashed while copied) beside `cp -r` followed by `sha256sum` of the copies; then the stat cache's warm
"nothing changed" decision (with the store) beside the bare scandir + lstat of every file. Prints a
table; the data lives in a temporary directory.

Usage: .venv/bin/python bench/manifest.py [--files 10000] [--total-mb 1024] [--dir PARENT] [--drop-caches]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.adapters.manifest import RACY_WINDOW_NS, build_manifest  # noqa: E402
from daemon.adapters.store import ObjectStore  # noqa: E402
from daemon.core.inputs import file_sha256  # noqa: E402

COLD_TARGET = 0.8  # cold manifest throughput / raw single-thread hashlib throughput
SNAPSHOT_TARGET = 0.8  # cold snapshot speed / (cp, then sha256sum of the copies)
WARM_TARGET_MS = 150.0  # the no-change decision
ROW_BYTES = 8 + 1 + 76 + 1  # "positive," + one base64 line of 57 random bytes + "\n"


def generate(data: Path, files: int, total_bytes: int) -> int:
    """files CSV files of about total_bytes / files each: a unique first row, then random-looking rows."""
    pool_rows = 4096
    labels = (b"positive", b"negative", b"neutral_")
    raw = os.urandom(57 * pool_rows)
    pool = b"".join(
        labels[i % 3] + b"," + base64.b64encode(raw[i * 57 : (i + 1) * 57]) + b"\n" for i in range(pool_rows)
    )
    rows_per_file = max(1, (total_bytes // files) // ROW_BYTES)
    written = 0
    for i in range(files):
        start = (i * 7919 % pool_rows) * ROW_BYTES
        body = (pool[start:] + pool)[: rows_per_file * ROW_BYTES]
        content = b"sentiment,text\n" + f"positive,file {i:05d}\n".encode() + body
        (data / f"part-{i:05d}.csv").write_bytes(content)
        written += len(content)
    return written


def median_s(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def raw_baseline(data: Path) -> float:
    """Seconds for hashlib.sha256 over every file's bytes, already in memory, one thread (median of 3)."""
    blobs = [p.read_bytes() for p in sorted(data.iterdir())]
    return median_s(lambda: [hashlib.sha256(b).hexdigest() for b in blobs], 3)


def stat_floor(data: Path) -> None:
    """What any "nothing changed" decision must do at least: list the directory, lstat every entry."""
    with os.scandir(data) as it:
        for entry in it:
            entry.stat(follow_symlinks=False)


def drop_caches() -> str | None:
    """Empty the kernel's page cache (root only); why not, or None when done."""
    if os.geteuid() != 0:
        return "not root"
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as e:
        return f"cannot write /proc/sys/vm/drop_caches: {e.strerror}"
    return None


def row(label: str, seconds: float, mb: float, raw_s: float | None) -> str:
    ratio = f"{raw_s / seconds:.2f}x" if raw_s else "baseline"
    return f"{label:<56}{seconds:>9.3f}{mb / seconds:>9,.0f}{ratio:>9}"


def file_digest_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cold(data: Path, mb: float, drop: bool) -> None:
    """Throughput of building the manifest without a stat cache, against raw hashlib in memory."""
    print(f"{'cold: every file hashed, no stat cache':<56}{'seconds':>9}{'MB/s':>9}{'vs raw':>9}")
    raw_s = raw_baseline(data)
    print(row("raw hashlib.sha256, bytes in memory, 1 thread (baseline)", raw_s, mb, None))
    digest_s = median_s(lambda: build_manifest(data, "*.csv", hash_file=file_digest_sha256, workers=1), 3)
    print(row("manifest, page cache, 1 worker, hashlib.file_digest", digest_s, mb, raw_s))
    one_s = median_s(lambda: build_manifest(data, "*.csv", workers=1), 3)
    print(row("manifest, page cache, 1 worker", one_s, mb, raw_s))
    workers = min(4, os.cpu_count() or 1)
    cold_s = median_s(lambda: build_manifest(data, "*.csv"), 3)
    print(row(f"manifest, page cache, {workers} workers (the default)", cold_s, mb, raw_s))
    if drop:
        why_not = drop_caches()
        if why_not is None:
            disk_s = median_s(lambda: build_manifest(data, "*.csv"), 1)
            print(
                row(f"manifest, PAGE CACHE DROPPED (reads from disk), {workers} workers", disk_s, mb, raw_s)
            )
        else:
            print(f"{'manifest, page cache dropped':<56}skipped: {why_not}")
    verdict = "PASS" if raw_s / cold_s >= COLD_TARGET else "FAIL"
    print(f"target: default cold manifest >= {COLD_TARGET:.2f}x raw: {raw_s / cold_s:.2f}x {verdict}")


def timed_fresh(run: Callable[[Path], object], scratch: Path, runs: int = 3) -> float:
    """Median seconds of run(dest) into a destination that does not exist yet (removed untimed)."""
    times = []
    for i in range(runs):
        dest = scratch / f"dest-{i}"
        started = time.perf_counter()
        run(dest)
        times.append(time.perf_counter() - started)
        shutil.rmtree(dest)
    return statistics.median(times)


def cp_then_sha256sum(data: Path, dest: Path) -> None:
    subprocess.run(["cp", "-r", str(data), str(dest)], check=True)
    names = sorted(str(p) for p in dest.iterdir())
    for i in range(0, len(names), 2000):  # argv stays well under the limit
        subprocess.run(["sha256sum", *names[i : i + 2000]], check=True, stdout=subprocess.DEVNULL)


def snapshot(data: Path, scratch: Path, mb: float) -> None:
    """The cold snapshot (one read: hash while copying into the store) against cp + sha256sum."""
    print(f"{'cold snapshot: every file copied into the store':<56}{'seconds':>9}{'MB/s':>9}{'vs base':>9}")
    base_s = timed_fresh(lambda dest: cp_then_sha256sum(data, dest), scratch)
    print(row("cp -r, then sha256sum of the copies (baseline)", base_s, mb, None))
    snap_s = timed_fresh(lambda dest: build_manifest(data, "*.csv", store=ObjectStore(dest)), scratch)
    workers = min(4, os.cpu_count() or 1)
    print(row(f"snapshot into the object store, {workers} workers", snap_s, mb, base_s))
    verdict = "PASS" if base_s / snap_s >= SNAPSHOT_TARGET else "FAIL"
    print(f"target: cold snapshot >= {SNAPSHOT_TARGET:.2f}x cp + sha256sum: {base_s / snap_s:.2f}x {verdict}")


def warm(data: Path, cache: Path, files: int, runs: int = 5) -> None:
    """The no-change decision with a populated stat cache, against the bare scandir + lstat."""
    reads: list[Path] = []

    def counting(path: Path) -> str:
        reads.append(path)
        return file_sha256(path)

    build_manifest(data, "*.csv", cache_path=cache)  # populate
    warm_s = median_s(lambda: build_manifest(data, "*.csv", cache_path=cache, hash_file=counting), runs)
    store = ObjectStore(cache.parent / "objects")
    build_manifest(data, "*.csv", cache_path=cache, store=store)  # every object stored
    store_s = median_s(lambda: build_manifest(data, "*.csv", cache_path=cache, store=store), runs)
    floor_s = median_s(lambda: stat_floor(data), runs)
    print(f"warm: nothing changed, stat cache populated (median of {runs})")
    print(f"  build_manifest:                {warm_s * 1e3:7.1f} ms {warm_s * 1e6 / files:6.2f} us/file")
    print(f"  ... with the object store:     {store_s * 1e3:7.1f} ms {store_s * 1e6 / files:6.2f} us/file")
    verdict = "PASS" if store_s * 1e3 <= WARM_TARGET_MS else "FAIL"
    print(f"  target: no-change decision with the store <= {WARM_TARGET_MS:.0f} ms: {verdict}")
    print(f"  floor, scandir + lstat only:   {floor_s * 1e3:7.1f} ms {floor_s * 1e6 / files:6.2f} us/file")
    print(f"  warm / floor: {warm_s / floor_s:.1f}x; files read by the warm runs: {len(reads)}")
    size = cache.stat().st_size
    print(f"stat cache file: {size:,} bytes ({size / files:.0f} bytes/file)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--files", type=int, default=10_000)
    p.add_argument("--total-mb", type=int, default=1024, help="total size in MiB")
    p.add_argument("--dir", type=Path, help="parent of the temporary data directory (default: $TMPDIR)")
    p.add_argument("--drop-caches", action="store_true", help="also time a cold build off the disk (root)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="retraind-bench-", dir=args.dir) as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        total = generate(data, args.files, args.total_mb * 1024**2)
        settled_ns = time.time_ns() + RACY_WINDOW_NS
        print(f"{args.files:,} files, {total:,} bytes ({total // args.files:,} each) in {data}")
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (other work skews the figures)")
        cold(data, total / 1e6, args.drop_caches)
        snapshot(data, Path(tmp), total / 1e6)
        time.sleep(max(0.0, (settled_ns - time.time_ns()) / 1e9))  # else fresh files are rightly re-read
        warm(data, Path(tmp) / "manifest-cache.json", args.files)
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
