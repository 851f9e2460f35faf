"""Benchmark serving: `retraind serve` against `mlflow models serve` of the same champion, on the same
machine, in one run, at concurrency 1, 8 and 32.

1. Set-up (not timed): a state directory with a champion. By default `retraind run` trains one on
   data/sample.csv (the image from podman's cache); `--state-dir DIR` serves the champion already
   in DIR's MLflow store.
2. `retraind serve` (its own process, the CLI as typed) on a free port; `mlflow models serve -m
   models:/NAME@champion --env-manager local` (MLflow 3.17, one worker, its default) on another.
3. For each concurrency, a closed-loop client (asyncio, aiohttp, keep-alive connections) sends
   `POST /invocations` with one text in `dataframe_split` form, the same bytes to both, for
   `--seconds` after a warm-up; it counts answers per second and takes p50 and p99 of the
   latencies. A non-200 answer counts as a failure and is printed.

Prints a table and, per concurrency, retraind / mlflow throughput and p99 ratios. Goal (issue 13):
>= 2x MLflow's throughput at 8 and 32 with equal or lower p99, and p99 <= 10 ms at concurrency 1.
Usage: .venv/bin/python bench/serve.py [--state-dir DIR] [--seconds 10] [--concurrency 1,8,32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RETRAIND = str(Path(sys.executable).parent / "retraind")
MLFLOW = str(Path(sys.executable).parent / "mlflow")
TEXTS = [
    "I love this phone, the battery lasts all day",
    "worst customer service I have ever had",
    "the meeting is at 3pm in room 204",
    "not bad at all, could be better though",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
    return {**env, **extra}


def train_champion(work: Path) -> Path:
    data = work / "data"
    data.mkdir()
    shutil.copy(ROOT / "data/sample.csv", data / "sample.csv")
    state = work / "state"
    argv = [
        RETRAIND,
        "run",
        "--json",
        "--repo",
        str(ROOT),
        "--data-dir",
        str(data),
        "--state-dir",
        str(state),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), timeout=1800)
    if done.returncode != 0:
        sys.exit(f"retraind run failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return state


def wait_ready(url: str, proc: subprocess.Popen[bytes], started: float, timeout_s: float, what: str) -> float:
    """Seconds from the server's start (`started`) to its first 200 to /invocations."""
    body = json.dumps({"dataframe_split": {"columns": ["text"], "data": [[TEXTS[0]]]}}).encode()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            req = urllib.request.Request(url + "/invocations", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{what} did not answer within {timeout_s:.0f} s")


async def load(url: str, concurrency: int, seconds: float, warm_s: float = 2.0) -> dict[str, Any]:
    import aiohttp

    bodies = [json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t]]}}).encode() for t in TEXTS]
    latencies: list[float] = []
    failures: list[str] = []
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        measuring = False
        stop_at = time.monotonic() + warm_s + seconds
        measure_from = time.monotonic() + warm_s

        async def worker(i: int) -> None:
            nonlocal measuring
            n = i
            while time.monotonic() < stop_at:
                body = bodies[n % len(bodies)]
                n += 1
                t0 = time.perf_counter()
                async with session.post(url + "/invocations", data=body, headers=headers) as answer:
                    await answer.read()
                    status = answer.status
                elapsed = time.perf_counter() - t0
                if time.monotonic() >= measure_from:
                    latencies.append(elapsed)
                    if status != 200:
                        failures.append(str(status))

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    latencies.sort()
    count = len(latencies)
    return {
        "rps": count / seconds,
        "p50_ms": 1000 * latencies[count // 2] if count else float("nan"),
        "p99_ms": 1000 * latencies[min(count - 1, int(count * 0.99))] if count else float("nan"),
        "failures": len(failures),
        "requests": count,
    }


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state-dir", type=Path, help="serve the champion of this state directory")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--model-name", default="nlp-sentiment-classifier")
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    work = Path(tempfile.mkdtemp(prefix="retraind-bench-serve-"))
    state = args.state_dir or train_champion(work)
    tracking = f"sqlite:///{state / 'mlflow.db'}"
    servers: dict[str, tuple[str, subprocess.Popen[bytes]]] = {}
    started: dict[str, float] = {}
    try:
        port = free_port()
        (work / "none.toml").touch()
        started["retraind serve"] = time.monotonic()
        retraind = subprocess.Popen(
            [RETRAIND, "serve", "--json", "--state-dir", str(state), "--port", str(port)],
            env=clean_env(RETRAIND_CONFIG=str(work / "none.toml")),
            stdout=(work / "retraind-serve.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        servers["retraind serve"] = (f"http://127.0.0.1:{port}", retraind)
        port = free_port()
        started["mlflow models serve"] = time.monotonic()
        mlflow = subprocess.Popen(
            [MLFLOW, "models", "serve", "-m", f"models:/{args.model_name}@champion", "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(port)],
            env=clean_env(MLFLOW_TRACKING_URI=tracking, MLFLOW_REGISTRY_URI=tracking,
                          PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"),  # its uvicorn
            stdout=(work / "mlflow-serve.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        servers["mlflow models serve"] = (f"http://127.0.0.1:{port}", mlflow)
        for name, (url, proc) in servers.items():
            ready = wait_ready(url, proc, started[name], 300, name)
            print(f"{name:<20} first answer after {ready:5.1f} s ({url})")
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for c in levels:
            for name, (url, _) in servers.items():
                results[(name, c)] = r = asyncio.run(load(url, c, args.seconds))
                print(f"{name:<20} c={c:<3} {r['rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                      f"p99 {r['p99_ms']:7.2f} ms  failures {r['failures']}", flush=True)  # fmt: skip
        print()
        for c in levels:
            ours, theirs = results[("retraind serve", c)], results[("mlflow models serve", c)]
            print(f"c={c:<3} retraind / mlflow: throughput {ours['rps'] / theirs['rps']:.2f}x, "
                  f"p99 {ours['p99_ms'] / theirs['p99_ms']:.2f}x")  # fmt: skip
        one = results.get(("retraind serve", 1))
        if one is not None:
            print(f"retraind serve p99 at concurrency 1: {one['p99_ms']:.2f} ms (target <= 10 ms)")
        return 0
    finally:
        for _, proc in servers.values():
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
