"""Determinism for real: the stage cache, identical retraining, `retraind reproduce`, the promotion gate.

One project (a committed copy of this repository, the sample data, an embedded MLflow store) goes
through the acceptance story in order: a run, a no-change run, a forced rerun, a reproduction, a
parameter commit that trains a worse model, promote and rollback, and a changed data file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import RETRAIND
from tests.integration.test_daemon import HEADER, ROWS

MODEL = "nlp-sentiment-classifier"
pytestmark = pytest.mark.podman


@dataclass
class Project:
    repo: Path
    data: Path
    state: Path

    @property
    def flags(self) -> tuple[str, ...]:
        return ("--repo", str(self.repo), "--data-dir", str(self.data), "--state-dir", str(self.state))

    @property
    def client(self) -> Any:
        return MlflowClient(tracking_uri=f"sqlite:///{self.state / 'mlflow.db'}")

    def retraind(self, *argv: str, **settings: str) -> subprocess.CompletedProcess[str]:
        """A separate process each time, as a person or a CI job runs it; JSON lines on stdout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
        env.update({f"RETRAIND_{k.upper()}": v for k, v in settings.items()})
        command = [RETRAIND, argv[0], "--json", *self.flags, *argv[1:]]
        return subprocess.run(command, capture_output=True, text=True, check=False, env=env, timeout=900)

    def run(self, *argv: str, **settings: str) -> dict[str, Any]:
        """`retraind run`; its run_finished line."""
        result = self.retraind("run", *argv, **settings)
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        finished = [line for line in lines if line.get("event") == "run_finished"]
        assert result.returncode == 0 and finished, result.stdout[-3000:] + result.stderr[-3000:]
        return finished[-1]

    def mlflow_run(self, retraind_run_id: str) -> Any:
        experiment = self.client.get_experiment_by_name("NLP Text Classification")
        query = f"tags.`retraind.run_id` = '{retraind_run_id}'"
        (found,) = self.client.search_runs([experiment.experiment_id], filter_string=query)
        return found

    def mlflow_run_by_id(self, mlflow_run_id: str) -> Any:
        return self.client.get_run(mlflow_run_id)

    def champion(self) -> str:
        return str(self.client.get_model_version_by_alias(MODEL, "champion").version)

    def commit(self, path: str, text: str, message: str) -> None:
        (self.repo / path).write_text(text)
        repo = pygit2.Repository(str(self.repo))
        repo.index.add(path)
        repo.index.write()
        sig = pygit2.Signature("retraind tests", "tests@localhost")
        repo.create_commit("HEAD", sig, sig, message, repo.index.write_tree(), [repo.head.target])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, podman_ready: None) -> Iterator[Project]:
    tmp = tmp_path_factory.mktemp("reproduce")
    data = tmp / "data"
    data.mkdir()
    (data / "sample.csv").write_bytes((ROOT / "data/sample.csv").read_bytes())
    yield Project(committed_copy(tmp / "repo"), data, tmp / "state")


@pytest.fixture(scope="module")
def first(project: Project) -> dict[str, Any]:
    finished = project.run()
    assert finished["outcome"] == "success" and finished["model_version"] == "1"
    for private in ("", "runs", "journal.db", "mlflow.db", "objects"):  # no other user reads state
        mode = (project.state / private).stat().st_mode
        assert mode & 0o077 == 0, f"{project.state / private} is {oct(mode)}"
    return finished


def identity(run: Any) -> tuple[str, str, dict[str, float]]:
    tags = run.data.tags
    return tags["retraind.model.sha256"], tags["retraind.predictions.sha256"], dict(run.data.metrics)


def test_a_second_run_with_nothing_changed_trains_nothing(project: Project, first: dict[str, Any]) -> None:
    again = project.run()
    assert again["outcome"] == "up_to_date"
    assert again["summary"] == f"up to date: run {first['run_id']}, model v1"
    assert again["cached_stages"] == ["build", "validate", "preprocess", "train", "register"]
    assert len(project.client.search_model_versions(f"name = '{MODEL}'")) == 1
    assert not (project.state / "runs" / again["run_id"] / "train").exists()  # no container wrote there


def test_two_trainings_in_separate_processes_and_containers_are_identical(
    project: Project, first: dict[str, Any]
) -> None:
    forced = project.run("--force")
    assert forced["outcome"] == "success" and not forced.get("cached_stages")
    one, two = project.mlflow_run(first["run_id"]), project.mlflow_run(forced["run_id"])
    assert one.info.run_id != two.info.run_id
    assert identity(one) == identity(two)
    assert len(identity(one)[0]) == 64 and identity(one)[2]["f1_score_weighted"] > 0.5
    # The same model over again (the same predictions on the same data) never replaces the champion.
    assert forced["model_version"] == "2" and forced["champion"] is False and project.champion() == "1"
    reason = project.client.get_model_version(MODEL, "2").tags["retraind.promotion.reason"]
    assert reason.startswith("the same model as champion v1: identical predictions (sha256 "), reason


def test_reproduce_rebuilds_a_registered_run_identically(project: Project, first: dict[str, Any]) -> None:
    result = project.retraind("reproduce", first["run_id"])
    verdict = json.loads(result.stdout.splitlines()[-1])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert verdict["identical"] is True and verdict["differences"] == []


