"""Journal writes held while the disk is full: kept in order, replayed once, bugs not swallowed."""

from __future__ import annotations

import pytest

from daemon.adapters.heldwrites import HeldWrites
from daemon.core.errors import InfrastructureError


class Disk:
    def __init__(self) -> None:
        self.full = False
        self.written: list[tuple[str, float]] = []

    def writer(self, name: str):  # type: ignore[no-untyped-def]
        def call(at: float) -> None:
            if self.full:
                raise InfrastructureError("state journal j.db: database or disk is full")
            self.written.append((name, at))

        return call


def test_writes_wait_in_order_while_the_disk_is_full_and_keep_the_time_they_were_asked_for() -> None:
    disk, counts, now = Disk(), [], iter([1.0, 2.0, 3.0, 4.0])
    held = HeldWrites(on_change=counts.append, clock=lambda: next(now))
    assert held.write("a", disk.writer("a"))
    disk.full = True
    assert not held.write("b", disk.writer("b"))
    disk.full = False
    assert held.write("c", disk.writer("c")) and held.count == 0  # b first, then c: never out of order
    assert held.flush()
    assert disk.written == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert counts[0] == 1 and counts[-1] == 0


def test_a_write_failing_for_another_reason_than_the_journal_is_a_bug_and_raises() -> None:
    def bug(at: float) -> None:
        raise ValueError("finish_run: run r1 is not running")

    with pytest.raises(ValueError):
        HeldWrites().write("finish_run", bug)
