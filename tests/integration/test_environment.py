"""The environment manifest of real runs: provenance/environment.json names what the image holds."""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import pytest

from daemon.core.environment import SHA256_TAG, content_sha256
from tests.integration.conftest import RunPipeline, committed_copy, make_settings

pytestmark = pytest.mark.podman
STAGES = {"build", "validate", "preprocess", "train", "register"}


def in_image(image_id: str, *argv: str) -> str:
    """What a command prints in a fresh container of the image (nothing pulled, nothing kept)."""
    done = subprocess.run(
        ["podman", "run", "--rm", "--pull=never", "--network=none", image_id, *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout.strip()


def logged_environment(uri: str, mlflow_run_id: str, tmp: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, uri)
    path = client.download_artifacts(mlflow_run_id, "provenance/environment.json", str(tmp))
    return json.loads(Path(path).read_text(encoding="utf-8")), dict(client.get_run(mlflow_run_id).data.tags)


def names(entries: list[dict[str, str]], key: str = "name") -> dict[str, str]:
    return {e[key]: e["version"] for e in entries}


def test_every_run_logs_what_the_image_holds_and_a_cached_build_keeps_it(
    tmp_path: Path, run_pipeline: RunPipeline
) -> None:
    repo = committed_copy(tmp_path / "repo")  # a snapshot: both runs build the same inputs
    settings = make_settings(tmp_path, repo=repo)
    outcome, _ = run_pipeline(settings)
    assert outcome.ok, outcome.error
    image_id = outcome.results["build"].outputs["image_id"]
    env, tags = logged_environment(
        settings.tracking_uri, outcome.results["register"].outputs["mlflow_run_id"], tmp_path / "first"
    )
    image = env["image"]
    sklearn = in_image(image_id, "python", "-c", "import sklearn; print(sklearn.__version__)")
    assert names(image["python_packages"])["scikit-learn"] == sklearn
    assert "v" + image["node"] == in_image(image_id, "node", "--version")
    assert {"python3", "nodejs"} <= set(names(image["debian"], "package"))
    assert "jest" in names(image["npm_packages"]) and "numpy" in names(image["python_packages"])
    assert env["image_id"] == image_id
    assert env["sha256"] == content_sha256(image) == tags[SHA256_TAG]
    (host,) = env["hosts"].values()  # today every stage runs here
    assert (host["kernel_release"], host["machine"]) == (platform.release(), platform.machine())
    assert set(env["stages"]) == STAGES and env["reused"] == {}

    # Another seed: build, validate and preprocess come from the stage cache, and so does the manifest.
    again, _ = run_pipeline(make_settings(tmp_path, repo=repo, seed=7))
    assert again.ok and again.results["build"].cached_from == outcome.run_id
    env2, tags2 = logged_environment(
        settings.tracking_uri, again.results["register"].outputs["mlflow_run_id"], tmp_path / "second"
    )
    assert env2["image"] == image and tags2[SHA256_TAG] == tags[SHA256_TAG]
    assert env2["stages"]["build"] == env["stages"]["build"]
    assert env2["reused"] == {"validate": outcome.run_id, "preprocess": outcome.run_id}


def test_a_run_the_gate_rejects_logs_its_environment_too(tmp_path: Path, run_pipeline: RunPipeline) -> None:
    data = tmp_path / "baddata"
    data.mkdir()
    (data / "drop.csv").write_text("label,text\npositive,so good\nnegative,so bad\n")
    settings = make_settings(tmp_path, data_dir=data)
    outcome, _ = run_pipeline(settings)
    assert outcome.failed_stage == "validate"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    assert experiment is not None
    (failed,) = client.search_runs([experiment.experiment_id])
    env, tags = logged_environment(settings.tracking_uri, failed.info.run_id, tmp_path / "failed")
    assert tags[SHA256_TAG] == env["sha256"] and set(env["stages"]) == {"build", "validate"}
    assert "jest" in names(env["image"]["npm_packages"])
