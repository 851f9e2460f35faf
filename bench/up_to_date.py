"""Benchmark the no-change path: `retraind run` when nothing changed since the last successful run.

Runs the real CLI as a separate process, as a person or a CI job would: once to train (the stage
cache fills), then --repeat times with nothing changed. Each of those must train nothing and, the
issue's target, finish in under 2 s (process start, git, data manifest through the stat cache,
stage keys, podman's check that the image still exists). The baseline is `retraind --version`, the
bare cost of starting the CLI, measured in the same run.

Usage: .venv/bin/python bench/up_to_date.py [--data-dir DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RETRAIND = str(Path(sys.executable).parent / "retraind")
TARGET_S = 2.0


def timed(argv: list[str]) -> tuple[float, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
    started = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-2000:]}{result.stderr}"
        )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    finished = next((line for line in reversed(lines) if line.get("event") == "run_finished"), {})
    return elapsed, finished


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=ROOT / "data", help="default: the committed sample")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="retraind-bench-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        for csv in sorted(args.data_dir.glob("*.csv")):
            shutil.copy(csv, data / csv.name)
        flags = ["--json", "--repo", str(ROOT), "--data-dir", str(data), "--state-dir", f"{tmp}/state"]
        start = [timed([RETRAIND, "--version"])[0] for _ in range(args.repeat)]
        first_s, first = timed([RETRAIND, "run", *flags])
        again = [timed([RETRAIND, "run", *flags]) for _ in range(args.repeat)]
    outcomes = {f.get("outcome") for _, f in again}
    times = [s for s, _ in again]
    median = statistics.median(times)
    print(f"data: {', '.join(sorted(c.name for c in args.data_dir.glob('*.csv')))}")
    print(f"{'':42}{'median':>10}{'max':>10}")
    print(f"{'retraind --version (process start)':42}{statistics.median(start):9.2f}s{max(start):9.2f}s")
    print(f"{'first retraind run (trains)':42}{first_s:9.2f}s{'':>10}")
    print(f"{'retraind run, nothing changed':42}{median:9.2f}s{max(times):9.2f}s")
    pipeline_s = statistics.median(f["duration_s"] for _, f in again)
    print(f"  of which the pipeline itself (run_finished) {pipeline_s:6.3f}s")
    first_said = f"{first.get('outcome')} v{first.get('model_version')}"
    print(f"  outcomes: {sorted(str(o) for o in outcomes)}; first run: {first_said}")
    print(f"  no-change / first run: {median / first_s:.3f}x")
    verdict = "PASS" if max(times) < TARGET_S and outcomes == {"up_to_date"} else "FAIL"
    print(f"target: every no-change run under {TARGET_S:.0f} s and training nothing: {verdict}")


if __name__ == "__main__":
    main()
