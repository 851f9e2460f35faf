"""Recognising a full disk in whatever raised, and saying so: "no space left on device"."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from daemon.core.errors import InfrastructureError

_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = "database or disk is full"  # SQLITE_FULL's message, however sqlite3 wraps it


def is_no_space(error: BaseException | None) -> bool:
    """ENOSPC or EDQUOT anywhere in the chain of causes, or SQLite's "database or disk is full"."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno in _NO_SPACE_ERRNOS:
            return True
        if _SQLITE_FULL in str(error):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def free_bytes(directory: Path) -> int | None:
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def no_space_error(error: BaseException, directory: Path) -> InfrastructureError:
    """The run's reason: what failed, and where to make room (with what is free there now)."""
    free = free_bytes(directory)
    now = "" if free is None else f" ({free / 1e6:.1f} MB free now)"
    mapped = InfrastructureError(f"no space left on device: {error}; free space in {directory}{now}")
    mapped.__cause__ = error
    return mapped
