"""The stage protocol: the run context a stage reads, the result it returns, the cache entry that
can stand in for it, and the ports (outside world) it is given. The engine runs stages through it;
the handlers implement it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from daemon.core.config import Settings
from daemon.core.inputs import GitInfo, Manifest
from daemon.core.jobs import BuildJob, CmdResult, ContainerJob
from daemon.core.params import TrainParams
from daemon.core.records import Delivery, Registration, RunRecord

# The stages' names, defined here once: the handlers take theirs from these, handlers/registry.py
# lists the stages in this order, and the metrics and `retraind reproduce` derive theirs.
BUILD, VALIDATE, PREPROCESS, TRAIN, REGISTER = "build", "validate", "preprocess", "train", "register"
STAGE_NAMES = (BUILD, VALIDATE, PREPROCESS, TRAIN, REGISTER)


class ContainerRunner(Protocol):
    def build(self, job: BuildJob, log_path: Path) -> CmdResult: ...
    def run(self, job: ContainerJob, log_path: Path) -> CmdResult: ...
    def image_id(self, ref: str) -> str | None: ...
    def stop_labelled(self, label: str, stop_timeout_s: float) -> list[str]: ...
    def placements(self, run_id: str) -> Mapping[str, str]:
        """Where this run's containers ran, when that is not here: container name -> Slurm job ID."""
        ...


class Tracker(Protocol):
    def record(self, run: RunRecord, model_name: str) -> Registration: ...
    def end_interrupted(self, retraind_run_id: str, reason: str) -> list[str]: ...


class Outbox(Protocol):
    def put(self, run_id: str, record: RunRecord, model_name: str, error: str) -> None: ...
    def backlog(self) -> int: ...
    def due(self, force: bool = False) -> list[tuple[str, str, int]]: ...
    def flush(self, tracker: Tracker, force: bool = False) -> list[Delivery]: ...


@dataclass(frozen=True)
class StageResult:
    stage: str
    summary: str  # one line for the person watching
    outputs: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable: the stage cache keeps it
    cache_key: str = ""  # hash of exactly what the stage read (daemon/core/cachekeys.py)
    cached_from: str = ""  # the run whose result this is, when the stage cache answered
    # False for a result that must not answer for these inputs again: a registration still waiting
    # in the outbox (the outbox fills the cache once it is delivered). Not kept by the cache.
    final: bool = True


@dataclass(frozen=True)
class CacheEntry:
    run_id: str
    summary: str
    outputs: Mapping[str, Any]


class StageCache(Protocol):
    def lookup(self, stage: str, key: str) -> CacheEntry | None: ...
    def store(self, stage: str, key: str, run_id: str, result: StageResult) -> None: ...


@dataclass(frozen=True)
class Ports:
    """The outside world, as the handlers see it."""

    containers: ContainerRunner
    tracker: Tracker
    outbox: Outbox | None = None  # without one, a tracking outage fails the register stage
    cache: StageCache | None = None  # without one, every stage runs


@dataclass(frozen=True)
class RunContext:
    run_id: str
    run_dir: Path
    settings: Settings
    git: GitInfo
    manifest: Manifest
    params: TrainParams = field(default_factory=TrainParams)
    results: Mapping[str, StageResult] = field(default_factory=dict)
    trigger: str = "manual"  # what started the run (daemon.core.vocab.TRIGGERS)

    @property
    def snapshot_dir(self) -> Path:
        """Hard links to the store objects the manifest names (daemon/adapters/snapshot.py)."""
        return self.run_dir / "data"

    def stage_dir(self, stage: str) -> Path:
        path = self.run_dir / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def output(self, stage: str, key: str) -> Any:
        return self.results[stage].outputs[key]

    def speaks(self, contract: int) -> bool:
        """Whether the image this run built offers the stage contract `contract` (see SCRIPTS)."""
        return int(self.results["build"].outputs.get("contract", 1)) >= contract


class Stage(Protocol):
    name: str

    def cache_key(self, ctx: RunContext, ports: Ports) -> str:
        """Hash of exactly what the stage reads; the results of earlier stages are in ctx."""
        ...

    def reusable(self, outputs: Mapping[str, Any], ports: Ports) -> bool:
        """Whether a cached result's outputs still exist (an image, a directory)."""
        ...

    def run(self, ctx: RunContext, ports: Ports) -> StageResult: ...
