"""Benchmark a data drop: what a new file in the data directory costs through `retraind run` when the
image is cached, against the bare training on the host over the same data, measured in the same run.

1. Set-up (not timed): the corpus is split into two files of alternate records; `retraind run` over
   the first half builds (or finds) the image and fills the stage cache.
2. Baseline: `scripts/train.py` run by the host venv's Python over the full corpus, preprocessed on
   the host by the same `scripts/preprocess.js`.
3. The drop: the second half arrives as a new file; `retraind run` (the CLI as typed, a process of
   its own) checks, preprocesses and trains the full corpus and registers the model. Steps 2 and 3
   are repeated (--repeat, 3; each drop replaces the last with the second half less k records, so
   each is new data) and the medians compared: a single run is +-0.2 s on a shared 2-core machine.
4. A broken drop (a binary file named .csv, and a file with the wrong delimiter): `retraind run`
   must refuse it (exit 3) within 5 s, end to end.

Prints the stage times and, as its last line, `data-drop run / bare training: N.NNx` (target <=
1.5x, stretch 1.3x). Usage: .venv/bin/python bench/data_drop.py [--data-dir DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.core.config import load_settings  # noqa: E402

RETRAIND = str(Path(sys.executable).parent / "retraind")
TARGET, STRETCH, REFUSAL_TARGET_S = 1.5, 1.3, 5.0


def read_corpus(corpus: Path) -> tuple[list[str], list[list[str]]]:
    with corpus.open(encoding="latin-1", newline="") as src:  # latin-1 round-trips every byte
        header, *rows = list(csv.reader(src))
    return header, rows


def write_csv(target: Path, header: list[str], rows: list[list[str]]) -> None:
    with target.open("w", encoding="latin-1", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def retraind_run(flags: list[str]) -> tuple[float, int, dict[str, Any], list[dict[str, Any]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
    started = time.perf_counter()
    done = subprocess.run([RETRAIND, "run", "--json", *flags], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    finished = next((e for e in reversed(lines) if e.get("event") == "run_finished"), {})
    return elapsed, done.returncode, finished, lines


def must_succeed(flags: list[str], what: str) -> tuple[float, dict[str, Any], list[dict[str, Any]]]:
    elapsed, code, finished, lines = retraind_run(flags)
    if code != 0:
        raise SystemExit(f"{what}: retraind run exited {code}: {finished.get('error', lines[-3:])}")
    return elapsed, finished, lines


def bare_training(corpus: Path, work: Path, k: int) -> float:
    processed = work / "processed.jsonl"
    node = ["node", str(ROOT / "scripts/preprocess.js"), "--output", str(processed), str(corpus)]
    subprocess.run(node, check=True, capture_output=True)
    started = time.perf_counter()
    argv = [sys.executable, str(ROOT / "scripts/train.py"), "--input", str(processed)]
    subprocess.run([*argv, "--output", str(work / f"bare{k}")], check=True, capture_output=True)
    return time.perf_counter() - started


def refusals(flags: list[str], data: Path) -> list[tuple[str, float, int]]:
    """Each broken drop alone in the data directory: (what, seconds to the refusal, exit code)."""
    broken = {
        "binary": bytes(range(256)) * 64,
        "semicolons": b"sentiment;confidence;text\npositive;0.9;a fine day\nnegative;0.8;a bad one\n",
    }
    found = []
    for name, content in broken.items():
        for old in data.glob("*.csv"):
            old.unlink()
        (data / f"{name}.csv").write_bytes(content)
        elapsed, code, _, _ = retraind_run(flags)
        found.append((name, elapsed, code))
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data-dir", type=Path, help="where tweets.csv is (default: configured data_dir)")
    p.add_argument("--repeat", type=int, default=3, help="drops and bare trainings (medians)")
    args = p.parse_args()
    corpus = (args.data_dir or load_settings({}).data_dir) / "tweets.csv"
    if not corpus.is_file():
        raise SystemExit(f"no corpus at {corpus}: run tools/fetch-corpus.sh")
    with tempfile.TemporaryDirectory(prefix="retraind-bench-") as tmp:
        work, data = Path(tmp), Path(tmp) / "data"
        data.mkdir()
        header, rows = read_corpus(corpus)
        write_csv(data / "a.csv", header, rows[0::2])
        flags = ["--repo", str(ROOT), "--data-dir", str(data), "--state-dir", str(work / "state")]
        must_succeed(flags, "set-up run over the first half")
        bare = statistics.median(bare_training(corpus, work, k) for k in range(args.repeat))
        drops = []
        for k in range(1, args.repeat + 1):
            for old in data.glob("b*.csv"):
                old.unlink()
            write_csv(data / f"b{k}.csv", header, rows[1::2][:-k])  # the drop: new data each time
            drops.append(must_succeed(flags, f"data-drop run {k}"))
        refused = refusals(flags, data)
    elapsed = statistics.median(e for e, _, _ in drops)
    runs = [[e for e in lines if e.get("event") == "stage_finished"] for _, _, lines in drops]
    summaries = {e["stage"]: e["summary"] for e in runs[-1]}
    seconds = {
        stage: statistics.median(e["duration_s"] for r in runs for e in r if e["stage"] == stage)
        for stage in summaries
    }
    print(f"corpus: {len(rows):,} records; each drop adds about {len(rows) // 2:,} in a second file")
    print(f"{'stage':<12}{'s':>8}  summary (times: medians of {args.repeat} drops)")
    for stage, summary in summaries.items():
        print(f"{stage:<12}{seconds[stage]:>8.2f}  {summary[:90]}")
    run_s = statistics.median(f["duration_s"] for _, f, _ in drops)
    print(f"{'run':<12}{run_s:>8.2f}  (pipeline, as the run reports it)")
    each = ", ".join(f"{e:.2f}" for e, _, _ in drops)
    print(f"{'process':<12}{elapsed:>8.2f}  (retraind run, start to exit; each: {each})")
    print(f"bare training on the host (same train.py, same data, median of {args.repeat}): {bare:.2f} s")
    for name, seconds, code in refused:
        verdict = "PASS" if code == 3 and seconds <= REFUSAL_TARGET_S else "FAIL"
        print(f"refusing a broken drop ({name}): {seconds:.2f} s, exit {code}: {verdict} (target <= 5 s)")
    ratio = elapsed / bare
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    stretch = " (stretch 1.3x met)" if ratio <= STRETCH else ""
    print(f"{verdict} against <= {TARGET}x{stretch}")
    print(f"data-drop run / bare training: {ratio:.2f}x")


if __name__ == "__main__":
    main()
