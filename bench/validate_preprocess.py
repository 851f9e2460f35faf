"""Benchmark the data gate and the preprocessing: rows per second of `check-data.js` + `preprocess.js`
over the full corpus replicated to about 380,000 rows, beside pandas `read_csv` plus the equivalent
string operations (lowercase, strip, split, stop words, label counts, empties) on the same file.

It also measures both ways of running the gate's work that the pipeline can choose between: three
processes (`check-data.js`, `preprocess.js`, then `parity.py` over the written file: what an image
of stage contract 1 gets, in three containers) against one (`gate.js`: the checks, then the
preprocessing with the parity check fed through a pipe on the other core), and prints the ratio.

The last line is PASS or FAIL against issue 15's target: validate + preprocess at least as many rows
per second as pandas (a ratio >= 1.00x), both measured in this run.

Usage: .venv/bin/python bench/validate_preprocess.py [--copies 10] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.core.config import load_settings  # noqa: E402

STOP_WORDS = {"a", "an", "the", "is", "in", "on", "at"}
TARGET_RATIO = 1.0


def replicate(corpus: Path, copies: int, target: Path) -> int:
    """The corpus's records (latin-1 round-trips every byte; records may span lines), copies times."""
    with corpus.open(encoding="latin-1", newline="") as src:
        header, *rows = list(csv.reader(src))
    with target.open("w", encoding="latin-1", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for _ in range(copies):
            writer.writerows(rows)
    return len(rows) * copies


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    # parity.py under this venv's Python, wherever gate.js starts it
    subprocess.run(
        argv, check=True, capture_output=True, env={**os.environ, "RETRAIND_PYTHON": sys.executable}
    )
    return time.perf_counter() - started


def pandas_equivalent(path: Path) -> float:
    """What a notebook would do: read, decode, clean, tokenize, count labels and empties."""
    started = time.perf_counter()
    frame = pd.read_csv(path, encoding="latin-1")
    assert {"sentiment", "text"} <= set(frame.columns)
    cleaned = frame["text"].fillna("").str.lower().str.replace(r"[^\w\s]|_", "", regex=True)
    tokens = cleaned.str.split().map(lambda ts: [t for t in ts if t not in STOP_WORDS])
    _ = frame["sentiment"].str.strip().value_counts()
    _ = (tokens.map(len) == 0).mean()
    _ = tokens.map(" ".join)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--data-dir", type=Path)
    args = p.parse_args()
    data_dir = args.data_dir or load_settings({}).data_dir
    with tempfile.TemporaryDirectory(prefix="retraind-bench-") as tmp:
        big = Path(tmp) / "big.csv"
        rows = replicate(data_dir / "tweets.csv", args.copies, big)
        scripts = ROOT / "scripts"
        validate_s = timed(
            [
                "node",
                str(scripts / "check-data.js"),
                "--report",
                f"{tmp}/report.json",
                "--max-duplicate-share",
                "1",
                str(big),
            ]
        )
        preprocess_s = timed(
            ["node", str(scripts / "preprocess.js"), "--output", f"{tmp}/out.jsonl", str(big)]
        )
        parity = [str(scripts / "parity.py"), "--input", f"{tmp}/out.jsonl", "--report", f"{tmp}/parity.json"]
        parity_s = timed([sys.executable, *parity])
        gate = ["--report", f"{tmp}/gate.json", "--max-duplicate-share", "1", "--output", f"{tmp}/gate.jsonl"]
        gate_s = timed(
            ["node", str(scripts / "gate.js"), *gate, "--parity", f"{tmp}/gate-parity.json", str(big)]
        )
        pandas_s = pandas_equivalent(big)
    ours = validate_s + preprocess_s
    print(f"{rows:,} rows ({args.copies} copies of the corpus), {big.name}")
    print(f"{'step':<40}{'seconds':>9}{'rows/s':>12}")
    for name, seconds in (
        ("check-data.js (validate)", validate_s),
        ("preprocess.js", preprocess_s),
        ("validate + preprocess", ours),
        ("parity.py over the written file", parity_s),
        ("three processes: the above", ours + parity_s),
        ("one process: gate.js (parity piped)", gate_s),
        ("pandas read_csv + string ops", pandas_s),
    ):
        print(f"{name:<40}{seconds:>9.2f}{rows / seconds:>12,.0f}")
    one_over_three = gate_s / (ours + parity_s)
    print(f"one process / three processes: {one_over_three:.2f}x the time (container starts not counted)")
    print(f"validate + preprocess / pandas: {ours / pandas_s:.2f}x the time")
    ratio = pandas_s / ours
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"{verdict}: validate + preprocess rows/s / pandas: {ratio:.2f}x (target >= {TARGET_RATIO:.1f}x)")


if __name__ == "__main__":
    main()
