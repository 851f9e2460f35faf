"""Fixtures for the unit tests: a run context on a scratch repository, no podman, no MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.core.config import load_settings
from daemon.core.inputs import DataFile, GitInfo, Manifest
from daemon.core.stages import RunContext


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    for name in ("Containerfile", "requirements.lock", "scripts/package-lock.json"):
        (repo / name).write_text(name)
    settings = load_settings({"repo": repo, "data_dir": tmp_path / "data"}, environ={"HOME": str(tmp_path)})
    manifest = Manifest((DataFile("tweets.csv", 10, "f" * 64),))
    return RunContext("r1", tmp_path / "run", settings, GitInfo("c" * 40, "main", False, repo), manifest)
