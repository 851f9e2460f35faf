"""build: `podman build` the Containerfile; output the image ID and the toolchain versions inside."""

from __future__ import annotations

import json

from daemon.errors import ConfigError, InfrastructureError, StageFailedError
from daemon.manifest import file_sha256
from daemon.podman import BuildJob, ContainerJob
from handlers.base import SCRIPTS, Ports, RunContext, StageResult, run_checked

NAME = "build"
LOCKFILES = {"python": "requirements.lock", "node": "scripts/package-lock.json"}


def build_job(ctx: RunContext) -> BuildJob:
    s = ctx.settings
    return BuildJob(
        context=ctx.git.workdir,
        containerfile=ctx.git.workdir / s.containerfile,
        tag=f"{s.image}:latest",
        build_args={"BASE_IMAGE": s.base_image},
        iidfile=ctx.stage_dir(NAME) / "image.id",
        no_cache=s.no_cache,
        timeout_s=s.build_timeout_s,
    )


def input_hashes(ctx: RunContext) -> dict[str, str]:
    """SHA-256 of the Containerfile and the lockfiles, recorded as provenance."""
    root = ctx.git.workdir
    hashes = {"containerfile": file_sha256(root / ctx.settings.containerfile)}
    hashes.update({f"lock_{k}": file_sha256(root / v) for k, v in LOCKFILES.items()})
    return hashes


class Build:
    name = NAME

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        base = ctx.settings.base_image
        base_id = ports.containers.image_id(base)
        if base_id is None and base.startswith("localhost/"):
            raise ConfigError(f"base image {base} is missing; build it with: bash tools/base-image.sh")
        job = build_job(ctx)
        log = ctx.stage_dir(NAME) / "build.log"
        result = ports.containers.build(job, log)
        if result.returncode != 0:
            raise StageFailedError(NAME, result.returncode, f"{result.tail(8)}\n(full log: {log})")
        image_id = ports.containers.image_id(job.tag)
        if image_id is None:
            raise InfrastructureError(f"podman built {job.tag} but cannot inspect it")
        versions = self._versions(ctx, ports, image_id)
        outputs = {
            "image_id": image_id,
            "base_image_id": base_id or "",
            "versions": versions,
            "hashes": input_hashes(ctx),
        }
        return StageResult(NAME, f"image {image_id[:12]}", outputs)

    def _versions(self, ctx: RunContext, ports: Ports, image_id: str) -> dict[str, str]:
        job = ContainerJob(
            name=f"retraind-{ctx.run_id}-{NAME}-versions",
            image=image_id,
            argv=("python", f"{SCRIPTS}/image_versions.py"),
            labels={"io.retraind.run": ctx.run_id, "io.retraind.stage": NAME},
        )
        result = run_checked(ports, job, ctx.stage_dir(NAME) / "versions.log")
        if result.returncode != 0:
            raise StageFailedError(NAME, result.returncode, result.tail(5))
        versions: dict[str, str] = json.loads(result.stdout)
        return versions


STAGE = Build()
