"""The debouncer, driven by a fake clock and a dict of file states the way the daemon's loop drives it.

`Loop.write` reports a file the way a polling observer or a rename does (file_changed, perhaps a
close); `Loop.create`, `Loop.append`, `Loop.close` and `Loop.read` report what inotify says about a
file written in place (created, opened, modified, closed; opened and closed_no_write for a reader).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from daemon.core.debounce import OVERFLOW_DETAIL, Cause, Debouncer, FileState, PipelineEvent
from daemon.core.errors import ConfigError
from tests.fakes import FakeClock

MAIN = "refs/heads/main"
MARKERS = ("_SUCCESS", ".ready")


@dataclass
class Loop:
    """The daemon's loop in miniature: feed events, poll at each deadline (never blindly), keep events."""

    deb: Debouncer = field(default_factory=Debouncer)
    clock: FakeClock = field(default_factory=FakeClock)
    fs: dict[str, FileState] = field(default_factory=dict)  # the fake stat: name -> (size, mtime_ns)
    fired: list[PipelineEvent] = field(default_factory=list)
    polls: int = 0
    writes: int = 0

    def stat(self, name: str) -> FileState:
        return self.fs.get(name)

    def to(self, t: float) -> None:
        """Poll at every deadline before t, then move the clock to t."""
        while (deadline := self.deb.next_deadline()) is not None and deadline < t:
            self._move(deadline)
            self.poll()
        self._move(t)

    def settle(self, limit: float = 1_000.0) -> None:
        """No more events: poll at every deadline up to `limit`."""
        while (deadline := self.deb.next_deadline()) is not None and deadline <= limit:
            self._move(deadline)
            self.poll()

    def poll(self) -> PipelineEvent | None:
        now = self.clock.now()
        event = self.deb.poll(now, self.stat)
        self.polls += 1
        assert self.polls < 10_000, "the loop spins"
        if event is not None:
            self.fired.append(event)
        deadline = self.deb.next_deadline()
        assert deadline is None or deadline > now, "after a poll the next deadline lies ahead"
        return event

    def write(self, name: str, size: int, *, notify: bool = True, close: bool = False) -> None:
        """Write a file now and report it as the watcher would (unless its events are lost)."""
        self.writes += 1
        self.fs[name] = (size, self.writes)
        if notify:
            self.deb.file_changed(name, self.clock.now())
        if close:
            self.deb.file_closed(name, self.clock.now())

    def create(self, name: str) -> None:
        """open(name, "w"): created, then opened (inotify's IN_CREATE, IN_OPEN)."""
        self.writes += 1
        self.fs[name] = (0, self.writes)
        self.deb.file_changed(name, self.clock.now())
        self.deb.file_opened(name, self.clock.now())

    def append(self, name: str, size: int) -> None:
        """A write through a descriptor that stays open (IN_MODIFY)."""
        self.writes += 1
        self.fs[name] = (size, self.writes)
        self.deb.file_written(name, self.clock.now())

    def close(self, name: str) -> None:
        """The writer closes it (IN_CLOSE_WRITE)."""
        self.deb.file_closed(name, self.clock.now())

    def read(self, name: str, *, done: bool = True) -> None:
        """A reader opens it (IN_OPEN) and, when done, closes it (IN_CLOSE_NOWRITE)."""
        self.deb.file_opened(name, self.clock.now())
        if done:
            self.deb.file_released(name, self.clock.now())

    def _move(self, t: float) -> None:
        self.clock.advance(max(0.0, t - self.clock.now()))


def closing(**kwargs: Any) -> Loop:
    """A loop whose debouncer is told that close events arrive (the inotify observer)."""
    return Loop(Debouncer(close_events=True, **kwargs))


def test_with_nothing_pending_poll_returns_none_and_there_is_no_deadline() -> None:
    deb = Debouncer()
    assert not deb.pending() and deb.next_deadline() is None
    assert deb.poll(5.0, lambda name: pytest.fail(f"nothing to stat, asked for {name}")) is None


