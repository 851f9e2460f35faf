"""MlflowTracker against a real embedded MLflow store, with a model trained by the real train.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from daemon.adapters.tracking import MlflowTracker
from daemon.core.records import RunRecord
from tests.integration.conftest import preprocess_sample, train_on_host

MODEL = "test-sentiment"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed sample, preprocessed by Node and trained by train.py on the host (bare)."""
    work = tmp_path_factory.mktemp("trained")
    preprocess_sample(work)
    return train_on_host(work, "out")


def record(trained: Path, run_name: str) -> RunRecord:
    metrics = json.loads((trained / "artifacts/metrics.json").read_text())
    return RunRecord(
        "itest",
        run_name,
        "FINISHED",
        {"seed": "42"},
        metrics,
        {"retraind.git.commit": "c" * 40},
        {"": trained / "artifacts"},
        trained / "model",
    )


def test_record_registers_and_the_gate_makes_an_equal_or_better_version_champion(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = MlflowTracker(uri, tmp_path / "artifacts")
    first = tracker.record(record(trained, "r1"), MODEL)
    second = tracker.record(record(trained, "r2"), MODEL)
    assert (first.model_version, first.champion) == ("1", True)
    assert (second.model_version, second.champion) == ("2", True)  # equal F1, zero tolerance

    client = MlflowClient(uri, uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"seed": "42"}
    assert run.data.metrics["f1_score_weighted"] > 0.5
    assert run.data.tags["retraind.git.commit"] == "c" * 40
    names = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"model", "metrics.json", "confusion_matrix.png", "classification_report.txt"} <= names
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "2"
    assert client.get_model_version(MODEL, "1").current_stage == "Archived"
    assert str(tmp_path / "artifacts") in run.info.artifact_uri  # never ./mlruns in the cwd

    # From the host venv, by alias: N raw texts in, N labels out.
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    texts = ["I love this!", "worst day ever, so angry", "the meeting is at 5pm", "", "ok"]
    labels = list(model.predict(pd.DataFrame({"text": texts})))
    assert len(labels) == len(texts)
    assert set(labels) <= {"negative", "neutral", "positive"}


def test_model_serves_the_same_labels_as_the_test_split_predictions(trained: Path) -> None:
    import mlflow.pyfunc

    predictions = pd.read_json(trained / "artifacts/test_predictions.jsonl", lines=True)
    model = mlflow.pyfunc.load_model(str(trained / "model"))
    assert list(model.predict(predictions[["text"]])) == predictions["predicted"].tolist()
