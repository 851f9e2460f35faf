"""Benchmark the one-shot pipeline: each stage cold (image built without cache) and warm (a later
run with `--force`: every stage runs, the image layers and the state directory are warm), the bare
training (the same train.py on the host, same data), and the ratio of the warm pipeline to the bare
training (target <= 1.6x). The warm run and the bare training are repeated (--repeat, 3) and the
medians compared: one run of each is a coin toss of +-0.2 s on a shared 2-core machine. Prints a
table and writes bench/results/pipeline.json. With --skip-cold, an untimed run warms the state
directory instead of the cold one.

Usage: .venv/bin/python bench/pipeline.py [--data-dir DIR] [--skip-cold] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.adapters.logs import configure_logging  # noqa: E402
from daemon.app import run_once  # noqa: E402
from daemon.core.config import load_settings  # noqa: E402
from daemon.core.outcome import PipelineOutcome  # noqa: E402
from daemon.engine.progress import LogRecorder  # noqa: E402

TARGET = 1.6


def pipeline(
    data_dir: Path | None, state_dir: Path, *, no_cache: bool, force: bool = True
) -> PipelineOutcome:
    settings = load_settings(
        {"repo": ROOT, "data_dir": data_dir, "state_dir": state_dir, "no_cache": no_cache}
    )
    outcome = run_once(settings, LogRecorder(), use_cache=not force)  # forced: the stages, not the cache
    if not outcome.ok:
        raise SystemExit(f"pipeline failed at {outcome.failed_stage}: {outcome.error}")
    return outcome


def bare_training(processed: Path, out: Path) -> float:
    """The same train.py, run directly by the host venv's Python on the same processed data."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/train.py"), "--input", str(processed), "--output", str(out)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, help="default: the configured data directory")
    p.add_argument("--skip-cold", action="store_true", help="skip the uncached build")
    p.add_argument("--repeat", type=int, default=3, help="warm runs and bare trainings (medians)")
    args = p.parse_args()
    configure_logging(json_lines=True, stream=open("/dev/null", "w"))  # noqa: SIM115
    with tempfile.TemporaryDirectory(prefix="retraind-bench-") as tmp:
        state = Path(tmp)
        cold = None if args.skip_cold else pipeline(args.data_dir, state, no_cache=True)
        if cold is None:  # the tracking DB, the image's inspection: what a warm machine has
            pipeline(args.data_dir, state, no_cache=False, force=False)
        warms = [pipeline(args.data_dir, state, no_cache=False) for _ in range(args.repeat)]
        processed = state / "runs" / warms[-1].run_id / "preprocess" / "processed.jsonl"
        bare = statistics.median(bare_training(processed, state / f"bare{k}") for k in range(args.repeat))
    warm = warms[-1]
    warm_total = statistics.median(w.duration_s for w in warms)
    rows = {
        stage: {
            "cold_s": cold.durations[stage] if cold else None,
            "warm_s": statistics.median(w.durations[stage] for w in warms),
        }
        for stage in warm.durations
    }
    result = {
        "stages": rows,
        "total_cold_s": cold.duration_s if cold else None,
        "total_warm_s": warm_total,
        "warm_runs_s": [w.duration_s for w in warms],
        "bare_training_s": bare,
        "warm_pipeline_over_bare_training": warm_total / bare,
        "f1_score_weighted": warm.results["train"].outputs["metrics"]["f1_score_weighted"],
    }
    print(f"{'stage':<12}{'cold s':>10}{'warm s':>10}  (warm: median of {args.repeat} forced runs)")
    for stage, r in rows.items():
        cold_s = f"{r['cold_s']:.2f}" if r["cold_s"] is not None else "-"
        print(f"{stage:<12}{cold_s:>10}{r['warm_s']:>10.2f}")
    total_cold = f"{result['total_cold_s']:.2f}" if cold else "-"
    print(f"{'pipeline':<12}{total_cold:>10}{warm_total:>10.2f}")
    print(f"bare training on the host (same train.py, same data, median of {args.repeat}): {bare:.2f} s")
    ratio = result["warm_pipeline_over_bare_training"]
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    print(f"warm pipeline / bare training: {ratio:.2f}x: {verdict} (target <= {TARGET}x)")
    print(f"weighted F1: {result['f1_score_weighted']:.4f}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