@pytest.mark.parametrize(("close", "after", "polls"), [(True, 1.0, 1), (False, 2.0, 2)])
def test_1000_file_events_within_2s_fire_exactly_once_after_quiet(
    close: bool, after: float, polls: int
) -> None:
    loop = Loop()
    for i in range(1000):
        loop.to(i * 0.002)
        loop.write(f"part-{i % 100}.csv", 100 + i, close=close)
    last = loop.clock.now()
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", f"part-{n}.csv") for n in range(100)}
    assert event.first_seen == 0.0 and event.fired_at == pytest.approx(last + after)
    assert loop.polls == polls and not loop.deb.pending()


def test_a_commit_and_a_data_drop_in_one_window_give_one_event_with_both() -> None:
    loop = Loop()
    loop.deb.ref_changed(MAIN, "c0ffee", 0.0)
    loop.to(0.5)
    loop.write("drop.csv", 10, close=True)
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("commit", f"{MAIN} c0ffee"), Cause("data", "drop.csv")}
    assert (event.first_seen, event.fired_at) == (0.0, 1.5)


def test_repeated_causes_coalesce_and_keep_the_earliest_arrival() -> None:
    deb = Debouncer()
    deb.manual("alice", 0.0)
    deb.scheduled("nightly", 0.25)
    deb.manual("alice", 0.5)
    assert deb.next_deadline() == 1.5
    assert deb.poll(1.25, dict[str, FileState]().get) is None
    event = deb.poll(1.5, dict[str, FileState]().get)
    assert event == PipelineEvent(
        frozenset({Cause("manual", "alice"), Cause("schedule", "nightly")}), 0.0, 1.5
    )


@pytest.mark.parametrize("kind", ["commit", "data"])
def test_a_steady_stream_every_half_second_fires_at_max_wait_and_loses_nothing(kind: str) -> None:
    loop, expected = Loop(), set()
    for i in range(120):  # 60 s of changes, never a quiet second
        loop.to(i * 0.5)
        if kind == "commit":
            loop.deb.ref_changed(MAIN, f"c{i}", loop.clock.now())
            expected.add(Cause("commit", f"{MAIN} c{i}"))
        else:
            loop.write(f"f{i}.csv", 10 + i)
            expected.add(Cause("data", f"f{i}.csv"))
    loop.settle()
    assert [(e.first_seen, e.fired_at) for e in loop.fired[:1]] == [(0.0, 30.0)]
    delivered = [cause for event in loop.fired for cause in event.causes]
    assert len(loop.fired) == 2 and len(delivered) == len(set(delivered)) and set(delivered) == expected


@pytest.mark.parametrize("notify", [True, False], ids=["watched", "events-lost"])
def test_a_file_appended_to_for_5s_fires_once_when_the_writer_stops(notify: bool) -> None:
    loop = Loop()
    loop.write("big.csv", 0)
    for i in range(1, 21):  # an append every 0.25 s, so each poll sees a larger file
        loop.to(i * 0.25)
        assert loop.fired == []
        loop.write("big.csv", i * 4096, notify=notify)
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", "big.csv")} and event.fired_at >= 6.0


def test_max_wait_fires_the_other_causes_but_a_growing_file_stays_pending() -> None:
    loop = Loop()
    loop.deb.ref_changed(MAIN, "abc", 0.0)
    for i in range(91):  # a slow copy: 45 s of appends
        loop.to(i * 0.5)
        loop.write("slow.csv", i * 1000)
    loop.settle()
    first, second = loop.fired
    assert first.causes == {Cause("commit", f"{MAIN} abc")} and first.fired_at == 30.0
    assert second.causes == {Cause("data", "slow.csv")} and second.fired_at == 47.0


def test_a_cause_arriving_beside_a_leftover_file_gets_its_own_quiet_and_max_wait() -> None:
    loop = Loop()
    loop.deb.ref_changed(MAIN, "c0", 0.0)
    for i in range(201):  # a slow copy: 100 s of appends
        loop.to(i * 0.5)
        loop.write("slow.csv", i * 1000)
        if i == 119:
            loop.deb.ref_changed(MAIN, "c1", loop.clock.now())
    loop.settle()
    assert [(sorted(c.detail for c in e.causes), e.fired_at) for e in loop.fired] == [
        ([f"{MAIN} c0"], 30.0),
        ([f"{MAIN} c1"], 89.5),
        (["slow.csv"], 102.0),
    ]


