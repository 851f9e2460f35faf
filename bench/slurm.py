"""The Slurm executor's cost per stage: the same pipeline on the same machine, every stage run
(`--force`: the stage cache answers nothing; podman's layer cache is warm), once with
`executor = "local"` and once with `executor = "slurm"` on a single-node cluster started here
(munge, slurmctld, slurmd in a temporary directory, as tests/integration/slurm.py starts them).
The two executors alternate (--repeat, 3) and the medians are compared: per stage, the Slurm
executor's seconds, the local one's, the difference (what a Slurm job costs: sbatch, the
scheduler, the first looks at the job, the batch script) and the ratio. Prints a table and writes
bench/results/slurm.json.

Usage: .venv/bin/python bench/slurm.py [--data-dir DIR] [--repeat N]
(default data: data/sample.csv; as root the containers are rootful, as a user rootless)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.adapters.logs import configure_logging  # noqa: E402
from daemon.app import run_once  # noqa: E402
from daemon.core.config import load_settings  # noqa: E402
from daemon.core.outcome import PipelineOutcome  # noqa: E402
from daemon.core.slurm import slurm_options  # noqa: E402
from daemon.engine.progress import LogRecorder  # noqa: E402
from tests.integration.slurm import SlurmCluster  # noqa: E402  (the cluster the tests start)

SLURM_STAGES = ("validate", "train")  # the gate preprocesses in validate's container: no job of its own


def pipeline(data_dir: Path, state_dir: Path, executor: str, force: bool = True) -> PipelineOutcome:
    settings = load_settings({"repo": ROOT, "data_dir": data_dir, "state_dir": state_dir})
    slurm = slurm_options({"partition": "cpu", "train": {"partition": "train"}, "poll_s": 0.5}, ROOT, ROOT)
    settings = replace(settings, executor=executor, slurm=slurm)
    outcome = run_once(settings, LogRecorder(), use_cache=not force)
    if not outcome.ok:
        raise SystemExit(f"{executor}: pipeline failed at {outcome.failed_stage}: {outcome.error}")
    return outcome


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, default=ROOT / "data", help="default: data/ (the sample)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each executor (medians)")
    args = p.parse_args()
    configure_logging(json_lines=True, stream=open("/dev/null", "w"))  # noqa: SIM115
    runs: dict[str, list[PipelineOutcome]] = {"local": [], "slurm": []}
    with tempfile.TemporaryDirectory(prefix="retraind-bench-slurm-") as tmp:
        cluster = SlurmCluster(Path(tmp) / "cluster")
        cluster.start()
        try:
            os.environ.update(cluster.client_env())
            for executor in runs:  # warm-up, untimed: the tracking DB, the image, the first job
                pipeline(args.data_dir, Path(tmp) / executor, executor, force=False)
            for _ in range(args.repeat):
                for executor, done in runs.items():
                    done.append(pipeline(args.data_dir, Path(tmp) / executor, executor))
        finally:
            cluster.stop()
    rows = {}
    for stage in runs["local"][0].durations:
        local = statistics.median(o.durations[stage] for o in runs["local"])
        slurm = statistics.median(o.durations[stage] for o in runs["slurm"])
        rows[stage] = {
            "local_s": round(local, 3),
            "slurm_s": round(slurm, 3),
            "overhead_s": round(slurm - local, 3),
            "ratio": round(slurm / local, 2) if local else None,
            "slurm_job": stage in SLURM_STAGES,
        }
    total = {e: statistics.median(o.duration_s for o in done) for e, done in runs.items()}
    head = f"{'stage':<11} {'local s':>8} {'slurm s':>8} {'overhead s':>11} {'ratio':>6}"
    print(f"{head}  (medians of {args.repeat})")
    for stage, r in rows.items():
        job = "" if r["slurm_job"] else "  (runs here either way)"
        cells = f"{r['local_s']:>8.2f} {r['slurm_s']:>8.2f} {r['overhead_s']:>11.2f} {r['ratio'] or 0:>6.2f}"
        print(f"{stage:<11} {cells}{job}")
    overhead = total["slurm"] - total["local"]
    print(
        f"{'run':<11} {total['local']:>8.2f} {total['slurm']:>8.2f} {overhead:>11.2f} "
        f"{total['slurm'] / total['local']:>6.2f}"
    )
    per_job = statistics.mean(rows[s]["overhead_s"] for s in SLURM_STAGES)
    print(f"a Slurm job costs {per_job:.2f} s more than the same container here (mean of {SLURM_STAGES})")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    figures = {"repeat": args.repeat, "stages": rows, "run": total, "per_job_overhead_s": per_job}
    (results / "slurm.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
