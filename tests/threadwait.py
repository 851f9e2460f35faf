"""What a thread of this process is blocked in, from /proc (Linux x86_64): to test that an idle
thread sleeps until an event (no timeout) rather than waking up to poll."""

from __future__ import annotations

import platform
import threading
import time
from pathlib import Path

import pytest

# x86_64 syscall number -> index of its timeout argument in /proc/.../syscall (after the number)
_TIMEOUT_ARG = {7: 3, 23: 5, 202: 4, 271: 3}  # poll, select, futex, ppoll
_INFINITE = {7: -1}  # poll's timeout is an int (milliseconds); the others take a pointer (NULL: none)

needs_proc_syscall = pytest.mark.skipif(
    platform.machine() != "x86_64" or not Path("/proc/self/task").is_dir(),
    reason="reads x86_64 syscall numbers from /proc",
)


def blocked_in(native_id: int) -> tuple[int, bool] | None:
    """(syscall number, waits without a timeout) while the thread is blocked in a call we know."""
    fields = Path(f"/proc/self/task/{native_id}/syscall").read_text().split()
    if not fields or not fields[0].isdigit() or int(fields[0]) not in _TIMEOUT_ARG:
        return None
    nr = int(fields[0])
    raw = int(fields[_TIMEOUT_ARG[nr]], 16)
    if nr in _INFINITE:  # an int argument: its low 32 bits, signed
        low = raw & 0xFFFFFFFF
        return nr, (low - (1 << 32) if low >= 1 << 31 else low) == _INFINITE[nr]
    return nr, raw == 0


def wait_until_blocked(thread: threading.Thread, timeout_s: float = 30.0) -> tuple[int, bool]:
    """Wait (on observable state) until the thread sits in a blocking call; return what it is."""
    assert thread.native_id is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = blocked_in(thread.native_id)
        if found is not None:
            return found
        time.sleep(0.01)
    raise AssertionError(f"thread {thread.name} never blocked within {timeout_s} s")


def sleeps_until_woken(thread: threading.Thread, samples: int = 5, timeout_s: float = 30.0) -> bool:
    """The thread settles into a wait with no timeout: `samples` looks in a row, 20 ms apart, find it
    so. A thread that polls sits in a timed wait, so it never gets there; a thread that is still
    settling (finishing start-up work, or waiting for the GIL, which Python waits for with a timed
    futex) gets there once it is done, hence the deadline."""
    assert thread.native_id is not None
    deadline = time.monotonic() + timeout_s
    in_a_row = 0
    while time.monotonic() < deadline:
        found = blocked_in(thread.native_id)
        in_a_row = in_a_row + 1 if found is not None and found[1] else 0
        if in_a_row >= samples:
            return True
        time.sleep(0.02)
    return False