@pytest.mark.parametrize(
    "name", [".x.csv", "a.csv.tmp", "a.part", "a~", "notes.txt", ".staging/a.csv", "_SUCCESS"]
)
def test_temporary_and_foreign_names_never_count(name: str) -> None:
    loop = Loop()
    loop.deb.ref_changed(MAIN, "abc", 0.0)
    loop.to(0.5)
    loop.write(name, 10, close=True)
    assert loop.deb.next_deadline() == 1.0  # not even as activity
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("commit", f"{MAIN} abc")} and not loop.deb.pending()


def test_a_part_file_renamed_to_csv_counts() -> None:
    loop = Loop()
    loop.write("drop.part", 10)
    loop.to(3.0)
    loop.write("drop.part", 500, close=True)
    assert not loop.deb.pending()
    loop.fs["drop.csv"] = loop.fs.pop("drop.part")  # the rename, reported under both names
    loop.deb.file_changed("drop.part", 3.0)
    loop.deb.file_changed("drop.csv", 3.0)
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", "drop.csv")}
    assert event.fired_at == 5.0  # no close-write follows a rename: two windows


@pytest.mark.parametrize(("close", "fired_at"), [(True, 1.0), (False, 2.0)])
def test_close_write_makes_a_file_complete_without_a_second_window(close: bool, fired_at: float) -> None:
    loop = Loop()
    loop.write("a.csv", 10, close=close)
    loop.settle()
    assert [e.fired_at for e in loop.fired] == [fired_at]


def test_a_write_after_close_write_needs_its_windows_again() -> None:
    loop = Loop()
    loop.write("a.csv", 10, close=True)
    loop.to(0.5)
    loop.write("a.csv", 20)
    loop.settle()
    assert [e.fired_at for e in loop.fired] == [2.5]


def test_overflow_alone_asks_for_a_rescan() -> None:
    deb = Debouncer()
    deb.overflow(3.0)
    assert deb.next_deadline() == 4.0
    event = deb.poll(4.0, dict[str, FileState]().get)
    assert event is not None and event.causes == {Cause("rescan", OVERFLOW_DETAIL)}


def test_overflow_distrusts_close_writes_seen_before_it() -> None:
    loop = Loop()
    loop.write("a.csv", 10, close=True)
    loop.deb.overflow(0.0)
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", "a.csv"), Cause("rescan", OVERFLOW_DETAIL)}
    assert event.fired_at == 2.0


@pytest.mark.parametrize(("notify", "fired_at"), [(True, 2.5), (False, 3.0)])
def test_a_deleted_data_file_leaves_as_a_removed_cause(notify: bool, fired_at: float) -> None:
    loop = Loop()
    loop.write("a.csv", 10)
    loop.to(1.5)  # observed once at 1.0, then deleted
    del loop.fs["a.csv"]
    if notify:
        loop.deb.file_changed("a.csv", 1.5)
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", "a.csv removed")} and event.fired_at == fired_at


@pytest.mark.parametrize("marker", MARKERS)
def test_marker_mode_data_alone_never_fires_and_a_marker_releases_it(marker: str) -> None:
    loop = Loop(Debouncer(marker_names=MARKERS))
    loop.write("a.csv", 10, close=True)
    loop.write("b.csv", 20)
    loop.to(600.0)
    assert loop.fired == [] and loop.deb.pending() and loop.deb.next_deadline() is None
    loop.write(marker, 0, close=True)
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", "a.csv"), Cause("data", "b.csv"), Cause("data", marker)}
    assert (event.first_seen, event.fired_at) == (0.0, 602.0)  # b.csv was never closed: two windows
    assert not loop.deb.pending()


def test_marker_mode_a_commit_fires_alone_and_the_data_keeps_waiting() -> None:
    loop = Loop(Debouncer(marker_names=MARKERS))
    loop.write("a.csv", 10, close=True)
    del loop.fs["a.csv"]
    loop.write("b.csv", 10, close=True)
    loop.deb.ref_changed(MAIN, "abc", 0.0)
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("commit", f"{MAIN} abc")} and event.fired_at == 1.0
    loop.to(100.0)
    loop.write("_SUCCESS", 0, close=True)
    loop.settle()
    assert loop.fired[1].causes == {Cause("data", n) for n in ("a.csv removed", "b.csv", "_SUCCESS")}


