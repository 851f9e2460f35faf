"""Composition root: the one place that builds the real adapters and wires a run together.

One-shot flow (`retraind run`):  git + data manifest -> build -> validate -> preprocess -> train
-> register, each stage a handler in handlers/registry.py, run by daemon.pipeline.run_stages.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime

from daemon.config import Settings
from daemon.errors import ConfigError
from daemon.gitinfo import Pygit2Reader
from daemon.manifest import build_manifest
from daemon.pipeline import PipelineOutcome, Reporter, run_stages
from daemon.podman import PodmanCli
from daemon.tracking import MlflowTracker
from handlers.base import Ports, RunContext, Stage
from handlers.registry import STAGES


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique: UTC time to the second plus 6 random hex digits."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dt%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def remove_run_containers(run_id: str) -> list[str]:
    """After an interruption: no container of this run may outlive it."""
    return PodmanCli().stop_labelled(f"io.retraind.run={run_id}")


def real_ports(settings: Settings) -> Ports:
    if shutil.which("podman") is None:
        raise ConfigError(
            "podman is not installed: sudo apt-get install podman runc uidmap "
            "(then bash tools/setup-podman.sh)"
        )
    return Ports(PodmanCli(), MlflowTracker(settings.tracking_uri, settings.state_dir / "artifacts"))


def prepare_run(settings: Settings, run_id: str) -> RunContext:
    """Pin what a run reads: the commit, the data manifest, a fresh run directory."""
    git = Pygit2Reader().read(settings.repo)
    manifest = build_manifest(settings.data_dir, settings.data_glob)
    run_dir = settings.runs_dir / run_id
    run_dir.mkdir(parents=True)
    return RunContext(run_id, run_dir, settings, git, manifest)


def run_once(
    settings: Settings,
    reporter: Reporter,
    ports: Ports | None = None,
    stages: Mapping[str, Stage] = STAGES,
    run_id: str | None = None,
) -> PipelineOutcome:
    """Run the whole pipeline once for the repository and data the settings name."""
    ctx = prepare_run(settings, run_id or new_run_id())
    return run_stages(ctx, list(stages.values()), ports or real_ports(settings), reporter)
