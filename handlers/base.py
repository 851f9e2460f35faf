"""What every stage handler shares: the run context it reads, the result it returns, its seams."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from daemon.core.config import Settings
from daemon.core.errors import InfrastructureError
from daemon.core.jobs import RUN_LABEL, STAGE_LABEL, CmdResult, ContainerJob, Mount, is_podman_failure
from daemon.core.stages import Ports, RunContext

SCRIPTS = "/opt/retraind/scripts"  # where the Containerfile puts scripts/
# The stage contract from which the image's scripts have gate.js and preprocess.js --parity
# (scripts/image_versions.py STAGE_CONTRACT); older images get one container per script.
GATE_CONTRACT = 2


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
        labels={RUN_LABEL: ctx.run_id, STAGE_LABEL: stage},
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