def test_marker_mode_a_marker_waits_for_every_data_file_to_complete() -> None:
    loop = Loop(Debouncer(marker_names=MARKERS))
    loop.write("a.csv", 10)
    loop.write("_SUCCESS", 0, close=True)
    for i in range(1, 11):  # the producer is still appending after it wrote the marker
        loop.to(i * 0.5)
        loop.write("a.csv", 10 + i)
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", "a.csv"), Cause("data", "_SUCCESS")} and event.fired_at == 7.0


def test_marker_mode_max_wait_never_releases_part_of_a_drop() -> None:
    loop = Loop(Debouncer(marker_names=MARKERS))
    loop.write("done.csv", 10, close=True)
    loop.write("_SUCCESS", 0, close=True)
    loop.deb.ref_changed(MAIN, "abc", 0.0)
    for i in range(1, 81):  # another file of the drop is appended to for 40 s
        loop.to(i * 0.5)
        loop.write("late.csv", i)
    loop.settle()
    first, second = loop.fired
    assert first.causes == {Cause("commit", f"{MAIN} abc")} and first.fired_at == 30.0
    assert second.causes == {Cause("data", n) for n in ("done.csv", "late.csv", "_SUCCESS")}
    assert second.fired_at == 42.0


def test_a_vanished_marker_is_dropped_without_a_cause_or_a_stale_clock() -> None:
    loop = Loop(Debouncer(marker_names=MARKERS))
    loop.write("_SUCCESS", 0)
    del loop.fs["_SUCCESS"]
    loop.settle()
    assert loop.fired == [] and not loop.deb.pending()
    loop.to(29.5)
    loop.deb.manual("bob", 29.5)
    loop.settle()
    assert [e.fired_at for e in loop.fired] == [30.5]  # a full quiet window, not the old max_wait


@pytest.mark.parametrize(
    ("close", "deadlines"),
    [(True, [1.0]), (False, [1.0, 2.0])],
    ids=["closed-file", "open-file"],
)
def test_next_deadline_is_when_poll_next_has_something_to_do(close: bool, deadlines: list[float]) -> None:
    deb, fs = Debouncer(), {"a.csv": (10, 1)}
    deb.file_changed("a.csv", 0.0)
    if close:
        deb.file_closed("a.csv", 0.0)
    for deadline in deadlines:
        assert deb.next_deadline() == deadline
        event = deb.poll(deadline, fs.get)
    assert event is not None and event.fired_at == deadlines[-1] and deb.next_deadline() is None


def test_next_deadline_under_a_steady_stream_looks_at_files_early_and_stops_at_max_wait() -> None:
    deb, stat = Debouncer(quiet_s=1.0, max_wait_s=30.0), {"a.csv": (1, 1)}.get
    for i in range(56):  # a commit every 0.5 s up to 27.5 s
        deb.ref_changed(MAIN, f"c{i}", i * 0.5)
        assert deb.next_deadline() == i * 0.5 + 1.0  # the trailing quiet window
    deb.file_changed("a.csv", 27.5)
    assert deb.next_deadline() == 28.0  # two windows before max_wait, so the file can prove complete
    assert deb.poll(28.0, stat) is None
    for i in range(56, 60):
        deb.ref_changed(MAIN, f"c{i}", i * 0.5)
    assert deb.next_deadline() == 30.0  # max_wait, not the quiet window (30.5)
    event = deb.poll(30.0, stat)
    assert event is not None and event.fired_at == 30.0 and len(event.causes) == 61


@pytest.mark.parametrize(
    ("quiet_s", "max_wait_s"), [(0.0, 30.0), (-1.0, 30.0), (2.0, 1.0), (float("nan"), 30.0)]
)
def test_nonsense_windows_are_configuration_errors(quiet_s: float, max_wait_s: float) -> None:
    with pytest.raises(ConfigError):
        Debouncer(quiet_s=quiet_s, max_wait_s=max_wait_s)


