"""Why two machines train different model bytes that predict the same: OpenBLAS (bundled with numpy
and scipy, used by scikit-learn's liblinear) picks its kernels by CPU and splits work by core count.
Trains `scripts/train.py` on the same processed data under several OpenBLAS kernels and thread
counts, as different machines would choose them, and prints the model and prediction hashes and the
time of each, against the pinned setting retraind uses (blas_coretype Haswell, blas_threads 1).

Usage: .venv/bin/python bench/blas_identity.py [--processed runs/<id>/preprocess/processed.jsonl]
(default: the newest run's processed data in the default state directory; `retraind run` first)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHOICES = [  # (what a machine would do, the environment)
    ("this CPU, every core (unpinned)", {}),
    ("this CPU, 1 thread", {"OPENBLAS_NUM_THREADS": "1"}),
    ("an AVX2 CPU without AVX-512, 2 cores", {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "2"}),
    ("an AVX-512 CPU, 2 cores", {"OPENBLAS_CORETYPE": "SkylakeX", "OPENBLAS_NUM_THREADS": "2"}),
    ("an AVX CPU (2011), 2 cores", {"OPENBLAS_CORETYPE": "Sandybridge", "OPENBLAS_NUM_THREADS": "2"}),
    (
        "pinned: Haswell, 1 thread (retraind's default)",
        {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1"},
    ),
    ("pinned, again", {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_NUM_THREADS": "1"}),
]


def newest_processed() -> Path:
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "retraind" / "runs"
    found = sorted(state.glob("*/preprocess/processed.jsonl"))
    if not found:
        raise SystemExit(
            f"no processed data under {state}: run `.venv/bin/retraind run` first, or pass --processed"
        )
    return found[-1]


def train(processed: Path, env: dict[str, str]) -> tuple[str, str, float, float]:
    with tempfile.TemporaryDirectory() as out:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, str(ROOT / "scripts/train.py"), "--input", str(processed), "--output", out],
            env={**clean, **env}, check=True, capture_output=True,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        identity = json.loads((Path(out) / "artifacts" / "identity.json").read_text())
        f1 = json.loads((Path(out) / "artifacts" / "metrics.json").read_text())["f1_score_weighted"]
    return identity["model_sha256"], identity["predictions_sha256"], f1, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processed", type=Path)
    args = p.parse_args()
    processed = args.processed or newest_processed()
    print(f"{processed} ({sum(1 for _ in processed.open()):,} rows), {os.cpu_count()} CPUs")
    print(f"{'machine':<48}{'model sha256':>14}{'predictions':>14}{'weighted F1':>13}{'seconds':>9}")
    models = {}
    for label, env in CHOICES:
        model, predictions, f1, seconds = train(processed, env)
        models[label] = model
        print(f"{label:<48}{model[:12]:>14}{predictions[:12]:>14}{f1:>13.6f}{seconds:>9.2f}")
    distinct = len(set(list(models.values())[:5]))
    same = models["pinned: Haswell, 1 thread (retraind's default)"] == models["pinned, again"]
    print(f"{distinct} distinct model hashes among the 5 unpinned choices; pinned twice identical: {same}")


if __name__ == "__main__":
    main()
