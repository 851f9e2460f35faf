"""Journal writes that failed (the disk was full), kept in order in memory and replayed when there is room."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from daemon.core.errors import InfrastructureError

log = structlog.get_logger()
Write = Callable[[float], object]  # called with the time the write was asked for


class HeldWrites:
    """Writes go straight to the journal while it accepts them; once one fails, it and every later one
    wait here, in order (a run's finish never overtakes its start), until `flush` gets them all in.

    Only InfrastructureError (the journal's mapped sqlite errors: disk full, I/O error) is held; any
    other error is a bug and propagates. Shared by the loop and the run thread, so it holds a lock.
    `on_change` is told how many writes wait (a gauge).
    """

    def __init__(
        self, on_change: Callable[[int], None] = lambda n: None, clock: Callable[[], float] = time.time
    ) -> None:
        self._held: list[tuple[str, float, Write]] = []
        self._lock = threading.Lock()
        self.on_change, self.clock = on_change, clock
        self.last_error: str | None = None

    @property
    def count(self) -> int:
        return len(self._held)

    def write(self, what: str, call: Write) -> bool:
        """Write now if the journal accepts it (after what waits); else keep it. True when written."""
        at = self.clock()
        with self._lock:
            if self._drain() and self._try(what, at, call):
                return True
            self._held.append((what, at, call))
            self.on_change(len(self._held))
            return False

    def flush(self) -> bool:
        """Replay what waits, oldest first, stopping at the first failure; True when nothing waits."""
        with self._lock:
            return self._drain()

    def _drain(self) -> bool:
        if not self._held:
            return True
        while self._held:
            what, at, call = self._held[0]
            if not self._try(what, at, call, quiet=True):
                break
            self._held.pop(0)
        self.on_change(len(self._held))
        if not self._held:
            log.info("journal_writes_flushed")
            self.last_error = None
        return not self._held

    def _try(self, what: str, at: float, call: Write, quiet: bool = False) -> bool:
        try:
            call(at)
        except InfrastructureError as e:
            if not quiet or str(e) != self.last_error:  # once per distinct error, not once per event
                log.error("journal_write_held", what=what, error=str(e), held=len(self._held) + 1)
            self.last_error = str(e)
            return False
        return True
