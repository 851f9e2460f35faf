"""`retraind run` end to end: real git, real rootless podman, the real image, embedded MLflow."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path

import pandas as pd
import pytest

from daemon.adapters.gitinfo import Pygit2Reader
from daemon.adapters.manifest import build_manifest
from daemon.adapters.podman import PodmanCli
from daemon.core.errors import EXIT_GATE
from daemon.core.jobs import Mount
from daemon.core.stages import RunContext, StageResult
from handlers.base import container_job
from tests.conftest import IN_CI, ROOT
from tests.integration.conftest import RunPipeline, committed_copy, make_settings
from tests.integration.daemon_harness import commit_file

PARAMS = {
    "seed",
    "test_size",
    "C",
    "solver",
    "multiclass",
    "labels",
    "n_train",
    "n_test",
    "n_features",
    "max_empty_share",
}
METRICS = {
    "precision_weighted",
    "recall_weighted",
    "f1_score_weighted",
    "precision_macro",
    "recall_macro",
    "f1_score_macro",
    "accuracy",
    "f1_negative",
    "f1_neutral",
    "f1_positive",
}
TAGS = {
    "retraind.git.commit",
    "retraind.git.branch",
    "retraind.git.dirty",
    "retraind.data.sha256",
    "retraind.image.id",
    "retraind.sha256.containerfile",
    "retraind.sha256.lock_python",
    "retraind.sha256.lock_node",
    "retraind.version.python",
    "retraind.version.node",
    "retraind.version.scikit-learn",
    "retraind.trigger",
    "mlflow.source.git.commit",
}
ARTIFACTS = {
    "model",
    "metrics.json",
    "params.json",
    "confusion_matrix.png",
    "classification_report.txt",
    "test_predictions.jsonl",
    "validation",
}


def client(uri: str):  # type: ignore[no-untyped-def]
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri, uri)


def test_ci_runs_the_pipeline_rootless() -> None:
    if not IN_CI:
        pytest.skip("only CI promises an unprivileged user")
    assert os.geteuid() != 0
    rootless = subprocess.run(
        ["podman", "info", "--format={{.Host.Security.Rootless}}"], capture_output=True, text=True, check=True
    )
    assert rootless.stdout.strip() == "true"


def test_sample_run_trains_registers_and_serves_from_the_registry(
    tmp_path: Path, run_pipeline: RunPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    outcome, reporter = run_pipeline(settings)
    assert outcome.ok, outcome.error
    assert [e for e in reporter.events if e[0] == "finished"] == [
        ("finished", s) for s in ("build", "validate", "preprocess", "train", "register")
    ]
    reg = outcome.results["register"].outputs
    assert (reg["model_version"], reg["champion"]) == ("1", True)

    run = client(settings.tracking_uri).get_run(reg["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert (
        run.info.experiment_id
        == client(settings.tracking_uri).get_experiment_by_name("NLP Text Classification").experiment_id
    )
    assert set(run.data.params) >= PARAMS
    assert set(run.data.metrics) >= METRICS
    assert set(run.data.tags) >= TAGS
    assert run.data.tags["retraind.image.id"] == outcome.results["build"].outputs["image_id"]
    assert run.data.tags["retraind.git.commit"] == Pygit2Reader().read(ROOT).commit
    artifacts = {a.path for a in client(settings.tracking_uri).list_artifacts(run.info.run_id)}
    assert artifacts >= ARTIFACTS

    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/nlp-sentiment-classifier@champion")
    texts = pd.DataFrame({"text": ["great game!!", "I hate waiting", "meeting moved to 3pm", ""]})
    assert len(model.predict(texts)) == 4
    # The registered model, on the host, labels the raw test-split texts as the pipeline did.
    split = pd.read_json(
        settings.runs_dir / outcome.run_id / "train/artifacts/test_predictions.jsonl", lines=True
    )
    assert list(model.predict(split[["text"]])) == split["predicted"].tolist()
    assert outcome.results["preprocess"].outputs["parity"]["mismatches"] == 0


def test_a_broken_preprocessing_change_fails_the_gate_and_trains_nothing(
    tmp_path: Path, run_pipeline: RunPipeline
) -> None:
    repo = committed_copy(tmp_path / "repo")
    cleaner = repo / "scripts/textclean.js"
    source = cleaner.read_text()
    broken = source.replace("!STOP_WORDS.has(t)", "true")  # stop words no longer dropped
    assert broken != source
    commit_file(repo, "scripts/textclean.js", broken, "stop words kept")  # a run builds the commit
    settings = make_settings(tmp_path, repo=repo)
    outcome, reporter = run_pipeline(settings)
    assert outcome.exit_code == EXIT_GATE and outcome.failed_stage == "validate"
    assert ("started", "train") not in reporter.events
    reasons = " ".join(outcome.error.reasons)  # type: ignore[union-attr]
    assert "textclean.test.js" in reasons and "stop words" in reasons
    mlflow = client(settings.tracking_uri)
    assert mlflow.search_model_versions("name='nlp-sentiment-classifier'") == []
    (failed,) = mlflow.search_runs([mlflow.get_experiment_by_name(settings.experiment).experiment_id])
    assert failed.info.status == "FAILED" and failed.data.tags["retraind.failed_stage"] == "validate"


def test_data_without_the_sentiment_column_fails_the_gate_naming_it(
    tmp_path: Path, run_pipeline: RunPipeline
) -> None:
    data = tmp_path / "baddata"
    data.mkdir()
    (data / "drop.csv").write_text("label,text\npositive,so good\nnegative,so bad\n")
    outcome, _ = run_pipeline(make_settings(tmp_path, data_dir=data))
    assert outcome.exit_code == EXIT_GATE and outcome.failed_stage == "validate"
    assert any("'sentiment'" in r for r in outcome.error.reasons)  # type: ignore[union-attr]


def test_the_train_container_has_no_network(tmp_path: Path, run_pipeline: RunPipeline) -> None:
    """The job the train handler builds cannot reach a listener that the host network can."""
    settings = make_settings(tmp_path)
    image = PodmanCli().image_id(f"{settings.image}:latest")
    if image is None:  # the image comes from the pipeline's own build stage
        outcome, _ = run_pipeline(settings)
        image = outcome.results["build"].outputs["image_id"]
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept()[0].close(), daemon=True).start()
    ctx = RunContext(
        "nettest",
        tmp_path / "run",
        settings,
        Pygit2Reader().read(ROOT),
        build_manifest(settings.data_dir, "*.csv"),
        results={"build": StageResult("build", "", {"image_id": image})},
    )
    probe = (
        "python",
        "-c",
        "import os, socket; print(sorted(os.listdir('/sys/class/net')));"
        f"socket.create_connection(('127.0.0.1', {port}), 5)",
    )
    out = ctx.stage_dir("train")
    sealed = container_job(ctx, "train", probe, (Mount(out, "/out", writable=True),))
    result = PodmanCli().run(sealed, out / "log")
    assert result.returncode != 0 and "ConnectionRefusedError" in result.stderr
    assert result.stdout.strip() == "['lo']"  # no interface but its own loopback
    from dataclasses import replace

    control = PodmanCli().run(replace(sealed, name=sealed.name + "-control", network=True), out / "log")
    server.close()
    assert control.returncode == 0, control.stderr


def test_a_diverging_python_port_fails_the_gate_with_examples(
    tmp_path: Path, run_pipeline: RunPipeline
) -> None:
    repo = committed_copy(tmp_path / "repo")
    port = repo / "scripts/textclean.py"
    source = port.read_text()
    diverged = source.replace(
        'STOP_WORDS = frozenset({"a", "an", "the", "is", "in", "on", "at"})',
        'STOP_WORDS = frozenset({"a", "an", "the", "is", "in", "on"})',
    )
    assert diverged != source
    commit_file(repo, "scripts/textclean.py", diverged, "the port keeps 'at'")
    outcome, reporter = run_pipeline(make_settings(tmp_path, repo=repo))
    assert outcome.exit_code == EXIT_GATE and outcome.failed_stage == "preprocess"
    assert ("started", "train") not in reporter.events
    reasons = outcome.error.reasons  # type: ignore[union-attr]
    assert "Python port differs from Node" in reasons[0] and "node" in reasons[1] and "python" in reasons[1]


def test_a_symlink_leaving_the_data_directory_is_refused(tmp_path: Path, run_pipeline: RunPipeline) -> None:
    data = tmp_path / "drop"
    data.mkdir()
    (tmp_path / "elsewhere.csv").write_bytes((ROOT / "data/sample.csv").read_bytes())
    (data / "tweets.csv").symlink_to(tmp_path / "elsewhere.csv")
    outcome, reporter = run_pipeline(make_settings(tmp_path, data_dir=data))
    assert outcome.exit_code == EXIT_GATE and outcome.failed_stage == "validate"
    assert "outside the data directory" in outcome.error.reasons[0]  # type: ignore[union-attr]
    assert ("started", "preprocess") not in reporter.events
