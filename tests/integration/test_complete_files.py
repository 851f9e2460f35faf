"""Complete files only: a real watchdog `Watcher` on a directory feeds the real `Debouncer` through a
loop shaped like `Service._step`, and a data file counts only once its writer has closed it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest
from watchdog.observers import Observer, ObserverType
from watchdog.observers.polling import PollingObserver

from daemon.adapters.watch import RawEvent, Watcher
from daemon.core.debounce import Cause, Debouncer, FileState, PipelineEvent

QUIET_S = 1.0
CHUNK = "sentiment,text\n" + "positive,a line of a data file that is written in chunks\n" * 100


@dataclass(frozen=True)
class Fired:
    event: PipelineEvent
    at: float  # time.monotonic() when it fired
    sizes: dict[str, int]  # each data file's size when it fired


class DebounceLoop:
    """`Service._step` in miniature: drain the watcher's queue, poll at the debouncer's deadline."""

    def __init__(self, debouncer: Debouncer, raw: queue.Queue[RawEvent], data_dir: Path) -> None:
        self.debouncer, self.raw, self.data_dir = debouncer, raw, data_dir
        self.fired: list[Fired] = []
        self.stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=10)

    def wait_for(self, count: int, timeout: float) -> list[Fired]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.fired) >= count, timeout)
            assert len(self.fired) >= count, f"{len(self.fired)} events within {timeout} s: {self.fired}"
            return list(self.fired)

    def _run(self) -> None:
        while not self.stop.is_set():
            deadline = self.debouncer.next_deadline()
            timeout = 0.2 if deadline is None else min(0.2, max(0.01, deadline - time.monotonic()))
            try:
                self._observe(self.raw.get(timeout=timeout))
                while True:
                    self._observe(self.raw.get_nowait())
            except queue.Empty:
                pass
            event = self.debouncer.poll(time.monotonic(), self._stat)
            if event is not None:
                files = [c.detail for c in event.causes if c.source == "data"]
                sizes = {name: self.data_dir.joinpath(name).stat().st_size for name in files}
                with self._changed:
                    self.fired.append(Fired(event, time.monotonic(), sizes))
                    self._changed.notify_all()

    def _observe(self, ev: RawEvent) -> None:
        deb, now = self.debouncer, time.monotonic()
        file_events: dict[str, Callable[[str, float], None]] = {
            "file_changed": deb.file_changed,
            "file_written": deb.file_written,
            "file_opened": deb.file_opened,
            "file_closed": deb.file_closed,
            "file_released": deb.file_released,
        }
        if ev.kind in file_events:
            file_events[ev.kind](ev.name, now)
        elif ev.kind == "manual":
            deb.manual(ev.name, now)

    def _stat(self, name: str) -> FileState:
        try:
            st = (self.data_dir / name).stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)


Watch = Callable[..., tuple[DebounceLoop, Watcher]]


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Watch]:
    data = tmp_path / "data"
    data.mkdir()
    git_dir = Path(pygit2.init_repository(str(tmp_path / "repo")).path)
    started: list[tuple[DebounceLoop, Watcher]] = []

    def start(
        max_wait_s: float = 30.0, observer_cls: ObserverType = Observer
    ) -> tuple[DebounceLoop, Watcher]:
        raw: queue.Queue[RawEvent] = queue.Queue()
        watcher = Watcher(data, git_dir, raw, observer_cls=observer_cls)
        debouncer = Debouncer(QUIET_S, max_wait_s, close_events=watcher.close_events)
        loop = DebounceLoop(debouncer, raw, data)
        watcher.start()
        loop.start()
        started.append((loop, watcher))
        return loop, watcher

    yield start
    for loop, watcher in started:
        watcher.stop()
        loop.close()


def pause(seconds: float) -> None:
    """The writer's own pace: the scenario, not a wait for the code under test."""
    threading.Event().wait(seconds)


def test_a_file_written_in_chunks_while_open_fires_only_after_its_close_with_its_final_size(
    watch: Watch, tmp_path: Path
) -> None:
    loop, watcher = watch(max_wait_s=2.0)  # the file stays open longer than the maximum wait
    assert watcher.close_events, "the inotify observer reports closes"
    path = tmp_path / "data" / "drop.csv"
    with path.open("w") as f:
        loop.raw.put(RawEvent("manual", "alice"))
        for i in range(3):  # the observed defect: chunks 1.6 s apart, one open descriptor
            if i:
                pause(1.6)
            f.write(CHUNK)
            f.flush()
        pause(2.5)  # still open, unchanged for more than two quiet windows
        closed_at = time.monotonic()
    manual, *data = loop.wait_for(2, timeout=30)
    assert manual.event.causes == {Cause("manual", "alice")} and manual.at < closed_at  # the max wait
    assert [(set(f.event.causes), f.at > closed_at, f.sizes) for f in data] == [
        ({Cause("data", "drop.csv")}, True, {"drop.csv": 3 * len(CHUNK)})
    ]


def test_a_copied_file_fires_after_its_close_with_its_full_size(watch: Watch, tmp_path: Path) -> None:
    loop, _ = watch()
    source = tmp_path / "source.csv"
    source.write_text(CHUNK * 50)
    (tmp_path / "data" / "copy.csv").write_bytes(source.read_bytes())  # cp: created, opened, ..., closed
    closed_at = time.monotonic()
    [fired] = loop.wait_for(1, timeout=30)
    assert fired.event.causes == {Cause("data", "copy.csv")} and fired.sizes == {"copy.csv": 50 * len(CHUNK)}
    assert fired.at >= closed_at + QUIET_S


@pytest.mark.parametrize("source", ["part-file", "outside"])
def test_a_file_moved_in_fires_once_its_stat_is_stable(watch: Watch, tmp_path: Path, source: str) -> None:
    loop, _ = watch()
    staged = tmp_path / "data" / ".drop.csv.part" if source == "part-file" else tmp_path / "drop.csv"
    staged.write_text(CHUNK * 3)
    staged.rename(tmp_path / "data" / "drop.csv")  # no close follows a rename
    renamed_at = time.monotonic()
    [fired] = loop.wait_for(1, timeout=30)
    assert fired.event.causes == {Cause("data", "drop.csv")} and fired.sizes == {"drop.csv": 3 * len(CHUNK)}
    assert fired.at >= renamed_at + QUIET_S  # its stat unchanged across a quiet window


def test_without_close_events_a_polling_observer_still_admits_a_written_file(
    watch: Watch, tmp_path: Path
) -> None:
    loop, watcher = watch(observer_cls=PollingObserver)
    assert not watcher.close_events
    (tmp_path / "data" / "polled.csv").write_text(CHUNK)
    [fired] = loop.wait_for(1, timeout=30)
    assert fired.event.causes == {Cause("data", "polled.csv")} and fired.sizes == {"polled.csv": len(CHUNK)}
