"""Benchmark the daemon's /metrics endpoint: scrape latency p50/p99 with 50 runs recorded, beside
the same server with a bare registry (prometheus_client's own cost) measured in the same run.

Usage: .venv/bin/python bench/metrics_scrape.py [--scrapes 500]
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, start_http_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.errors import GateRejectedError
from daemon.metrics import STAGES, Metrics
from daemon.pipeline import PipelineOutcome
from daemon.progress import MetricsReporter
from handlers.base import StageResult


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def record_runs(metrics: Metrics, n: int, seed: int = 42) -> None:
    """n runs through the same reporter the daemon uses: most succeed, some fail the gate."""
    rng = random.Random(seed)
    for i in range(n):
        reporter = MetricsReporter(metrics, rng.choice(["commit", "data", "schedule", "manual"]))
        metrics.event({"data"})
        if i % 7 == 3:
            error = GateRejectedError("validate", ["bad"], {"unknown_label"})
            reporter.stage_failed(f"r{i}", "validate", rng.uniform(5, 12), error)
            reporter.run_finished(PipelineOutcome(f"r{i}", {}, {}, 15.0, "validate", error))
            continue
        for stage in STAGES:
            reporter.stage_finished(f"r{i}", StageResult(stage, ""), rng.uniform(0.5, 30))
        train = StageResult("train", "", {"metrics": {"f1_score_weighted": rng.uniform(0.7, 0.74)}})
        reporter.run_finished(PipelineOutcome(f"r{i}", {"train": train}, {}, rng.uniform(15, 60)))


def scrape_latencies(port: int, scrapes: int) -> list[float]:
    url = f"http://127.0.0.1:{port}/metrics"
    out = []
    for _ in range(scrapes):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=5) as response:
            response.read()
        out.append(time.perf_counter() - started)
    return out


def summary(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100)
    return q[49] * 1000, q[98] * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scrapes", type=int, default=500)
    args = p.parse_args()
    bare = CollectorRegistry()
    Counter("bench_noop", "a single counter", registry=bare)
    daemon_registry = CollectorRegistry()
    record_runs(Metrics(daemon_registry), 50)
    results = {}
    for name, registry in (("bare registry (1 counter)", bare), ("retraind, 50 runs", daemon_registry)):
        port = free_port()
        start_http_server(port, "127.0.0.1", registry)
        scrape_latencies(port, 20)  # warm up
        latencies = scrape_latencies(port, args.scrapes)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
            size = len(r.read())
        results[name] = (*summary(latencies), size)
    print(f"{'endpoint':<28}{'p50 ms':>9}{'p99 ms':>9}{'bytes':>9}")
    for name, (p50, p99, size) in results.items():
        print(f"{name:<28}{p50:>9.2f}{p99:>9.2f}{size:>9}")
    (b50, b99, _), (d50, d99, _) = results.values()
    print(f"retraind / bare: p50 {d50 / b50:.2f}x, p99 {d99 / b99:.2f}x  ({args.scrapes} scrapes each)")


if __name__ == "__main__":
    main()
