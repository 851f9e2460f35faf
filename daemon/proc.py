"""The one place retraind starts subprocesses: `run_cmd(argv, *, timeout) -> CmdResult`."""

from __future__ import annotations

import ctypes
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import InfrastructureError

_PR_SET_PDEATHSIG = 1


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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM the child when we die, so `podman run` never outlives us."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_cmd(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
) -> CmdResult:
    """Run argv without a shell; capture output (and copy it to log_path when given)."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            preexec_fn=_die_with_parent,
            check=False,
        )
    except FileNotFoundError as e:
        raise InfrastructureError(f"{argv[0]} is not installed or not on PATH") from e
    except subprocess.TimeoutExpired as e:
        raise InfrastructureError(f"{argv[0]} did not finish within {timeout:.0f} s") from e
    result = CmdResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as log:
            log.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}[exit {proc.returncode}]\n")
    return result
