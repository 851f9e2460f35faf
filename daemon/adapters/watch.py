"""watchdog behind a thin adapter: raw filesystem and git-ref changes as `RawEvent`s on a queue."""

from __future__ import annotations

import contextlib
import logging
import queue
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer, ObserverType
from watchdog.utils import UnsupportedLibcError


@dataclass(frozen=True)
class RawEvent:
    """One observation, before debouncing. kind: file_changed (created, deleted, moved in or out),
    file_written (modified in place), file_opened, file_closed (closed after writing), file_released
    (closed without writing), ref_changed, overflow, manual, forced (manual, bypassing the stage cache),
    scheduled, reconcile. name: a data file name relative to the data directory, a ref path, or who
    asked."""

    kind: str
    name: str = ""


def _as_text(path: bytes | str) -> str:
    return path.decode() if isinstance(path, bytes) else path


def close_events_available(observer_cls: ObserverType = Observer) -> bool:
    """Whether observers of this class report opens and closes (inotify's do; polling ones cannot)."""
    with contextlib.suppress(UnsupportedLibcError):  # no inotify in this libc
        from watchdog.observers.inotify import InotifyObserver

        return isinstance(observer_cls, type) and issubclass(observer_cls, InotifyObserver)
    return False


# watchdog event type -> RawEvent kind, for files directly in the data directory ("moved": both names)
_DATA_KINDS = {
    "created": "file_changed",
    "deleted": "file_changed",
    "modified": "file_written",
    "opened": "file_opened",
    "closed": "file_closed",
    "closed_no_write": "file_released",
}


class _DataHandler(FileSystemEventHandler):
    def __init__(self, root: Path, sink: queue.Queue[RawEvent]) -> None:
        self.root, self.sink = root, sink

    def _emit(self, kind: str, path: str) -> None:
        p = Path(path)
        if p.parent == self.root:  # only direct children: drops are flat
            self.sink.put(RawEvent(kind, p.name))

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory and not isinstance(event, DirDeletedEvent):
            return
        if isinstance(event, FileMovedEvent):
            self._emit("file_changed", _as_text(event.src_path))  # gone from its old name
            self._emit("file_changed", _as_text(event.dest_path))  # a rename: no close will follow
        elif event.event_type in _DATA_KINDS:  # attribute changes are left to the debouncer's stat
            self._emit(_DATA_KINDS[event.event_type], _as_text(event.src_path))


class _RefsHandler(FileSystemEventHandler):
    """Any change to HEAD, packed-refs or refs/heads/* (git writes X.lock, then renames to X)."""

    def __init__(self, git_dir: Path, sink: queue.Queue[RawEvent]) -> None:
        self.git_dir, self.sink = git_dir, sink

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type in ("opened", "closed_no_write"):
            return
        path = _as_text(getattr(event, "dest_path", "") or event.src_path)
        if path.endswith(".lock"):
            return
        rel = Path(path).relative_to(self.git_dir).as_posix()
        if rel in ("HEAD", "packed-refs") or rel.startswith("refs/heads/"):
            self.sink.put(RawEvent("ref_changed", rel))


class _OverflowTap(logging.Handler):
    """watchdog only logs an inotify queue overflow; turn that log record into a rescan event."""

    def __init__(self, sink: queue.Queue[RawEvent]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.sink.put(RawEvent("overflow"))


class Watcher:
    """Observers on the data directory and the repository's refs, feeding one queue.

    `close_events` says whether file_opened, file_closed and file_released will arrive (inotify), so
    the debouncer knows whether a written file can wait for its close or must be judged by its stat.
    """

    def __init__(
        self,
        data_dir: Path,
        git_dir: Path,
        sink: queue.Queue[RawEvent],
        observer_cls: ObserverType = Observer,
    ) -> None:
        self.observer = observer_cls()  # watchdog 7's inotify threads block on the fd, no timeout
        self.observer.name = "watch"
        self.close_events = close_events_available(observer_cls)
        self.observer.schedule(_DataHandler(data_dir.resolve(), sink), str(data_dir), recursive=False)
        self.observer.schedule(_RefsHandler(git_dir.resolve(), sink), str(git_dir), recursive=False)
        refs = git_dir / "refs" / "heads"
        self.observer.schedule(_RefsHandler(git_dir.resolve(), sink), str(refs), recursive=True)
        self._tap = _OverflowTap(sink)

    def start(self) -> None:
        logging.getLogger("watchdog.observers.inotify_c").addHandler(self._tap)
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
        logging.getLogger("watchdog.observers.inotify_c").removeHandler(self._tap)
