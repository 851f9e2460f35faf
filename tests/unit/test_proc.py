"""run_cmd: output streamed to the log as it is written, timeouts stopped and reaped, never leaked."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.adapters.proc import run_cmd
from daemon.core.errors import CommandTimeoutError, InfrastructureError
from daemon.core.jobs import CmdResult

PY = sys.executable


def wait_for(predicate: Callable[[], bool], deadline_s: float = 30.0) -> bool:
    """Wait on observable state, never a fixed sleep."""
    event = threading.Event()
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            return False
        event.wait(0.02)
    return True


def log_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_output_reaches_the_log_while_the_command_still_runs(tmp_path: Path) -> None:
    go, log = tmp_path / "go", tmp_path / "stage" / "log"
    child = (
        "import os, sys, time\n"
        "print('first line', flush=True)\n"
        "print('to stderr', file=sys.stderr, flush=True)\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
        "print('second line')\n"
    )
    results: list[CmdResult] = []
    runner = threading.Thread(
        target=lambda: results.append(run_cmd((PY, "-c", child), timeout=60, log_path=log))
    )
    runner.start()
    try:
        # the child cannot exit before `go` exists: the line is in the log while it runs
        assert wait_for(lambda: "first line" in log_text(log)), log_text(log)
        assert runner.is_alive() and not results
    finally:
        go.touch()
        runner.join(timeout=60)
    (result,) = results
    assert result.returncode == 0
    assert result.stdout == "first line\nsecond line\n" and result.stderr == "to stderr\n"
    assert result.tail() == "to stderr"  # stdout and stderr stay apart
    text = log_text(log)
    assert text.startswith(f"$ {PY} -c") and "second line" in text and text.endswith("[exit 0]\n")


def test_a_timeout_calls_on_timeout_then_reaps_and_says_how_long(tmp_path: Path) -> None:
    stop, log = tmp_path / "stop", tmp_path / "log"
    child = (
        "import os, time\n"
        "print('started', flush=True)\n"
        f"while not os.path.exists({str(stop)!r}): time.sleep(0.01)\n"
        "print('stopped by on_timeout', flush=True)\n"
    )
    calls: list[float] = []

    def on_timeout() -> None:  # what `podman stop NAME` does: the command then exits by itself
        calls.append(time.monotonic())
        stop.touch()

    threads_before = threading.active_count()
    with pytest.raises(CommandTimeoutError, match="timed out after 1 s") as caught:
        run_cmd((PY, "-c", child), timeout=1, log_path=log, on_timeout=on_timeout)
    assert len(calls) == 1 and isinstance(caught.value, InfrastructureError)
    text = log_text(log)
    assert "started" in text and "stopped by on_timeout" in text and "[timed out after 1 s]" in text
    assert threading.active_count() == threads_before


def test_without_on_timeout_the_command_gets_sigterm_first(tmp_path: Path) -> None:
    log = tmp_path / "log"
    child = (
        "import signal, sys, time\n"
        "def bye(*_):\n"
        "    print('got SIGTERM', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('started', flush=True)\n"
        "while True: time.sleep(0.01)\n"
    )
    with pytest.raises(CommandTimeoutError):
        run_cmd((PY, "-c", child), timeout=1, log_path=log)
    assert "got SIGTERM" in log_text(log)  # SIGKILL would have left no last words


def test_undecodable_output_is_replaced_and_a_missing_tool_is_infrastructure(tmp_path: Path) -> None:
    child = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe end\\n')"
    assert run_cmd((PY, "-c", child), timeout=60).stdout == "ok \ufffd\ufffd end\n"
    with pytest.raises(InfrastructureError, match="not installed"):
        run_cmd(("retraind-no-such-tool",), timeout=60, log_path=tmp_path / "log")