# -- close events (inotify): a file written in place is complete only after its close ---------------


def test_a_file_written_in_chunks_while_open_never_fires_until_its_close() -> None:
    loop = closing()
    loop.create("drop.csv")
    loop.deb.manual("alice", 0.0)
    for i in range(3):  # the observed defect: chunks 1.6 s apart through one open descriptor
        loop.to(i * 1.6)
        loop.append("drop.csv", 5_000 * (i + 1))
    loop.to(100.0)  # far beyond max_wait: the max wait releases the other cause, never the open file
    [manual] = loop.fired
    assert manual.causes == {Cause("manual", "alice")} and manual.fired_at == 30.0
    assert loop.deb.pending() and loop.polls < 10
    loop.close("drop.csv")
    loop.settle()
    data = loop.fired[1]
    assert data.causes == {Cause("data", "drop.csv")} and data.fired_at == 101.0
    assert not loop.deb.pending()


def test_without_close_events_the_same_chunks_fire_while_the_file_is_still_open() -> None:
    loop = Loop()  # close_events=False: what the daemon did before, and does under a polling observer
    loop.create("drop.csv")
    for i in range(3):
        loop.to(i * 1.6)
        loop.append("drop.csv", 5_000 * (i + 1))
    loop.to(100.0)
    [event] = loop.fired
    assert event.causes == {Cause("data", "drop.csv")} and event.fired_at == pytest.approx(5.2)


@pytest.mark.parametrize("close_events", [True, False], ids=["close-events", "no-close-events"])
def test_without_close_events_writes_are_plain_changes_and_opens_do_not_count(close_events: bool) -> None:
    """The same history, reported with file_written and opens or with file_changed only, fires alike
    without close events; with them, only the version with its close fires."""
    histories = {}
    for style in ("inotify", "plain"):
        loop = Loop(Debouncer(close_events=close_events))
        for i in range(1, 21):  # an append every 0.25 s, then the writer stops (and never closes)
            loop.to(i * 0.25)
            loop.append("big.csv", i) if style == "inotify" else loop.write("big.csv", i)
            if style == "inotify" and i == 1:
                loop.read("big.csv", done=False)
        loop.settle()
        histories[style] = [(set(e.causes), e.fired_at) for e in loop.fired]
    assert histories["plain"] == [({Cause("data", "big.csv")}, 7.0)]
    assert histories["inotify"] == ([] if close_events else histories["plain"])


def test_a_copied_file_fires_one_quiet_window_after_its_close() -> None:
    loop = closing()
    loop.create("a.csv")  # cp: created, opened, modified..., closed
    for i in range(1, 9):
        loop.to(i * 0.5)
        loop.append("a.csv", i * 4096)
    loop.close("a.csv")
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", "a.csv")} and event.fired_at == 5.0


def test_a_file_opened_before_its_first_write_waits_for_the_close() -> None:
    loop = closing()
    loop.create("a.csv")  # open(..., "w"), nothing written yet: empty and unchanging, but open
    loop.to(10.0)
    assert loop.fired == []
    loop.append("a.csv", 100)
    loop.to(12.0)
    loop.close("a.csv")
    loop.settle()
    assert [(set(e.causes), e.fired_at) for e in loop.fired] == [({Cause("data", "a.csv")}, 13.0)]


def test_a_second_writer_keeps_the_file_pending_after_the_first_closes() -> None:
    loop = closing()
    loop.create("a.csv")
    loop.deb.file_opened("a.csv", 0.0)  # another descriptor, e.g. a second writer process
    loop.append("a.csv", 10)
    loop.close("a.csv")
    loop.to(5.0)
    assert loop.fired == []
    loop.append("a.csv", 20)
    loop.close("a.csv")
    loop.settle()
    assert [e.fired_at for e in loop.fired] == [6.0]


