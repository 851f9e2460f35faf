"""build: `podman build` the Containerfile; output the image ID, the toolchain versions and the
environment manifest (what the image holds, and the host that built it)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pathspec

from daemon.core.baseimage import check_pin
from daemon.core.cachekeys import copied_sources, ignore_patterns, stage_key
from daemon.core.environment import content_sha256, this_host
from daemon.core.errors import ConfigError, InfrastructureError, StageFailedError
from daemon.core.inputs import file_sha256
from daemon.core.jobs import RUN_LABEL, STAGE_LABEL, BuildJob, ContainerJob
from daemon.core.stages import BUILD, Ports, RunContext, StageResult
from handlers.base import SCRIPTS, run_checked

NAME = BUILD
# The stage cache's entries for what an image holds (image_versions.py's document), keyed by image ID.
INSPECTED = "build.inspect"
LOCKFILES = {"python": "requirements.lock", "node": "scripts/package-lock.json"}
IGNORE_FILES = (".containerignore", ".dockerignore")  # podman reads the first that exists


def build_job(ctx: RunContext) -> BuildJob:
    """FROM the base by its name: given its ID, buildah records a random temporary name for it in
    the image's config (its base.name label and history), and the image ID is then no longer a
    function of the inputs."""
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


def _ignore_spec(root: Path) -> pathspec.PathSpec[Any]:
    for name in IGNORE_FILES:
        if (root / name).is_file():
            lines = (root / name).read_text(encoding="utf-8").splitlines()
            return pathspec.PathSpec.from_lines("gitignore", ignore_patterns(lines))
    return pathspec.PathSpec.from_lines("gitignore", [])


def _walk(root: Path, source: Path, ignored: pathspec.PathSpec[Any]) -> list[Path]:
    """Files under source that reach the build context, pruning ignored directories on the way."""

    def kept(path: Path, suffix: str = "") -> bool:
        return not ignored.match_file(path.relative_to(root).as_posix() + suffix)

    if source.is_file() or source.is_symlink():
        return [source] if kept(source) else []
    found = []
    for top, dirs, files in os.walk(source):
        here = Path(top)
        dirs[:] = sorted(d for d in dirs if kept(here / d, "/"))
        found += [here / f for f in files if kept(here / f)]
    return found


def build_inputs(root: Path, containerfile: Path) -> dict[str, str]:
    """SHA-256 of every build-context file the Containerfile COPYs or ADDs, after .containerignore."""
    try:
        sources = copied_sources(containerfile.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{containerfile}: {e}") from e
    ignored = _ignore_spec(root)
    inputs: dict[str, str] = {}
    for source in sources:
        if "://" in source:
            inputs[source] = "url"
            continue
        wildcard = any(c in source for c in "*?[")
        matches = sorted(root.glob(source.rstrip("/"))) if wildcard else [root / source]
        for match in matches:
            for path in _walk(root, match, ignored):
                rel = path.relative_to(root).as_posix()
                inputs[rel] = "link:" + os.readlink(path) if path.is_symlink() else file_sha256(path)
    return dict(sorted(inputs.items()))


def built_id(job: BuildJob) -> str | None:
    """The image ID `podman build --iidfile` wrote ("sha256:<hex>"), as `podman image inspect`
    prints it (the hex alone): one inspect less, 0.04 s of every build."""
    try:
        text = job.iidfile.read_text(encoding="ascii").strip() if job.iidfile is not None else ""
    except (OSError, UnicodeDecodeError):
        return None
    digest = text.removeprefix("sha256:")
    return digest if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest) else None


class Build:
    name = NAME

    def cache_key(self, ctx: RunContext, ports: Ports) -> str:
        """The Containerfile, the base image it starts from, and every file it copies."""
        root = ctx.git.workdir
        containerfile = root / ctx.settings.containerfile
        inputs = {
            "containerfile": file_sha256(containerfile),
            "base_image_id": self._base_id(ctx, ports),
            "files": build_inputs(root, containerfile),
        }
        return stage_key(NAME, inputs)

    def reusable(self, outputs: Mapping[str, Any], ports: Ports) -> bool:
        """The image still exists, and the entry has the manifest and the contract (older daemons did
        not collect them)."""
        known = "environment" in outputs and "contract" in outputs
        return known and ports.containers.image_id(str(outputs["image_id"])) is not None

    def _base_id(self, ctx: RunContext, ports: Ports) -> str:
        base = ctx.settings.base_image
        base_id = ports.containers.image_id(base)
        check_pin(ctx.settings, base_id)  # a runner pinned to a team's base builds on nothing else
        if base_id is None and base.startswith("localhost/"):
            raise ConfigError(f"base image {base} is missing; build it with: bash tools/base-image.sh")
        return base_id or base  # a registry image not pulled yet: podman pulls it by name

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        base_id = self._base_id(ctx, ports)
        job = build_job(ctx)
        log = ctx.stage_dir(NAME) / "build.log"
        result = ports.containers.build(job, log)
        if result.returncode != 0:
            raise StageFailedError(NAME, result.returncode, f"{result.tail(8)}\n(full log: {log})")
        image_id = built_id(job) or ports.containers.image_id(job.tag)
        if image_id is None:
            raise InfrastructureError(f"podman built {job.tag} but cannot inspect it")
        versions, environment, tests, contract = self._inspect(ctx, ports, image_id)
        outputs = {
            "image_id": image_id,
            "base_image_id": base_id,
            "versions": versions,
            "hashes": input_hashes(ctx),
            "environment": environment,
            "environment_sha256": content_sha256(environment) if environment else None,
            "host": this_host(),
            "contract": contract,
        }
        if tests is not None:  # the Jest suite ran in the build: validate reads it from here
            outputs["tests"] = tests
        return StageResult(NAME, f"image {image_id[:12]}", outputs)

    def _inspect(
        self, ctx: RunContext, ports: Ports, image_id: str
    ) -> tuple[dict[str, str], dict[str, Any] | None, dict[str, Any] | None, int]:
        """The toolchain versions, the manifest of the image, the outcome of the Jest suite it ran
        when it was built and the stage contract its scripts speak, from one container.

        The script is the image's own: one built from a commit older than the manifest ignores
        --environment and prints the versions alone (then the manifest is None). An image whose
        Containerfile does not run the suite has no outcome (None): validate runs the suite then.
        An image older than the contract number speaks contract 1 (handlers/base.py).
        """
        printed = self._printed(ctx, ports, image_id)
        if "environment" not in printed:
            return printed, None, None, 1
        versions: dict[str, str] = printed["versions"]
        environment: dict[str, Any] = printed["environment"]
        return versions, environment, printed.get("tests"), int(printed.get("stage_contract", 1))

    def _printed(self, ctx: RunContext, ports: Ports, image_id: str) -> dict[str, Any]:
        """What image_versions.py prints in the image, once per image.

        Everything in the document is read from the image's own files, and the image ID is the
        digest of those files, so an image is asked once and the answer kept in the stage cache
        under its ID, even by a `--force` run: a forced run rebuilds, and a rebuild with the same
        inputs gives the same ID, hence the same files. (The host's part is added afresh by every
        stage; see daemon/core/environment.py.)
        """
        if ports.cache is not None and (known := ports.cache.lookup(INSPECTED, image_id)) is not None:
            return dict(known.outputs)
        job = ContainerJob(
            name=f"retraind-{ctx.run_id}-{NAME}-versions",
            image=image_id,
            argv=("python", f"{SCRIPTS}/image_versions.py", "--environment"),
            labels={RUN_LABEL: ctx.run_id, STAGE_LABEL: NAME},
        )
        result = run_checked(ports, job, ctx.stage_dir(NAME) / "versions.log")
        if result.returncode != 0:
            raise StageFailedError(NAME, result.returncode, result.tail(5))
        try:
            printed: dict[str, Any] = json.loads(result.stdout)
        except ValueError as e:
            raise StageFailedError(NAME, result.returncode, f"image_versions.py printed no JSON: {e}") from e
        if ports.cache is not None:
            ports.cache.store(INSPECTED, image_id, ctx.run_id, StageResult(INSPECTED, image_id[:12], printed))
        return printed


STAGE = Build()