def test_a_parameter_commit_trains_a_worse_model_that_is_not_promoted_and_the_old_run_still_reproduces(
    project: Project, first: dict[str, Any]
) -> None:
    project.commit("params.toml", "[train]\nseed = 42\ntest_size = 0.2\nC = 0.01\n", "weaker regularisation")
    worse = project.run()
    assert worse["cached_stages"] == ["build", "validate", "preprocess"]  # only train and register ran
    assert worse["model_version"] == "3" and worse["champion"] is False
    assert project.champion() == "1"
    version = project.client.get_model_version(MODEL, "3")
    assert version.tags["retraind.promotion.reason"].startswith("weighted F1 0.")
    assert str(project.client.get_model_version_by_alias(MODEL, "challenger").version) == "3"
    assert (
        identity(project.mlflow_run(worse["run_id"]))[0] != identity(project.mlflow_run(first["run_id"]))[0]
    )

    result = project.retraind("reproduce", first["run_id"])  # params.toml now says C = 0.01
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1])["identical"] is True


def test_promote_and_rollback_move_the_champion_and_are_in_the_history(project: Project) -> None:
    promoted = project.retraind("promote", "3", "--reason", "the smaller C generalises better on new data")
    assert promoted.returncode == 0, promoted.stderr
    assert project.champion() == "3"
    rolled = project.retraind("rollback", "--reason", "v3 misclassifies sarcasm")
    assert rolled.returncode == 0, rolled.stderr
    assert project.champion() == "1"  # v2, the same model as v1, was never champion
    models = json.loads(project.retraind("models").stdout)
    history = [(h["action"], h["version"], h["previous"], h["reason"]) for h in models["history"]]
    assert history[:2] == [
        ("rollback", "1", "3", "v3 misclassifies sarcasm"),
        ("promote", "3", "1", "the smaller C generalises better on new data"),
    ]
    assert [h["action"] for h in models["history"]][2:] == ["gate"]
    assert all("@" in h["by"] for h in models["history"][:2])
    stages = {v["version"]: v["current_stage"] for v in models["versions"]}
    assert stages["1"] == "Production" and stages["3"] == "Archived"


def test_reproduce_uses_the_run_snapshot_after_the_data_directory_changed(
    project: Project, first: dict[str, Any]
) -> None:
    # The same records, one more, every record ending in "\n" (the sample mixes CRLF and LF)
    (project.data / "sample.csv").write_bytes(
        HEADER + b"".join(ROWS) + b"positive,1.0,one more row arrived\n"
    )
    result = project.retraind("reproduce", first["run_id"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdict = json.loads(result.stdout.splitlines()[-1])
    assert verdict["identical"] is True and "data from the run's snapshot" in verdict["notes"]


def test_retention_keeps_the_newest_runs_and_the_registry_s_and_the_champion_still_reproduces(
    project: Project, first: dict[str, Any]
) -> None:
    """30 runs in all (4 before, a data change, 25 with nothing changed) under keep_runs = 3."""
    # The appended row: a new model version. --force: this run (challenger, so kept) then holds every
    # stage's cache entry; the build's would otherwise stay with v2's run, which no alias keeps any
    # more (v2 is the same model as v1), and the next runs would rebuild once that run is collected.
    changed = project.run("--force", keep_runs="3")
    assert changed["outcome"] == "success"
    for _ in range(25):
        assert project.run(keep_runs="3")["outcome"] == "up_to_date"
    runs = sorted(p.name for p in (project.state / "runs").iterdir())
    aliased = {
        project.client.get_model_version_by_alias(MODEL, alias).run_id for alias in ("champion", "challenger")
    }
    pinned = {project.mlflow_run_by_id(r).data.tags["retraind.run_id"] for r in aliased}
    assert len(runs) == 3 + len(pinned - set(runs[-3:])), runs
    unaliased = project.mlflow_run_by_id(project.client.get_model_version(MODEL, "2").run_id)
    assert pinned <= set(runs) and unaliased.data.tags["retraind.run_id"] not in runs  # v2 holds no alias
    # No stage-cache entry points at a collected run, and every kept run's objects are stored.
    import sqlite3

    with sqlite3.connect(project.state / "journal.db") as db:
        cached = {row[0] for row in db.execute("SELECT run_id FROM stage_cache")}
    assert cached <= set(runs), cached - set(runs)
    for run_id in runs:
        for f in json.loads((project.state / "runs" / run_id / "manifest.json").read_text())["files"]:
            sha = f["sha256"]
            assert (project.state / "objects" / sha[:2] / sha[2:]).stat().st_size == f["size"]
    dry = project.retraind("gc", "--dry-run", keep_runs="3")
    assert dry.returncode == 0 and json.loads(dry.stdout.splitlines()[-1])["runs_removed"] == []
    champion_run = project.mlflow_run_by_id(
        project.client.get_model_version_by_alias(MODEL, "champion").run_id
    ).data.tags["retraind.run_id"]
    result = project.retraind("reproduce", champion_run)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1])["identical"] is True


def test_reproduce_refuses_a_run_whose_snapshot_is_gone_and_whose_data_changed_naming_the_file(
    project: Project, first: dict[str, Any]
) -> None:
    """Without the run's objects (here the whole store is removed, as a clean-up by hand would),
    reproduce falls back to the data directory, which moved on since the run."""
    shutil.rmtree(project.state / "objects")
    result = project.retraind("reproduce", first["run_id"])
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    refused = json.loads(result.stdout.splitlines()[-1])
    assert refused["event"] == "run_refused" and "changed: sample.csv" in refused["error"]
