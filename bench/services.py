"""Time the services the integration tests start: a private PostgreSQL cluster (initdb, then start),
an MLflow server on it until /health answers (first start runs the schema migrations, restart does
not), and Prometheus until its first scraped sample is queryable. Prints a table and writes
bench/results/services.json.

Usage: .venv/bin/python bench/services.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.services import (  # noqa: E402
    LOCALHOST,
    MlflowServer,
    PostgresCluster,
    PrometheusServer,
    free_port,
    pg_bindir,
)


def once(work: Path) -> dict[str, float]:
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed")
    figures: dict[str, float] = {}
    cluster = PostgresCluster(bindir)
    try:
        started = time.perf_counter()
        pg = cluster.start()
        figures["postgres_initdb_and_start_s"] = time.perf_counter() - started
        cluster.stop()
        started = time.perf_counter()
        cluster.start()
        figures["postgres_start_s"] = time.perf_counter() - started
        pg.create_database("mlflow")
        server = MlflowServer(pg.sqlalchemy_uri("mlflow"), work)
        try:
            figures["mlflow_first_health_s"] = server.start()
            server.stop()
            figures["mlflow_restart_health_s"] = server.start()
        finally:
            server.stop()
    finally:
        cluster.remove()

    registry = CollectorRegistry()
    Counter("bench_events", "events", registry=registry).inc()
    port = free_port()
    httpd, _ = start_http_server(port, addr=LOCALHOST, registry=registry)
    prom = PrometheusServer([{"job_name": "bench", "static_configs": [{"targets": [f"{LOCALHOST}:{port}"]}]}],
                            work)  # fmt: skip
    try:
        started = time.perf_counter()
        figures["prometheus_ready_s"] = prom.start()
        prom.wait_for("bench_events_total", timeout=60)
        figures["prometheus_first_sample_s"] = time.perf_counter() - started
    finally:
        prom.stop()
        httpd.shutdown()
    return figures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="retraind-bench-") as tmp:
            runs.append(once(Path(tmp)))
    summary = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    for key, value in summary.items():
        print(f"{key:32s} {value:6.2f} s  (runs: {', '.join(f'{r[key]:.2f}' for r in runs)})")
    out = ROOT / "bench/results/services.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"median": summary, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
