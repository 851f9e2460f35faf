"""The service fixtures against the real things: MLflow server on PostgreSQL, an outage, Prometheus."""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from daemon.adapters.tracking import MlflowTracker
from daemon.core.errors import TrackingError
from daemon.core.records import RunRecord
from tests.integration.services import LOCALHOST, MlflowServer, Postgres, StartPrometheus, free_port, http_get

MODEL = "services-toy"


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-class text pipeline saved in MLflow format, as the train stage leaves it."""
    import mlflow.sklearn
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["good film", "great fun", "loved it", "bad film", "awful plot", "hated it"]
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, [1, 1, 1, 0, 0, 0])
    path = tmp_path_factory.mktemp("toy") / "model"
    mlflow.sklearn.save_model(
        model, str(path), serialization_format="pickle", pip_requirements=["scikit-learn"]
    )
    return path


def run_record(tmp: Path, model_dir: Path | None, name: str) -> RunRecord:
    report = tmp / "report"
    report.mkdir(exist_ok=True)
    (report / "metrics.json").write_text('{"f1_score_weighted": 0.9}\n')
    return RunRecord(
        "services-itest",
        name,
        "FINISHED",
        {"seed": "42"},
        {"f1_score_weighted": 0.9},
        {"retraind.git.commit": "c" * 40},
        {"report": report},
        model_dir,
    )


def test_tracker_records_run_in_postgres(
    mlflow_server: MlflowServer, postgres: Postgres, toy_model: Path, tmp_path: Path
) -> None:
    registration = MlflowTracker(mlflow_server.url).record(run_record(tmp_path, toy_model, "pg-run"), MODEL)

    with contextlib.closing(postgres.connect("mlflow")) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, status FROM runs WHERE run_uuid = %s", (registration.run_id,))
        assert cur.fetchall() == [("pg-run", "FINISHED")]
        cur.execute("SELECT value FROM metrics WHERE run_uuid = %s AND key = 'f1_score_weighted'",
                    (registration.run_id,))  # fmt: skip
        assert cur.fetchall() == [(0.9,)]
        cur.execute(
            "SELECT mv.version FROM model_versions mv JOIN registered_model_aliases a"
            " ON a.name = mv.name AND a.version = mv.version WHERE a.alias = 'champion' AND mv.name = %s",
            (MODEL,),
        )
        assert cur.fetchall() == [(int(registration.model_version or 0),)]
    # Artifacts went through the server's proxy into its own artifacts directory.
    stored = {p.name for p in mlflow_server.artifacts.rglob("*") if p.is_file()}
    assert {"metrics.json", "MLmodel", "model.pkl"} <= stored


def test_outage_fails_requests_and_restart_keeps_the_data(
    mlflow_server: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once, not after backoff
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    tracker = MlflowTracker(mlflow_server.url)
    before = tracker.record(run_record(tmp_path, None, "before-outage"), MODEL)

    with mlflow_server.stopped():
        with pytest.raises(urllib.error.URLError):
            http_get(f"{mlflow_server.url}/health")
        with pytest.raises(TrackingError):
            tracker.record(run_record(tmp_path, None, "during-outage"), MODEL)

    after = tracker.record(run_record(tmp_path, None, "after-outage"), MODEL)
    client = MlflowClient(mlflow_server.url)
    assert client.get_run(before.run_id).info.run_name == "before-outage"
    assert client.get_run(after.run_id).info.status == "FINISHED"


def test_server_answers_its_own_host_names_only(mlflow_server: MlflowServer) -> None:
    """DNS rebinding guard (--allowed-hosts); /health is exempt, so ask the REST API."""
    url = f"{mlflow_server.url}/api/2.0/mlflow/experiments/search?max_results=1"

    def status(host: str) -> int:
        request = urllib.request.Request(url, headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return e.code

    own = [f"localhost:{mlflow_server.port}", f"{LOCALHOST}:{mlflow_server.port}"]
    assert [status(h) for h in [*own, "evil.example"]] == [200, 200, 403]


def test_prometheus_scrapes_a_live_exporter(prometheus: StartPrometheus) -> None:
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    events = Counter("retraind_itest_events", "Events seen by the test", ["kind"], registry=registry)
    events.labels(kind="data").inc(3)
    port = free_port()
    server, thread = start_http_server(port, addr=LOCALHOST, registry=registry)
    try:
        prom = prometheus([{"job_name": "itest", "static_configs": [{"targets": [f"{LOCALHOST}:{port}"]}]}])
        found = prom.wait_for('retraind_itest_events_total{kind="data"}', timeout=30)
        assert [(s["metric"]["job"], float(s["value"][1])) for s in found] == [("itest", 3.0)]
        assert [s["value"][1] for s in prom.query('up{job="itest"}')] == ["1"]
    finally:
        server.shutdown()
        thread.join(5)
