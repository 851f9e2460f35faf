"""What every stage handler shares: the run context it reads, the result it returns, its seams."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from daemon.config import Settings
from daemon.errors import InfrastructureError
from daemon.gitinfo import GitInfo
from daemon.manifest import Manifest
from daemon.params import TrainParams
from daemon.podman import BuildJob, ContainerJob, Mount, is_podman_failure
from daemon.proc import CmdResult
from daemon.tracking import Registration, RunRecord

SCRIPTS = "/opt/retraind/scripts"  # where the Containerfile puts scripts/
# The stage contract from which the image's scripts have gate.js and preprocess.js --parity
# (scripts/image_versions.py STAGE_CONTRACT); older images get one container per script.
GATE_CONTRACT = 2


class ContainerRunner(Protocol):
    def build(self, job: BuildJob, log_path: Path) -> CmdResult: ...
    def run(self, job: ContainerJob, log_path: Path) -> CmdResult: ...
    def image_id(self, ref: str) -> str | None: ...
    def stop_labelled(self, label: str, stop_timeout_s: float) -> list[str]: ...


class Tracker(Protocol):
    def record(self, run: RunRecord, model_name: str) -> Registration: ...
    def end_interrupted(self, retraind_run_id: str, reason: str) -> list[str]: ...


class Outbox(Protocol):
    def put(self, run_id: str, record: RunRecord, model_name: str, error: str) -> None: ...
    def backlog(self) -> int: ...
    def due(self, force: bool = False) -> list[tuple[str, str, int]]: ...
    def flush(self, tracker: Any, force: bool = False) -> list[Any]: ...


@dataclass(frozen=True)
class StageResult:
    stage: str
    summary: str  # one line for the person watching
    outputs: Mapping[str, Any] = field(default_factory=dict)  # JSON-serialisable: the stage cache keeps it
    cache_key: str = ""  # hash of exactly what the stage read (daemon/cachekeys.py)
    cached_from: str = ""  # the run whose result this is, when the stage cache answered


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

    @property
    def snapshot_dir(self) -> Path:
        """Hard links to the store objects the manifest names (daemon/snapshot.py)."""
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


def container_job(
    ctx: RunContext, stage: str, argv: tuple[str, ...], mounts: tuple[Mount, ...], *, step: str = ""
) -> ContainerJob:
    """A sealed job in the image this run built: no network, read-only root, labelled as ours."""
    suffix = f"-{step}" if step else ""
    return ContainerJob(
        name=f"retraind-{ctx.run_id}-{stage}{suffix}",
        image=ctx.output("build", "image_id"),
        argv=argv,
        mounts=mounts,
        labels={"io.retraind.run": ctx.run_id, "io.retraind.stage": stage},
        env=blas_env(ctx.settings),
        timeout_s=ctx.settings.stage_timeout_s,
    )


def blas_env(s: Settings) -> dict[str, str]:
    """The OpenBLAS kernel and thread count every container uses: with them pinned, two machines
    train the same model bytes from the same inputs (without, the CPU and its core count decide)."""
    x86 = platform.machine() in ("x86_64", "AMD64")  # the kernel names are x86 ones
    env = {"OPENBLAS_CORETYPE": s.blas_coretype} if s.blas_coretype and x86 else {}
    if s.blas_threads:
        env["OPENBLAS_NUM_THREADS"] = str(s.blas_threads)
    return env


def run_checked(ports: Ports, job: ContainerJob, log_path: Path) -> CmdResult:
    """Run a job; podman's own failures (125-127) become InfrastructureError."""
    result = ports.containers.run(job, log_path)
    if is_podman_failure(result.returncode):
        raise InfrastructureError(f"podman could not run {job.name}: {result.tail(5)}")
    return result


def data_mounts(ctx: RunContext, out: Path) -> tuple[Mount, ...]:
    """The run's data snapshot (never the live data directory), read-only, and the stage's output."""
    return (Mount(ctx.snapshot_dir, "/data"), Mount(out, "/out", writable=True))


def data_paths(ctx: RunContext) -> tuple[str, ...]:
    return tuple(f"/data/{name}" for name in ctx.manifest.names)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
