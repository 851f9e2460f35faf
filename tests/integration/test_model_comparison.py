"""The reproduce model comparison on real models: train.py's MLflow model directory, through real MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.adapters.tracking import MlflowTracker
from daemon.core.modeldiff import compare_models
from daemon.core.modelfile import load_model
from daemon.core.records import RunRecord
from daemon.engine.reproduction import MlflowRunSource
from tests.integration.conftest import preprocess_sample, train_on_host


def train(work: Path, name: str, *flags: str) -> Path:
    return train_on_host(work, name, *flags)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed sample, preprocessed by Node; trained by train.py on the host (bare)."""
    work = tmp_path_factory.mktemp("models")
    preprocess_sample(work)
    return work


def test_the_recorded_model_downloaded_from_mlflow_compares_with_a_local_training(
    work: Path, tmp_path: Path
) -> None:
    recorded, same, weaker = train(work, "a"), train(work, "b"), train(work, "c", "--C", "0.5")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    metrics = json.loads((recorded / "artifacts/metrics.json").read_text())
    record = RunRecord("itest", "r1", "FINISHED", {}, metrics, {}, {}, recorded / "model")
    registration = MlflowTracker(uri, tmp_path / "artifacts").record(record, "test-comparison")

    downloaded = MlflowRunSource(uri).download_model(registration.run_id, tmp_path / "download")
    assert (downloaded / "model.pkl").is_file() and (downloaded / "code" / "textclean.py").is_file()
    model = load_model(downloaded)

    equal = compare_models(model, load_model(same / "model"))
    assert equal.within and equal.compared > 100, equal
    assert equal.largest_absolute is not None and equal.largest_absolute.absolute == 0.0

    other = compare_models(model, load_model(weaker / "model"))  # same vocabulary, other coefficients
    assert not other.within and other.problems == () and other.worst is not None
    assert other.worst.where.startswith("coef_ of class ") or other.worst.where.startswith("intercept_")
