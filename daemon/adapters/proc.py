"""The one place retraind starts subprocesses: `run_cmd(argv, *, timeout) -> CmdResult`."""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

from daemon.core.errors import CommandTimeoutError, InfrastructureError, RetraindError
from daemon.core.jobs import CmdResult

_PR_SET_PDEATHSIG = 1
_CHUNK = 65536
REAP_GRACE_S = 30.0  # after a stop: how long the client has to exit before SIGTERM, then SIGKILL


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM the child when we die, so `podman run` never outlives us."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _Log:
    """The command's log file, appended to and flushed as output arrives. A log that cannot be
    written (disk full) stops being written; the command's own result still counts."""

    def __init__(self, path: Path | None, argv: Sequence[str]) -> None:
        self.path, self.file = path, None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.file = path.open("a", encoding="utf-8", errors="replace")
            except OSError as e:
                self._failed(e)
        self.write(f"$ {' '.join(argv)}\n")

    def write(self, text: str) -> None:
        if self.file is None or not text:
            return
        try:
            self.file.write(text)
            self.file.flush()
        except OSError as e:
            self._failed(e)

    def _failed(self, error: OSError) -> None:
        structlog.get_logger().warning("command_log_failed", path=str(self.path), error=str(error))
        self.close()

    def close(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            with contextlib.suppress(OSError):  # already reported: a full disk fails close()'s flush too
                file.close()


class _Pump:
    """Reads stdout and stderr as they are written, in the calling thread (no reader threads):
    each chunk is kept (stdout and stderr apart) and copied to the log at once."""

    def __init__(self, proc: subprocess.Popen[bytes], log: _Log) -> None:
        self.log = log
        self.selector = selectors.DefaultSelector()
        self.parts: dict[int, list[str]] = {}
        self.decoders: dict[int, codecs.IncrementalDecoder] = {}
        for pipe in (proc.stdout, proc.stderr):
            assert pipe is not None
            fd = pipe.fileno()
            self.parts[fd], self.decoders[fd] = [], codecs.getincrementaldecoder("utf-8")("replace")
            self.selector.register(fd, selectors.EVENT_READ)
        self.stdout_fd = proc.stdout.fileno() if proc.stdout else -1

    def until(self, deadline: float, clock: Callable[[], float]) -> bool:
        """Copy output until both pipes close (True) or the deadline passes (False)."""
        while self.selector.get_map():
            remaining = deadline - clock()
            if remaining <= 0:
                return False
            for key, _ in self.selector.select(timeout=min(remaining, 1.0)):
                self._read(int(key.fd))
        return True

    def _read(self, fd: int) -> None:
        chunk = os.read(fd, _CHUNK)
        text = self.decoders[fd].decode(chunk, final=not chunk)
        if not chunk:
            self.selector.unregister(fd)
        self.parts[fd].append(text)
        self.log.write(text)

    def text(self, stdout: bool) -> str:
        return "".join(next(p for fd, p in self.parts.items() if (fd == self.stdout_fd) == stdout))

    def close(self) -> None:
        self.selector.close()


def run_cmd(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    on_timeout: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CmdResult:
    """Run argv without a shell; capture its output, streaming it to log_path as it is written.

    Past the timeout, `on_timeout` stops what the command runs (a container, by name), or without
    one the command gets SIGTERM; either way it is reaped (SIGKILL only if it still will not exit),
    then CommandTimeoutError. The child gets SIGTERM if the thread that started it dies.
    """
    log = _Log(log_path, argv)
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            preexec_fn=_die_with_parent,
        )
    except FileNotFoundError as e:
        log.close()
        raise InfrastructureError(f"{argv[0]} is not installed or not on PATH") from e
    pump = _Pump(proc, log)
    try:
        if not pump.until(clock() + timeout, clock):
            _stop(proc, pump, on_timeout, clock)
            log.write(f"\n[timed out after {timeout:.0f} s]\n")
            raise CommandTimeoutError(argv[0], timeout)
        returncode = proc.wait()
        log.write(f"[exit {returncode}]\n")
        return CmdResult(tuple(argv), returncode, pump.text(stdout=True), pump.text(stdout=False))
    except BaseException:  # Ctrl-C, a log we cannot read: never leave the child running unreaped
        if proc.poll() is None:
            proc.terminate()  # `podman run` passes SIGTERM on to its container; `podman build` cleans up
        _reap(proc)
        raise
    finally:
        pump.close()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        log.close()


def _stop(
    proc: subprocess.Popen[bytes],
    pump: _Pump,
    on_timeout: Callable[[], None] | None,
    clock: Callable[[], float],
) -> None:
    """Stop a command that ran too long: on_timeout (e.g. `podman stop NAME`), else SIGTERM."""
    try:
        if on_timeout is None:
            proc.terminate()
        else:
            on_timeout()
    except RetraindError as e:  # the stop itself failed: fall back on SIGTERM, still never SIGKILL first
        structlog.get_logger().warning("command_stop_failed", argv=str(proc.args), error=str(e))
        proc.terminate()
    pump.until(clock() + REAP_GRACE_S, clock)  # keep its last words; it exits once stopped
    _reap(proc)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the child to exit: SIGTERM after the grace period, SIGKILL only as the last resort."""
    for escalate in (proc.terminate, proc.kill):
        try:
            proc.wait(timeout=REAP_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            escalate()
    proc.wait()
