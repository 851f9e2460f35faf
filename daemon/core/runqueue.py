"""Run-queue policy: one pipeline at a time; whatever arrives meanwhile becomes one follow-up run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar


class _Cause(Protocol):
    @property
    def source(self) -> str: ...


class _Event(Protocol):
    @property
    def causes(self) -> Iterable[_Cause]: ...


E = TypeVar("E", bound=_Event)


class Admission(Enum):
    START = "start"  # nothing running: run it now
    QUEUED = "queued"  # a run is going: this becomes the follow-up
    COALESCED = "coalesced"  # a follow-up was already waiting: merged into it
    SUPERSEDE = "supersede"  # stop the running pipeline; this becomes the follow-up
    HELD = "held"  # not queued yet: the journal could not record it (disk full); admitted later


@dataclass
class RunQueue(Generic[E]):
    """Pure policy; the caller owns threads and clocks. `merge` combines two waiting events."""

    merge: Callable[[E, E], E]
    supersede_on_commit: bool = False
    running: E | None = None
    pending: E | None = None

    @property
    def depth(self) -> int:
        """Runs waiting (0 or 1): the follow-up, never more."""
        return 0 if self.pending is None else 1

    def submit(self, event: E) -> Admission:
        if self.running is None:
            self.running = event
            return Admission.START
        merged = self.pending is not None
        self.pending = event if self.pending is None else self.merge(self.pending, event)
        if self.supersede_on_commit and any(c.source == "commit" for c in event.causes):
            return Admission.SUPERSEDE
        return Admission.COALESCED if merged else Admission.QUEUED

    def finished(self) -> E | None:
        """The running pipeline ended: promote the follow-up, if any, and return it."""
        self.running, self.pending = self.pending, None
        return self.running