@pytest.mark.parametrize("how", ["renamed", "moved-in-from-elsewhere"])
def test_a_moved_in_file_fires_once_its_stat_is_stable_over_two_windows(how: str) -> None:
    loop = closing()
    if how == "renamed":  # written as a .part (ignored), closed, then renamed: inotify's "moved"
        loop.create("drop.csv.part")
        loop.append("drop.csv.part", 500)
        loop.close("drop.csv.part")
        loop.fs["drop.csv"] = loop.fs.pop("drop.csv.part")
        loop.deb.file_changed("drop.csv.part", 0.0)
    else:  # a rename from outside the watched directory: inotify says "created", and nothing else
        loop.fs["drop.csv"] = (500, 1)
    loop.deb.file_changed("drop.csv", 0.0)
    loop.to(0.5)
    loop.read("drop.csv")  # the daemon or a person reads it: not a change, no hold once closed
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", "drop.csv")} and event.fired_at == 2.0


def test_a_reader_holds_a_pending_file_until_it_closes_it() -> None:
    loop = closing()
    loop.write("drop.csv", 500)  # moved in
    loop.to(0.5)
    loop.read("drop.csv", done=False)
    loop.to(10.0)
    assert loop.fired == [] and loop.deb.next_deadline() == 30.0  # no polling while it is open
    loop.deb.file_released("drop.csv", 10.0)
    loop.settle()
    assert [e.fired_at for e in loop.fired] == [11.0]  # not looked at while open: two polls from now


def test_opening_or_reading_a_file_that_is_not_pending_is_not_a_change() -> None:
    loop = closing()
    loop.read("a.csv")  # e.g. the daemon hashing the data directory
    loop.read("b.csv", done=False)
    assert not loop.deb.pending() and loop.deb.next_deadline() is None
    loop.deb.ref_changed(MAIN, "abc", 0.0)
    loop.to(0.5)
    loop.read("c.csv")
    loop.settle()
    assert [(set(e.causes), e.fired_at) for e in loop.fired] == [({Cause("commit", f"{MAIN} abc")}, 1.0)]


def test_a_write_after_the_close_waits_for_the_next_close() -> None:
    loop = closing()
    loop.create("a.csv")
    loop.append("a.csv", 10)
    loop.close("a.csv")
    loop.to(0.5)
    loop.deb.file_opened("a.csv", 0.5)  # opened again to append
    loop.append("a.csv", 20)
    loop.to(50.0)
    assert loop.fired == []
    loop.close("a.csv")
    loop.settle()
    assert [e.fired_at for e in loop.fired] == [51.0]


def test_marker_mode_a_file_still_open_keeps_the_whole_drop_back() -> None:
    loop = Loop(Debouncer(marker_names=MARKERS, close_events=True))
    loop.create("a.csv")
    loop.append("a.csv", 10)
    loop.write("_SUCCESS", 0, close=True)
    loop.deb.ref_changed(MAIN, "abc", 0.0)
    loop.to(40.0)
    [commit] = loop.fired
    assert commit.causes == {Cause("commit", f"{MAIN} abc")} and commit.fired_at == 30.0
    loop.close("a.csv")
    loop.settle()
    assert loop.fired[1].causes == {Cause("data", "a.csv"), Cause("data", "_SUCCESS")}
    assert loop.fired[1].fired_at == 41.0


def test_overflow_forgets_opens_and_writes_and_judges_by_stat() -> None:
    loop = closing()
    loop.create("a.csv")
    loop.append("a.csv", 10)  # its close may have been among the lost events
    loop.to(5.0)
    loop.deb.overflow(5.0)
    loop.settle()
    [event] = loop.fired
    assert event.causes == {Cause("data", "a.csv"), Cause("rescan", OVERFLOW_DETAIL)}
    assert event.fired_at == 7.0  # two windows, as for any file whose history is unknown


def test_after_an_overflow_a_new_write_waits_for_its_close_again() -> None:
    loop = closing()
    loop.create("a.csv")
    loop.deb.overflow(0.0)
    loop.append("a.csv", 10)
    loop.to(45.0)
    assert [(set(e.causes), e.fired_at) for e in loop.fired] == [({Cause("rescan", OVERFLOW_DETAIL)}, 30.0)]
    loop.close("a.csv")
    loop.settle()
    assert [(set(e.causes), e.fired_at) for e in loop.fired[1:]] == [({Cause("data", "a.csv")}, 46.0)]
