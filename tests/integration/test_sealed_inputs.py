"""Sealed inputs for real: a run reads one exported commit and one snapshot of the data, whatever the
worktree and the data directory do meanwhile; retention keeps what kept runs and the registry need."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pygit2
import pytest

from tests.conftest import ROOT
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import RETRAIND, Daemon, commit_file
from tests.integration.test_daemon import HEADER, ROWS, drop

pytestmark = pytest.mark.podman
SAMPLE = (ROOT / "data/sample.csv").read_bytes()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}


def _flags(tmp: Path) -> list[str]:
    return ["--repo", str(tmp / "repo"), "--data-dir", str(tmp / "data"), "--state-dir", str(tmp / "state")]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_file_growing_during_the_run_is_read_by_every_stage_as_the_manifest_names_it(
    tmp_path: Path, podman_ready: None
) -> None:
    committed_copy(tmp_path / "repo")
    data = tmp_path / "data"
    data.mkdir()
    (data / "sample.csv").write_bytes(SAMPLE)
    extra = b"".join(ROWS[:400])
    argv = [RETRAIND, "run", "--json", *_flags(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    assert proc.stdout is not None
    lines: list[dict[str, Any]] = []
    for line in proc.stdout:
        event = json.loads(line)  # every line is JSON
        lines.append(event)
        if event.get("event") == "stage_started" and event["stage"] in ("validate", "preprocess", "train"):
            with (data / "sample.csv").open("ab") as fh:  # the drop grows while each stage starts
                fh.write(extra)
    assert proc.wait(timeout=900) == 0, lines[-5:]
    finished = next(e for e in lines if e.get("event") == "run_finished")
    run_dir = tmp_path / "state" / "runs" / finished["run_id"]

    # What the manifest names is the first 3,000 rows, as they were when the run was admitted...
    (entry,) = _json(run_dir / "manifest.json")["files"]
    assert entry == {"name": "sample.csv", "size": len(SAMPLE), "sha256": hashlib.sha256(SAMPLE).hexdigest()}
    assert (run_dir / "data" / "sample.csv").read_bytes() == SAMPLE
    # ... and exactly that is what validate checked, preprocess cleaned and train fitted on,
    assert _json(run_dir / "validate" / "data-check.json")["rows"] == 3000
    summary = _json(run_dir / "preprocess" / "summary.json")
    assert summary["rows_in"] == 3000
    assert _json(run_dir / "train" / "artifacts" / "params.json")["n_rows"] == summary["rows_out"]
    # while the data directory kept growing.
    assert (data / "sample.csv").stat().st_size == len(SAMPLE) + 3 * len(extra)

    # The data directory changes again; the run still reproduces, from its own snapshot.
    (data / "sample.csv").write_bytes(HEADER + b"".join(ROWS[::2]))
    reproduced = subprocess.run(
        [RETRAIND, "reproduce", "--json", *_flags(tmp_path), finished["run_id"]],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=900,
        check=False,
    )
    assert reproduced.returncode == 0, reproduced.stdout[-3000:] + reproduced.stderr[-3000:]
    verdict = json.loads(reproduced.stdout.splitlines()[-1])
    assert verdict["identical"] is True and "data from the run's snapshot" in verdict["notes"]


def _context_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under root, by relative path (what a build context holds)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_the_daemon_builds_the_commit_not_the_worktree(tmp_path: Path, podman_ready: None) -> None:
    repo = committed_copy(tmp_path / "repo")
    (tmp_path / "data").mkdir()
    daemon = Daemon(repo, tmp_path / "data", tmp_path / "state", tmp_path).start()
    try:
        drop(tmp_path / "data", "sample.csv")
        (first,) = daemon.wait_idle(1)
        assert first.status == "succeeded", first
        # Uncommitted edits in the worktree: a broken trainer and a changed parameter...
        (repo / "scripts" / "train.py").write_text("raise SystemExit('uncommitted: never built')\n")
        (repo / "params.toml").write_text("[train]\nseed = 7\ntest_size = 0.2\nC = 3.0\n")
        # ... then a commit lands that changes another file the image copies, so the image is rebuilt.
        versions = (repo / "scripts" / "image_versions.py").read_text() + "# a committed comment\n"
        commit = commit_file(repo, "scripts/image_versions.py", versions, "a commit the daemon must build")
        runs = daemon.wait_idle(2)
        second = runs[-1]
        assert second.commit == commit and second.status == "succeeded", second  # train.py was the commit's
        assert second.image_id != first.image_id
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=10).read()
        (state_bytes,) = [
            float(line.split()[1])
            for line in scrape.decode().splitlines()
            if line.startswith("retraind_state_bytes ")
        ]
        assert state_bytes > 1e6  # two run directories, the objects, the journal and mlflow.db
    finally:
        daemon.stop()
    source = tmp_path / "state" / "runs" / second.run_id / "source"
    exported = tmp_path / "exported"
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit], capture_output=True, check=True
    )
    exported.mkdir()
    subprocess.run(["tar", "-x", "-C", str(exported)], input=archive.stdout, check=True)
    assert _context_hashes(source) == _context_hashes(exported)  # the build context is the commit
    assert "uncommitted" not in (source / "scripts" / "train.py").read_text()
    tags = _mlflow_tags(tmp_path / "state", second.run_id)
    assert tags["retraind.git.commit"] == commit and tags["retraind.git.dirty"] == "false"


def _mlflow_run(state: Path, run_id: str) -> Any:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("NLP Text Classification")
    (found,) = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`retraind.run_id` = '{run_id}'"
    )
    return found.data


def _mlflow_tags(state: Path, run_id: str) -> dict[str, str]:
    return dict(_mlflow_run(state, run_id).tags)


def _mlflow_params(state: Path, run_id: str) -> dict[str, str]:
    return dict(_mlflow_run(state, run_id).params)


def test_run_builds_head_and_run_worktree_builds_the_edits_tagged_dirty(
    tmp_path: Path, podman_ready: None
) -> None:
    repo = committed_copy(tmp_path / "repo")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sample.csv").write_bytes(SAMPLE)
    head = str(pygit2.Repository(str(repo)).head.target)
    (repo / "params.toml").write_text("[train]\nseed = 42\ntest_size = 0.2\nC = 0.01\n")  # not committed

    def run(*extra: str) -> dict[str, Any]:
        done = subprocess.run(
            [RETRAIND, "run", "--json", *_flags(tmp_path), *extra],
            capture_output=True, text=True, env=_env(), timeout=900, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return next(json.loads(x) for x in done.stdout.splitlines() if '"run_finished"' in x)

    committed = run()
    tags = _mlflow_tags(tmp_path / "state", committed["run_id"])
    assert tags["retraind.git.commit"] == head and tags["retraind.git.dirty"] == "false"
    assert _mlflow_params(tmp_path / "state", committed["run_id"])["C"] == "1.0"  # the committed params.toml
    edited = run("--worktree")
    tags = _mlflow_tags(tmp_path / "state", edited["run_id"])
    assert tags["retraind.git.dirty"] == "true"
    assert _mlflow_params(tmp_path / "state", edited["run_id"])["C"] == "0.01"
