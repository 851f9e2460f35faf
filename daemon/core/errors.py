"""The error hierarchy of retraind and the exit codes they map to."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = 2
EXIT_GATE = 3  # the validation gate rejected the code (Jest) or the data
EXIT_STAGE = 4  # a stage's own program failed (e.g. training raised)
EXIT_INFRA = 5  # podman, git, MLflow or the filesystem failed under us
EXIT_CONFIG = 78  # EX_CONFIG: bad configuration or a missing tool; systemd must not restart
EXIT_INTERRUPTED = 130

# Podman's own exit codes; anything else is the container's.
PODMAN_FAILED = 125
PODMAN_NOT_EXECUTABLE = 126
PODMAN_NOT_FOUND = 127


class RetraindError(Exception):
    """Base class: every error retraind raises on purpose."""

    exit_code = EXIT_CRASH


class ConfigError(RetraindError):
    exit_code = EXIT_CONFIG


class InfrastructureError(RetraindError):
    """Something we depend on failed: podman itself, git, MLflow, the disk."""

    exit_code = EXIT_INFRA


class GitReadError(InfrastructureError):
    pass


class TrackingError(InfrastructureError):
    pass


class LostWorkError(InfrastructureError):
    """The machine running a stage went away under it (a Slurm node failure, a preemption): not
    the stage's fault; the daemon retries the run once, as it does a run a crash interrupted."""


class RegistryError(RetraindError):
    """A registry request that cannot be done: an unknown model or version, nothing to roll back to."""

    exit_code = EXIT_USAGE


class StageFailedError(RetraindError):
    """A stage's program exited non-zero for a reason other than the gate."""

    exit_code = EXIT_STAGE

    def __init__(self, stage: str, exit_code: int, stderr_tail: str) -> None:
        self.stage, self.returncode, self.stderr_tail = stage, exit_code, stderr_tail
        super().__init__(f"stage {stage} failed with exit code {exit_code}: {stderr_tail.strip()}")


class CancelledError(RetraindError):
    """The run was stopped on purpose: SIGTERM, Ctrl-C, or superseded by a newer commit."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, stage: str, why: str) -> None:
        self.stage, self.why = stage, why
        super().__init__(f"cancelled during {stage}: {why}")


class GateRejectedError(RetraindError):
    """The validation gate refused the code or the data; nothing was trained."""

    exit_code = EXIT_GATE

    def __init__(self, stage: str, reasons: Sequence[str], kinds: Iterable[str] = ()) -> None:
        self.stage, self.reasons, self.kinds = stage, tuple(reasons), frozenset(kinds)
        super().__init__(f"gate rejected the run: {'; '.join(self.reasons)}")


class ReproduceRefusedError(RetraindError):
    """`retraind reproduce` cannot rebuild the run: its data changed, or it recorded too little."""

    exit_code = EXIT_GATE

    def __init__(self, run: str, reasons: Sequence[str]) -> None:
        self.run, self.reasons = run, tuple(reasons)
        super().__init__(f"cannot reproduce run {run}: " + "; ".join(self.reasons))


class CommandTimeoutError(InfrastructureError):
    """A command `run_cmd` started ran past its time limit; it was stopped and reaped."""

    def __init__(self, argv0: str, timeout_s: float) -> None:
        self.argv0, self.timeout_s = argv0, timeout_s
        super().__init__(f"{argv0} timed out after {timeout_s:.0f} s")


class StageTimeoutError(RetraindError):
    """A stage's container or build ran past `stage_timeout_s`, and was stopped.

    Exit 4, like StageFailedError: what ran too long is the stage's own work (its code, its data, or
    a limit set too low for them), which the same inputs would repeat; podman, git and MLflow did
    what was asked (they answered the stop), so it is not infrastructure (5).
    """

    exit_code = EXIT_STAGE

    def __init__(self, stage: str, timeout_s: float, stopped: str) -> None:
        self.stage, self.timeout_s, self.stopped = stage, timeout_s, stopped
        super().__init__(f"stage {stage} timed out after {timeout_s:.0f} s; {stopped}")
