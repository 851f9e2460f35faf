"""The report of every registered version, after two real `retraind run`s as typed: its figures are
the MLflow run's, recomputed from the run's own artifacts, and its page shows them. A report that
cannot be made costs the version nothing."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from daemon.adapters.registry import REASON_TAG
from daemon.adapters.tracking import MlflowTracker
from daemon.core.records import REPORT_ARTIFACT, REPORT_FIGURES
from tests.conftest import ROOT
from tests.htmlpage import read_page
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import run_cli
from tests.integration.test_daemon import HEADER, ROWS
from tests.integration.test_tracking import record, trained  # noqa: F401  (trained is a fixture)

MODEL = "report-sentiment"
CLOSE = 1e-9


def test_a_report_that_cannot_be_made_leaves_the_version_registered(
    trained: Path,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    broken = replace(record(trained, "r1"), report={"metrics": {}})  # not what register computes
    with structlog.testing.capture_logs() as logs:
        reg = MlflowTracker(uri, tmp_path / "artifacts").record(broken, MODEL)
    assert (reg.model_version, reg.champion) == ("1", True)
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert (warning["event"], warning["version"]) == ("report_failed", "1")
    assert "UndefinedError" in warning["error"]
    client = MlflowClient(uri, registry_uri=uri)
    assert client.get_run(reg.run_id).info.status == "FINISHED"
    assert "report" not in {a.path for a in client.list_artifacts(reg.run_id)}


def run(repo: Path, data: Path, state: Path) -> None:
    flags = ["--repo", str(repo), "--data-dir", str(data), "--state-dir", str(state), "--model-name", MODEL]
    code, lines, output = run_cli("run", "--json", *flags)
    assert code == 0, output[-6000:]
    assert [e for e in lines if e.get("event") == "report_failed"] == []


def artifact(client: Any, run_id: str, path: str, dest: Path) -> Path:
    return Path(client.download_artifacts(run_id, path, str(dest)))


def check_figures(client: Any, run_id: str, figures: dict[str, Any], dest: Path) -> None:
    """Every figure against the MLflow run: its metrics, params, tags and artifacts."""
    data = client.get_run(run_id).data
    metrics, params = data.metrics, data.params
    assert figures["metrics"].keys() == metrics.keys()
    assert all(abs(figures["metrics"][k] - v) <= CLOSE for k, v in metrics.items())
    recomputed = figures["recomputed"]
    assert recomputed["agrees"] is True
    for name in ("f1_score_weighted", "precision_weighted", "recall_weighted", "accuracy"):
        assert abs(recomputed[name] - metrics[name]) <= CLOSE, name

    per_class, n = figures["per_class"], int(params["n_test"])
    assert [r["label"] for r in per_class] == figures["labels"] == params["labels"].split(",")
    assert sum(r["support"] for r in per_class) == n == figures["test_rows"]
    predictions = artifact(client, run_id, "test_predictions.jsonl", dest)
    assert len(predictions.read_text(encoding="utf-8").split("\n")) - 1 == n
    for r in per_class:  # each class's F1 is the run's f1_<label>
        assert abs(r["f1"] - metrics[f"f1_{r['label']}"]) <= CLOSE
    for name, key in (("precision_weighted", "precision"), ("recall_weighted", "recall")):
        assert abs(sum(r[key] * r["support"] for r in per_class) / n - metrics[name]) <= CLOSE
    matrix = figures["confusion_matrix"]
    assert [sum(row) for row in matrix] == [r["support"] for r in per_class]  # rows: the true label
    assert abs(sum(matrix[i][i] for i in range(len(matrix))) / n - metrics["accuracy"]) <= CLOSE

    checked = json.loads(artifact(client, run_id, "validation/data-check.json", dest).read_text())
    assert (
        figures["data"]["rows"] == checked["rows"]
        and figures["data"]["label_counts"] == checked["label_counts"]
    )
    assert figures["warnings"] == [w["message"] for w in checked["warnings"]]
    assert figures["provenance"]["params"] == params
    assert figures["provenance"]["tags"].items() <= data.tags.items()


def check_page(client: Any, run_id: str, figures: dict[str, Any], page_path: Path, dest: Path) -> None:
    page = read_page(page_path.read_text(encoding="utf-8"))
    [image] = page.images()
    png = artifact(client, run_id, "confusion_matrix.png", dest).read_bytes()
    assert image == "data:image/png;base64," + base64.b64encode(png).decode()
    rows = page.table_with("precision")[1:]
    assert rows[:-1] == [
        [r["label"], *(f"{r[k]:.4f}" for k in ("precision", "recall", "f1")), f"{r['support']:,}"]
        for r in figures["per_class"]
    ]
    assert rows[-1][3] == f"{figures['metrics']['f1_score_weighted']:.4f}"
    against = page.table_with("this version")
    comparison = figures["comparison"]
    assert against[1][1] == f"{comparison['candidate_f1']:.4f}"
    if comparison["champion_version"] is not None:
        assert against[0][2] == f"champion v{comparison['champion_version']}"
        assert against[1][2] == f"{comparison['champion_f1']:.4f}"


@pytest.mark.podman
@pytest.mark.slow
def test_every_registered_version_has_a_report_with_the_run_s_figures(
    tmp_path: Path, podman_ready: None
) -> None:
    from mlflow.tracking import MlflowClient

    repo, data, state = committed_copy(tmp_path / "repo"), tmp_path / "data", tmp_path / "state"
    data.mkdir()
    (data / "sample.csv").write_bytes(HEADER + b"".join(ROWS[::2]))  # every class in both halves
    run(repo, data, state)
    (data / "sample.csv").write_bytes((ROOT / "data/sample.csv").read_bytes())  # more data: v2
    run(repo, data, state)

    uri = f"sqlite:///{state / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    versions = sorted(client.search_model_versions(f"name = '{MODEL}'"), key=lambda mv: int(mv.version))
    assert [str(mv.version) for mv in versions] == ["1", "2"]
    champion = str(client.get_registered_model(MODEL).aliases["champion"])
    reports = []
    for mv in versions:
        dest = tmp_path / f"v{mv.version}"
        names = {a.path for a in client.list_artifacts(mv.run_id, "report")}
        assert names == {REPORT_ARTIFACT, REPORT_FIGURES}
        figures = json.loads(artifact(client, mv.run_id, REPORT_FIGURES, dest).read_text(encoding="utf-8"))
        assert figures["version"] == {
            "model_name": MODEL,
            "version": str(mv.version),
            "champion": str(mv.version) == "1" or champion == "2",  # v1: the first, crowned
            "mlflow_run_id": mv.run_id,
            "experiment_id": client.get_run(mv.run_id).info.experiment_id,
        }
        assert figures["run"]["subject"] == "copy"  # committed_copy's one commit
        check_figures(client, mv.run_id, figures, dest)
        check_page(client, mv.run_id, figures, artifact(client, mv.run_id, REPORT_ARTIFACT, dest), dest)
        reports.append(figures)

    first, second = (r["comparison"] for r in reports)
    assert (first["champion_version"], first["champion_f1"], first["reason"]) == (
        None,
        None,
        "no champion yet",
    )
    assert second["champion_version"] == "1"
    assert second["champion_f1"] == reports[0]["metrics"]["f1_score_weighted"]
    assert abs(second["delta"] - (second["candidate_f1"] - second["champion_f1"])) <= CLOSE
    assert second["promoted"] is (champion == "2")
    assert second["reason"] == versions[1].tags[REASON_TAG]
    assert reports[1]["data"]["rows"] > reports[0]["data"]["rows"]  # the second drop, not the first
