"""`retraind init DIR` through the command line as typed: a pipeline repository of the user's own,
outside the checkout, that `retraind run` trains and registers from, and that the daemon retrains
only train and register for when params.toml changes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pygit2
import pytest

from daemon.commands.pipeline_template import pipeline_files
from daemon.core.vocab import STAGE_CACHE_HIT, STAGE_SUCCESS, SUCCEEDED
from daemon.state.journal import Journal
from tests.conftest import ROOT
from tests.integration.daemon_harness import Daemon, commit_file, run_cli


def init(target: Path, **env: str) -> tuple[int, dict[str, Any], str]:
    """`retraind init TARGET` (stdout a pipe: one JSON line); its exit code, that line and the output."""
    code, lines, output = run_cli("init", str(target), env=env)
    return code, (lines[0] if len(lines) == 1 else {}), output


def scaffolded(tmp_path: Path) -> Path:
    repo = tmp_path / "classifier"
    code, done, output = init(repo)
    assert (code, done.get("event")) == (0, "repository_initialized"), output
    assert not repo.resolve().is_relative_to(ROOT)
    return repo


def sample_drop(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ROOT / "data/sample.csv", data / "sample.csv")
    return data


def test_init_writes_the_checkout_s_pipeline_as_one_commit(tmp_path: Path) -> None:
    repo = tmp_path / "new" / "classifier"  # parents are created
    code, done, output = init(repo)
    assert code == 0, output
    git = pygit2.Repository(str(repo))
    head = git[git.head.target].peel(pygit2.Commit)
    assert (done["commit"], head.parents) == (str(head.id), [])
    assert not git.status()  # everything written is committed
    expected = {*pipeline_files(ROOT), "README.md", ".gitignore"}
    assert set(done["files"]) == expected and done["template"] == "checkout"
    for rel in pipeline_files(ROOT):
        entry = head.tree[rel]
        assert git[entry.id].peel(pygit2.Blob).data == (ROOT / rel).read_bytes(), rel
        executable = os.stat(ROOT / rel).st_mode & 0o100 != 0
        assert entry.filemode == (0o100755 if executable else 0o100644), rel
    assert not any("node_modules" in f or "__pycache__" in f for f in done["files"])
    readme = (repo / "README.md").read_text()
    assert "docs/pipeline-contract.md" in readme and "{retraind_version}" not in readme
    assert [step.split()[1] for step in done["next"]] == ["run", "watch", "install-service"]
    assert f"--repo {repo}" in done["next"][0]


def test_init_commits_as_the_git_user_else_as_retraind_init(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    code, done, output = init(tmp_path / "anonymous", **env)
    assert code == 0, output
    assert done["author"].startswith("retraind init <") and done["author_from_git_config"] is False
    (home / ".gitconfig").write_text("[user]\n\tname = Ada Lovelace\n\temail = ada@example.org\n")
    code, done, output = init(tmp_path / "ada", **env)
    assert code == 0, output
    assert (done["author"], done["author_from_git_config"]) == ("Ada Lovelace <ada@example.org>", True)
    head = pygit2.Repository(str(tmp_path / "ada")).head.peel(pygit2.Commit)
    assert (head.author.name, head.author.email) == ("Ada Lovelace", "ada@example.org")


def test_init_refuses_a_non_empty_directory_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, refused, output = init(target)
    assert code == 78, output
    assert refused["error_kind"] == "ConfigError" and "not empty" in refused["error"], output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert (target / "notes.txt").read_text() == "mine\n"

    (tmp_path / "a-file").write_text("x")
    code, refused, output = init(tmp_path / "a-file")
    assert code == 78 and "not a directory" in refused["error"], output


def test_init_fills_an_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    code, _, output = init(target)
    assert code == 0, output
    assert (target / "Containerfile").is_file() and (target / ".git").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no staging directory left


@pytest.mark.podman
def test_run_on_an_initialized_repository_trains_and_registers(tmp_path: Path, podman_ready: None) -> None:
    repo, data = scaffolded(tmp_path), sample_drop(tmp_path)
    config = tmp_path / "empty.toml"  # only the flags count, whatever ~/.config/retraind holds
    config.touch()
    flags = ["--repo", str(repo), "--data-dir", str(data), "--state-dir", str(tmp_path / "state")]
    code, lines, output = run_cli("run", "--json", *flags, env={"RETRAIND_CONFIG": str(config)})
    assert code == 0, output[-6000:]
    finished = next(e for e in lines if e.get("event") == "run_finished")
    stages = [e["stage"] for e in lines if e.get("event") == "stage_finished"]
    assert stages == ["build", "validate", "preprocess", "train", "register"]
    assert "cached_stages" not in finished
    assert (finished["model_version"], finished["champion"]) == ("1", True), finished
    assert 0.4 < finished["f1_score_weighted"] <= 1.0, finished
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'state' / 'mlflow.db'}")
    version = client.get_model_version("nlp-sentiment-classifier", "1")
    assert version.run_id == finished["mlflow_run_id"]
    tags = client.get_run(finished["mlflow_run_id"]).data.tags
    assert tags["retraind.git.commit"] == str(pygit2.Repository(str(repo)).head.target)  # init's commit


@pytest.mark.podman
def test_a_params_change_in_an_initialized_repository_retrains_only_train_and_register(
    tmp_path: Path, podman_ready: None
) -> None:
    repo, data = scaffolded(tmp_path), sample_drop(tmp_path)
    daemon = Daemon(repo, data, tmp_path / "state", tmp_path).start()
    try:
        (first,) = daemon.wait_idle(runs=1)
        assert first.status == SUCCEEDED, first
        params = (repo / "params.toml").read_text()
        assert "C = 1.0" in params
        commit_file(repo, "params.toml", params.replace("C = 1.0", "C = 0.5"), "C 0.5")
        runs = daemon.wait_idle(runs=2)
    finally:
        daemon.stop()
    assert len(runs) == 2 and runs[1].status == SUCCEEDED, runs
    journal = Journal.open(tmp_path / "state" / "journal.db")
    try:
        outcomes = {s.stage: s.outcome for s in journal.stages(runs[1].run_id)}
    finally:
        journal.close()
    assert outcomes == {
        "build": STAGE_CACHE_HIT,
        "validate": STAGE_CACHE_HIT,
        "preprocess": STAGE_CACHE_HIT,
        "train": STAGE_SUCCESS,
        "register": STAGE_SUCCESS,
    }, outcomes
    assert runs[1].model_version == "2" and runs[1].image_id == first.image_id, runs


def test_init_inside_another_work_tree_makes_a_repository_of_its_own_and_says_so(tmp_path: Path) -> None:
    pygit2.init_repository(str(tmp_path / "outer"))
    code, done, output = init(tmp_path / "outer" / "sub" / "classifier")
    assert code == 0, output
    assert Path(done["inside_work_tree"]) == tmp_path / "outer"
    inner = pygit2.Repository(str(tmp_path / "outer" / "sub" / "classifier"))
    assert Path(inner.workdir) == tmp_path / "outer" / "sub" / "classifier"
    assert str(inner.head.target) == done["commit"]
