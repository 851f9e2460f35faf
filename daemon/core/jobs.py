"""What the stages ask a container runner to do, and what a command gave back: values only (the
podman adapter turns jobs into argv, `run_cmd` makes results)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from daemon.core.errors import PODMAN_FAILED, PODMAN_NOT_EXECUTABLE, PODMAN_NOT_FOUND

LABEL = "io.retraind"
STAGE_LABEL = "io.retraind.stage"
RUN_LABEL = "io.retraind.run"  # every container of a run carries it: what stopping a run stops


def run_label(run_id: str) -> str:
    """The `KEY=VALUE` label filter of one run's containers."""
    return f"{RUN_LABEL}={run_id}"


IMAGE_UID = 10001  # the non-root user the Containerfile creates
IMAGE_USER = f"{IMAGE_UID}:{IMAGE_UID}"


@dataclass(frozen=True)
class Mount:
    host: Path
    container: str
    writable: bool = False


@dataclass(frozen=True)
class ContainerJob:
    """One command in one hardened, throw-away container."""

    name: str
    image: str
    argv: tuple[str, ...]
    mounts: tuple[Mount, ...] = ()
    network: bool = False
    read_only_root: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 3600.0


@dataclass(frozen=True)
class BuildJob:
    context: Path
    containerfile: Path
    tag: str
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    iidfile: Path | None = None
    no_cache: bool = False
    timeout_s: float = 3600.0


def is_podman_failure(returncode: int) -> bool:
    """125/126/127 are podman's own failures, not the container's."""
    return returncode in (PODMAN_FAILED, PODMAN_NOT_EXECUTABLE, PODMAN_NOT_FOUND)


@dataclass(frozen=True)
class CmdResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def tail(self, lines: int = 20) -> str:
        """The last lines of stderr (or stdout when stderr is empty), for error messages."""
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])
