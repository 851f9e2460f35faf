"""Debouncer: a pure state machine that turns raw change notifications into pipeline events."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath
from typing import TypeAlias

from daemon.core.errors import ConfigError

FileState: TypeAlias = tuple[int, int] | None  # (size, mtime_ns), or None when the file is gone
Stat: TypeAlias = Callable[[str], FileState]  # name relative to the data directory -> its state

OVERFLOW_DETAIL = "watch queue overflowed"


@dataclass(frozen=True)
class Cause:
    """Why a pipeline run is wanted."""

    source: str  # "commit" | "data" | "schedule" | "manual" | "rescan" | "force" (`trigger --force`)
    detail: str  # "<ref> <commit>", a data file name or "<name> removed", a job id, who asked


@dataclass(frozen=True)
class PipelineEvent:
    """One request for a pipeline run, carrying every cause coalesced into it."""

    causes: frozenset[Cause]
    first_seen: float  # when the earliest of its causes arrived (seconds on the caller's clock)
    fired_at: float


@dataclass
class _File:
    """A pending data or marker file: the state last seen and when it counts as complete."""

    first_seen: float
    marker: bool
    closed: bool = False  # close-after-write seen since the last change
    written: bool = False  # written in place, and no close-after-write since (close events only)
    opens: int = 0  # opens seen minus closes seen: a writer may still hold it (close events only)
    state: FileState = None
    complete_at: float | None = None  # None: not looked at since its last event


class Debouncer:
    """Coalesces causes into `PipelineEvent`s; time comes in as `now` seconds, file state through `stat`.

    - Trailing window: `poll` fires once `quiet_s` has passed since the last relevant observation (an
      accepted event, or a change `poll` itself saw in a pending file), or once `max_wait_s` has passed
      on the batch clock, which starts at the first cause of a batch, so a steady stream still fires.
    - Names are relative to the data directory. Ignored: any path component matching `ignore`; data:
      the name matches a `data_globs` pattern; a basename matching `marker_names` is a marker even
      when `ignore` would hide it (".ready"). Everything else never counts, not even as activity.
    - With close events (`close_events`: the watcher reports inotify's open, close-write and
      close-nowrite), a file written in place (`file_written`) or held open (`file_opened`; readers too,
      as inotify does not say how a file was opened) is not complete, however long it waits, until a
      close-after-write (`file_closed`) follows its last write and every open seen has been closed;
      then it is complete once its `stat` is unchanged since the first poll after that close. A file
      that only appeared (`file_changed`: renamed or linked in, or created and never opened) needs its
      `stat` unchanged between two polls a full quiet window apart (a loop that polls as events
      arrive makes that one window after the rename): no close follows a rename, so a stable `stat`
      is the evidence left, and a rename is not taken as proof on its own that the writer is done.
    - Without close events (a polling observer), `file_written` is a plain change and opens are not
      counted: every file needs its `stat` unchanged across two polls a quiet window apart (or since
      the first poll after a close-write, should one be reported), as before close events were used.
    - An incomplete file holds the whole event back until `max_wait_s`; then the other causes (and the
      complete files) fire and the file stays pending: a slow copy, or a file held open for longer
      than `max_wait_s`, never starts a run until the writer is done. What is left over restarts the
      batch clock, and so does the next new cause to arrive.
    - A pending file whose `stat` is None leaves as Cause("data", "<name> removed"); a marker that
      vanishes is dropped silently. Watchers may report deletions and moves-out through file_changed.
    - Marker mode (`marker_names` non-empty): data files alone never fire and do not start the batch
      clock; a marker releases the whole drop (data, removals, markers) once every pending file is
      complete, never a part of it. Commits and the other causes fire on their own as usual.
    - Inotify overflow adds Cause("rescan", ...) and makes every pending file prove itself again by
      its `stat` across a quiet window: the opens, writes and closes seen so far are forgotten, as
      some were lost. A later write event makes a file wait for its close again.
    """

    def __init__(
        self,
        quiet_s: float = 1.0,
        max_wait_s: float = 30.0,
        ignore: tuple[str, ...] = (".*", "*.tmp", "*.part", "*~"),
        data_globs: tuple[str, ...] = ("*.csv",),
        marker_names: tuple[str, ...] = (),
        close_events: bool = False,
    ) -> None:
        if not quiet_s > 0 or not max_wait_s >= quiet_s:
            raise ConfigError(f"debounce needs 0 < quiet_s <= max_wait_s, got {quiet_s} and {max_wait_s}")
        self.quiet_s, self.max_wait_s = quiet_s, max_wait_s
        self.ignore, self.data_globs, self.marker_names = ignore, data_globs, marker_names
        self.close_events = close_events  # whether file_closed will follow every write (inotify)
        self._causes: dict[Cause, float] = {}  # non-file causes -> when they first arrived
        self._files: dict[str, _File] = {}
        self._removed: dict[str, float] = {}  # vanished data files -> when they first arrived
        self._last = -math.inf  # the last relevant observation
        self._start: float | None = None  # the batch clock that max_wait_s counts from
        self._rearmed = False  # the clock was restarted for leftovers; a new cause may restart it

    def ref_changed(self, ref: str, commit: str, now: float) -> None:
        self._add(Cause("commit", f"{ref} {commit}"), now)

    def manual(self, who: str, now: float, force: bool = False) -> None:
        """A person asked; with force, the run does not use the stage cache."""
        self._add(Cause("manual", who), now)
        if force:
            self._add(Cause("force", who), now)

    def scheduled(self, job_id: str, now: float) -> None:
        self._add(Cause("schedule", job_id), now)

    def overflow(self, now: float) -> None:
        """Events were lost: ask for a rescan, and trust no close-write seen so far."""
        for f in self._files.values():
            f.closed, f.written, f.opens, f.complete_at = False, False, 0, None
        self._add(Cause("rescan", OVERFLOW_DETAIL), now)

    def file_changed(self, name: str, now: float) -> None:
        """Created, deleted, moved in or out: no write is known to be under way."""
        self._track(name, now, closed=False)

    def file_written(self, name: str, now: float) -> None:
        """Written in place: with close events, incomplete until a close-after-write follows."""
        f = self._track(name, now, closed=False)
        if f is not None and self.close_events:
            f.written = True

    def file_closed(self, name: str, now: float) -> None:
        """Closed after writing (inotify's IN_CLOSE_WRITE)."""
        f = self._track(name, now, closed=True)
        if f is not None:
            f.written, f.opens = False, max(0, f.opens - 1)

    def file_opened(self, name: str, now: float) -> None:
        """Opened (for reading or writing): holds a pending file until it is closed; not a change."""
        f = self._files.get(PurePosixPath(name).as_posix())
        if f is not None and self.close_events:
            f.opens += 1

    def file_released(self, name: str, now: float) -> None:
        """Closed without writing: the end of an open; not a change, and never starts tracking a file."""
        f = self._files.get(PurePosixPath(name).as_posix())
        if f is not None and self.close_events:
            f.opens = max(0, f.opens - 1)

    def pending(self) -> bool:
        return bool(self._causes or self._files or self._removed)

    def poll(self, now: float, stat: Stat) -> PipelineEvent | None:
        """Look at every pending file, then fire if the quiet window or the maximum wait allows."""
        if not self.pending():
            return None
        self._observe(now, stat)
        if not self._clock_needed():
            self._start = None  # e.g. the only marker vanished: the next cause gets a clock of its own
        causes, done, removed, blocked = self._collect(now)
        forced = self._start is not None and now >= self._start + self.max_wait_s
        if causes and (forced or (now >= self._last + self.quiet_s and not blocked)):
            for name in done:
                del self._files[name]
            for name in removed:
                del self._removed[name]
            self._causes.clear()
            self._rearm(now)
            return PipelineEvent(frozenset(causes), min(causes.values()), now)
        if forced:
            self._rearm(now)
        return None

    def next_deadline(self) -> float | None:
        """The earliest time `poll` could fire or must look at files; None: wait for the next event.

        After any poll the deadline lies beyond that poll, so a loop that waits for it never spins.
        """
        if not self.pending():
            return None
        quiet_at = self._last + self.quiet_s
        force_at = None if self._start is None else self._start + self.max_wait_s
        times = [] if force_at is None else [force_at]
        files = self._relevant()
        timed = [f for f in files.values() if not self._held(f)]  # held ones wait for an event
        seen = [f.complete_at for f in timed if f.complete_at is not None]
        if len(seen) < len(timed):
            # Look early enough that these files can prove complete before the maximum wait.
            times.append(quiet_at if force_at is None else min(quiet_at, force_at - 2 * self.quiet_s))
        elif len(timed) < len(files):
            pass  # a file still open holds the event back: only its close or the maximum wait can help
        elif self._causes or files or (self._removed and not self.marker_names):
            times.append(max([quiet_at, *seen]))
        return min(times) if times else None

    def _add(self, cause: Cause, now: float) -> None:
        new = cause not in self._causes
        self._causes[cause] = min(self._causes.get(cause, now), now)
        self._note(now, new=new, eligible=True)

    def _track(self, name: str, now: float, *, closed: bool) -> _File | None:
        path = PurePosixPath(name)
        kind = self._kind(path)
        if kind is None:
            return None
        key = path.as_posix()
        new = key not in self._files
        f = self._files.setdefault(key, _File(first_seen=now, marker=kind == "marker"))
        f.closed, f.complete_at = closed, None
        self._note(now, new=new, eligible=self._eligible(f))
        return f

    def _held(self, f: _File) -> bool:
        """Whether a file is still being written or open: no stat or time can make it complete."""
        return self.close_events and (f.written or f.opens > 0)

    def _kind(self, path: PurePosixPath) -> str | None:
        """Whether a name is a marker, a data file, or (None) never counts."""
        parts = path.parts
        if not parts or any(fnmatchcase(p, pat) for p in parts[:-1] for pat in self.ignore):
            return None
        if any(fnmatchcase(parts[-1], m) for m in self.marker_names):
            return "marker"
        if any(fnmatchcase(parts[-1], pat) for pat in self.ignore):
            return None
        return "data" if any(fnmatchcase(path.as_posix(), g) for g in self.data_globs) else None

    def _note(self, now: float, *, new: bool, eligible: bool) -> None:
        self._last = max(self._last, now)
        if eligible and (self._start is None or (new and self._rearmed)):
            self._start, self._rearmed = now, False

    def _eligible(self, f: _File) -> bool:
        """Whether a file may start the batch clock: in marker mode only markers do."""
        return f.marker or not self.marker_names

    def _clock_needed(self) -> bool:
        """Whether anything pending may start the batch clock (dormant marker-mode data does not)."""
        if self._causes or any(self._eligible(f) for f in self._files.values()):
            return True
        return bool(self._removed) and not self.marker_names

    def _rearm(self, now: float) -> None:
        """Restart the batch clock for whatever is left over after a forced poll or a firing."""
        self._start, self._rearmed = (now if self._clock_needed() else None), True

    def _observe(self, now: float, stat: Stat) -> None:
        for name, f in list(self._files.items()):
            state = stat(name)
            if state is None:
                del self._files[name]
                if not f.marker:
                    self._removed.setdefault(name, f.first_seen)
                if f.complete_at is not None:  # it vanished without an event: that is a change
                    self._last = max(self._last, now)
            elif f.complete_at is None:
                f.state, f.complete_at = state, now if f.closed else now + self.quiet_s
            elif state != f.state:
                f.state, f.closed, f.complete_at = state, False, now + self.quiet_s
                self._last = max(self._last, now)

    def _relevant(self) -> dict[str, _File]:
        """Files whose completeness matters now: in marker mode, data is not looked at before a marker."""
        if self.marker_names and not any(f.marker for f in self._files.values()):
            return {}
        return self._files

    def _collect(self, now: float) -> tuple[dict[Cause, float], list[str], list[str], bool]:
        """What could fire now (cause -> first seen), the files and removals it takes, and whether an
        incomplete file holds the event back."""
        files = self._relevant()
        done = [
            n
            for n, f in files.items()
            if not self._held(f) and f.complete_at is not None and now >= f.complete_at
        ]
        blocked = len(done) < len(files)
        if self.marker_names and blocked:
            done = []  # a drop is released whole or not at all
        released = not self.marker_names or (bool(files) and not blocked)
        removed = list(self._removed) if released else []
        causes = dict(self._causes)
        causes.update({Cause("data", n): self._files[n].first_seen for n in done})
        causes.update({Cause("data", f"{n} removed"): self._removed[n] for n in removed})
        return causes, done, removed, blocked
