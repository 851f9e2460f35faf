"""Fixtures for tests that drive real podman, git and MLflow (server-backed services: services.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pygit2
import pytest

from daemon.app import run_once
from daemon.core.config import Settings, load_settings
from daemon.core.outcome import PipelineOutcome
from tests.conftest import IN_CI, ROOT, require_tool
from tests.fakes import RecordingReporter
from tests.integration.daemon_harness import Daemon
from tests.integration.services import mlflow_server, postgres, prometheus  # noqa: F401  (fixtures)
from tests.receiver import Receiver

BASE_IMAGE = "localhost/retraind-base:bookworm"
COPY_IGNORE = shutil.ignore_patterns(
    ".venv",
    "node_modules",
    ".git",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "results",
)


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """An XDG_RUNTIME_DIR (0700) with a short path: sockets in it (systemd's user units name a few)
    must fit in a unix socket address, 108 bytes, which pytest's per-worker tmp_path can exceed."""
    path = Path(tempfile.mkdtemp(prefix="xdg-"))
    path.chmod(0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_ready() -> None:
    require_tool("podman")
    found = subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False)
    if found.returncode != 0:
        message = f"{BASE_IMAGE} missing: run bash tools/base-image.sh"
        pytest.fail(message) if IN_CI else pytest.skip(message)


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    data = tmp / "data"
    if "data_dir" not in overrides:
        data.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "data/sample.csv", data / "sample.csv")
    # The checkout as it is (a developer's uncommitted edits included); tests of commit export use
    # committed_copy repositories instead.
    values: dict[str, Any] = {"repo": ROOT, "data_dir": data, "state_dir": tmp / "state", "worktree": True}
    values.update(overrides)
    return load_settings(values, environ={"HOME": str(tmp)})


RunPipeline = Callable[[Settings], tuple[PipelineOutcome, RecordingReporter]]


@pytest.fixture
def run_pipeline(podman_ready: None) -> RunPipeline:
    def run(settings: Settings) -> tuple[PipelineOutcome, RecordingReporter]:
        reporter = RecordingReporter()
        return run_once(settings, reporter), reporter

    return run


def committed_copy(dest: Path) -> Path:
    """The project as a fresh git repository (one commit), to change without touching ROOT."""
    shutil.copytree(ROOT, dest, ignore=COPY_IGNORE)
    repo = pygit2.init_repository(str(dest))
    repo.index.add_all()
    repo.index.write()
    sig = pygit2.Signature("retraind tests", "tests@localhost")
    repo.create_commit("HEAD", sig, sig, "copy", repo.index.write_tree(), [])
    return dest


def preprocess_sample(dest: Path) -> Path:
    """data/sample.csv through the Node preprocessing on the host: processed.jsonl in dest."""
    require_tool("node")
    out = dest / "processed.jsonl"
    argv = ["node", str(ROOT / "scripts/preprocess.js"), "--output", str(out), str(ROOT / "data/sample.csv")]
    subprocess.run(argv, check=True, capture_output=True)
    return out


def train_on_host(work: Path, name: str, *flags: str) -> Path:
    """scripts/train.py on the host (bare) over work/processed.jsonl; its output directory work/name."""
    argv = [sys.executable, str(ROOT / "scripts/train.py"), "--input", str(work / "processed.jsonl")]
    subprocess.run([*argv, "--output", str(work / name), *flags], check=True, capture_output=True)
    return work / name


@pytest.fixture
def daemon(tmp_path: Path, podman_ready: None) -> Iterator[Daemon]:
    """A `retraind watch` of a fresh copy of the project and an empty data directory (not started)."""
    (tmp_path / "data").mkdir()
    d = Daemon(committed_copy(tmp_path / "repo"), tmp_path / "data", tmp_path / "state", tmp_path)
    yield d
    d.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP receiver on 127.0.0.1 (tests/receiver.py), released and stopped after the test."""
    r = Receiver()
    yield r
    r.hold.set()
    r.stop()


# A single-node Slurm cluster run by the test's user (tests/integration/slurm.py).
from tests.integration.slurm import slurm_cluster  # noqa: E402, F401  (fixture)
