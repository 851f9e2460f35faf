"""The watchdog adapter: which `RawEvent` each watchdog event becomes, and whether closes will come."""

from __future__ import annotations

import logging
import queue
from pathlib import Path

import pytest
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
)
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from daemon.adapters.watch import RawEvent, Watcher, _DataHandler, _OverflowTap, close_events_available

ROOT = Path("/data")


def raw_events(*events: FileSystemEvent) -> list[RawEvent]:
    sink: queue.Queue[RawEvent] = queue.Queue()
    handler = _DataHandler(ROOT, sink)
    for event in events:
        handler.dispatch(event)
    return [sink.get_nowait() for _ in range(sink.qsize())]


@pytest.mark.parametrize(
    ("event", "kind"),
    [
        (FileCreatedEvent("/data/a.csv"), "file_changed"),
        (FileDeletedEvent("/data/a.csv"), "file_changed"),
        (FileModifiedEvent("/data/a.csv"), "file_written"),
        (FileOpenedEvent("/data/a.csv"), "file_opened"),
        (FileClosedEvent("/data/a.csv"), "file_closed"),
        (FileClosedNoWriteEvent("/data/a.csv"), "file_released"),
    ],
)
def test_each_inotify_file_event_has_its_own_kind(event: FileSystemEvent, kind: str) -> None:
    assert raw_events(event) == [RawEvent(kind, "a.csv")]


def test_open_write_close_as_inotify_reports_it() -> None:
    events = raw_events(
        FileCreatedEvent("/data/a.csv"),
        FileOpenedEvent("/data/a.csv"),
        FileModifiedEvent("/data/a.csv"),
        FileModifiedEvent("/data/a.csv"),
        FileClosedEvent("/data/a.csv"),
        FileAttribEvent("/data/a.csv"),  # cp's chmod: left to the debouncer's stat
    )
    assert [e.kind for e in events] == [
        "file_changed",
        "file_opened",
        "file_written",
        "file_written",
        "file_closed",
    ]


def test_a_rename_reports_both_names_as_changes_and_no_write() -> None:
    assert raw_events(FileMovedEvent("/data/.a.csv.part", "/data/a.csv")) == [
        RawEvent("file_changed", ".a.csv.part"),
        RawEvent("file_changed", "a.csv"),
    ]


def test_subdirectories_and_directory_events_are_not_data() -> None:
    assert (
        raw_events(
            FileModifiedEvent("/data/sub/a.csv"),
            FileClosedEvent("/data/sub/a.csv"),
            DirCreatedEvent("/data/sub"),
            DirModifiedEvent("/data"),
        )
        == []
    )
    assert raw_events(DirDeletedEvent("/data/sub")) == [RawEvent("file_changed", "sub")]


def test_an_overflow_log_record_becomes_a_rescan_event() -> None:
    sink: queue.Queue[RawEvent] = queue.Queue()
    tap = _OverflowTap(sink)
    tap.handle(logging.LogRecord("watchdog", logging.WARNING, "", 0, "inotify queue overflow", (), None))
    tap.handle(logging.LogRecord("watchdog", logging.WARNING, "", 0, "something else", (), None))
    assert [sink.get_nowait() for _ in range(sink.qsize())] == [RawEvent("overflow")]


@pytest.mark.parametrize(("observer_cls", "closes"), [(InotifyObserver, True), (PollingObserver, False)])
def test_the_watcher_says_whether_its_observer_reports_closes(
    tmp_path: Path, observer_cls: type[InotifyObserver] | type[PollingObserver], closes: bool
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "git" / "refs" / "heads").mkdir(parents=True)
    watcher = Watcher(tmp_path / "data", tmp_path / "git", queue.Queue(), observer_cls=observer_cls)
    assert isinstance(watcher.observer, observer_cls)
    assert watcher.close_events is closes is close_events_available(observer_cls)


def test_the_default_observer_on_linux_reports_closes() -> None:
    assert close_events_available()
