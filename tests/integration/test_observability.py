"""Observability acceptance against the real services: a real Prometheus scraping a running daemon,
the dashboards' SQL on a real MLflow PostgreSQL database, and an MLflow outage that loses nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from collections import Counter

import pytest

from daemon.core.records import REPORT_ARTIFACT, REPORT_FIGURES
from daemon.engine.metrics import STAGES
from tests.conftest import ROOT
from tests.integration.conftest import make_settings
from tests.integration.daemon_harness import RETRAIND, Daemon, JsonLines, run_cli
from tests.integration.services import MlflowServer, Postgres, StartPrometheus, free_port
from tests.integration.test_dashboards import (
    expand_sql_macros,
    for_promtool,
    promql_expressions,
    sql_queries,
    variable_defaults,
)


def dashboard_promql(instance: str, serve: str) -> list[tuple[str, str]]:
    """Every dashboard PromQL expression as Grafana would send it for this daemon's instance and
    this retraind serve's. Week-over-week comparisons (offset 1w) are left out: a fresh Prometheus
    has no last week."""
    return [
        (where, for_promtool(expr.replace("$instance", instance).replace("$serve", serve)))
        for where, expr in promql_expressions()
        if "offset" not in expr
    ]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not exposed"
    return float(match.group(1))


def wait_backlog(daemon: Daemon, value: float, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := sample(scrape(daemon.metrics_port), "retraind_tracking_backlog")) != value:
        assert time.monotonic() < deadline, f"backlog {seen}, wanted {value}: {daemon.lines[-5:]}"
        time.sleep(0.5)


def test_prometheus_scrapes_the_daemon_during_a_run_and_every_dashboard_expression_has_data(
    daemon: Daemon, prometheus: StartPrometheus
) -> None:
    daemon.start()
    serve_port = free_port()
    scrape = {"job_name": "retraind", "scrape_interval": "1s",
              "static_configs": [{"targets": [f"127.0.0.1:{daemon.metrics_port}"]}]}  # fmt: skip
    scrape_serve = {"job_name": "retraind-serve", "scrape_interval": "1s",
                    "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}]}  # fmt: skip
    prom = prometheus([scrape, scrape_serve], rule_files=(ROOT / "prometheus/rules/retraind.rules.yml",))
    prom.wait_for('retraind_build_info{job="retraind"}', 30)
    shutil.copy(ROOT / "data/sample.csv", daemon.data / "drop.csv")
    daemon.wait_log(lambda e: e.get("event") == "stage_started" and e.get("stage") == "train", 180)
    prom.wait_for("retraind_queue_depth", 30)  # scraped while the pipeline runs
    daemon.wait_runs(1, 240)
    prom.wait_for('retraind_runs_total{outcome="succeeded"} > 0', 30)
    # a challenger (a retraining below the floor), then retraind serve on the champion the daemon's
    # run registered, with the challenger in shadow, answering a few requests
    flags = ["--repo", str(daemon.repo), "--data-dir", str(daemon.data), "--state-dir", str(daemon.state)]
    config = {"RETRAIND_CONFIG": str(daemon.home / "retraind.toml")}
    code, _, output = run_cli(
        "run", "--json", "--force", *flags, env={**config, "RETRAIND_PROMOTION_FLOOR": "0.99"}
    )
    assert code == 0, output
    serving = JsonLines()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
    env.update(config, RETRAIND_SERVE_SHADOW="true")
    serving.follow(
        [RETRAIND, "serve", "--json", "--state-dir", str(daemon.state), "--port", str(serve_port)], env
    )
    try:
        serving.wait_log(lambda e: e.get("event") == "serve_switched", 300)
        serving.wait_log(lambda e: e.get("event") == "serve_shadow_started", 120)
        for texts in (["good"], ["bad", "meh"], ["fine"]):
            body = json.dumps({"texts": texts}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{serve_port}/predict", body)
            with urllib.request.urlopen(request, timeout=30) as answer:
                assert answer.status == 200
        prom.wait_for('retraind_serve_requests_total{job="retraind-serve", code="200"} > 0', 30)
        prom.wait_for('retraind_serve_shadow_texts_total{job="retraind-serve"} > 0', 30)
        time.sleep(3)  # a few more scrapes, so rate() has two points after the run and the requests
        expressions = dashboard_promql(f"127.0.0.1:{daemon.metrics_port}", f"127.0.0.1:{serve_port}")
        assert sum("retraind_serve" in e for _, e in expressions) >= 6
        for title, expr in expressions:
            result = prom.query(expr)
            assert result, f"panel {title!r}: no data for {expr}"
            if "stage" in expr and "by" in expr and "stage" in expr.split("by", 1)[1]:
                stages = {r["metric"].get("stage") for r in result}
                assert set(STAGES) <= stages, f"panel {title!r}: stages {stages} for {expr}"
    finally:
        assert serving.proc is not None
        serving.proc.terminate()
        assert serving.proc.wait(60) == 0


@pytest.fixture(scope="module")
def filled_mlflow(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory, podman_ready: None
) -> str:
    """Three real pipeline runs on the PostgreSQL-backed server, then aliases and stages moved."""
    from mlflow.tracking import MlflowClient

    from daemon.app import run_once
    from tests.fakes import RecordingReporter

    tmp = tmp_path_factory.mktemp("filled")
    for seed in (1, 2, 3):
        settings = make_settings(tmp / f"s{seed}", tracking_uri=mlflow_server.url, seed=seed)
        assert run_once(settings, RecordingReporter()).ok
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    name = "nlp-sentiment-classifier"
    client.set_registered_model_alias(name, "challenger", "2")
    client.set_registered_model_alias(name, "champion", "3")  # moved from v1
    client.set_registered_model_alias(name, "previous", "3")  # a second alias on one version
    client.transition_model_version_stage(name, "3", "Production")
    client.transition_model_version_stage(name, "1", "Archived")
    return name


def test_dashboard_sql_on_a_real_mlflow_database(filled_mlflow: str, postgres: Postgres) -> None:
    queries = sql_queries()
    assert queries
    end = int(time.time()) + 60
    variables = variable_defaults() | {"model": filled_mlflow, "experiment": "NLP Text Classification"}
    with postgres.connect("mlflow") as conn, conn.cursor() as cur:
        for title, _format, raw in queries:
            cur.execute(expand_sql_macros(raw, from_s=end - 6 * 3600, to_s=end, variables=variables))
            columns = [d.name for d in cur.description]
            rows = cur.fetchall()
            assert rows, f"panel {title!r} returned nothing"
            if title == "Registered versions":  # the gate tagged every version with its reason
                reasons = [r[columns.index("Promotion gate")] for r in rows]
                assert len(reasons) == 3 and all(reasons), reasons
            if "time" in columns and "metric" in columns:  # a time series, one per version
                series = Counter((r[columns.index("time")], r[columns.index("metric")]) for r in rows)
                assert max(series.values()) == 1, f"panel {title!r}: duplicated points {series}"
                names = {r[columns.index("metric")] for r in rows}
                assert len(names) == 3, f"panel {title!r}: series {names}"


def test_an_mlflow_outage_loses_nothing_and_records_the_run_exactly_once(
    daemon: Daemon, mlflow_server: MlflowServer
) -> None:
    from mlflow.tracking import MlflowClient

    daemon.extra_env.update(
        RETRAIND_TRACKING_URI=mlflow_server.url,
        RETRAIND_EXPERIMENT="outage",
        RETRAIND_MODEL_NAME="outage-model",
    )
    with mlflow_server.stopped():
        daemon.start()
        shutil.copy(ROOT / "data/sample.csv", daemon.data / "drop.csv")
        (run,) = daemon.wait_runs(1, 300)
        assert run.status == "succeeded" and run.mlflow_run_id is None
        wait_backlog(daemon, 1, 10)
    wait_backlog(daemon, 0, 240)
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    experiment = client.get_experiment_by_name("outage")
    (found,) = client.search_runs([experiment.experiment_id], f"tags.`retraind.run_id` = '{run.run_id}'")
    assert found.info.status == "FINISHED"
    assert found.data.metrics["f1_score_weighted"] > 0.5 and "seed" in found.data.params
    assert {"model", "metrics.json"} <= {a.path for a in client.list_artifacts(found.info.run_id)}
    report = {a.path for a in client.list_artifacts(found.info.run_id, "report")}
    assert report == {REPORT_ARTIFACT, REPORT_FIGURES}  # the outbox kept the report's figures
    (version,) = client.search_model_versions("name = 'outage-model'")
    assert version.run_id == found.info.run_id
    assert daemon.runs()[0].mlflow_run_id == found.info.run_id
