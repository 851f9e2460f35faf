"""The daemon's loop: watch -> debounce -> queue -> stages -> record, one run at a time.

The main thread owns the debouncer and the run queue; watchers, the scheduler and the control
socket only put `RawEvent`s on one queue, and the single worker thread runs one pipeline at a time.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from daemon.adapters.heldwrites import HeldWrites
from daemon.adapters.notify import Notifier
from daemon.adapters.watch import RawEvent, close_events_available
from daemon.core.config import Settings
from daemon.core.debounce import Cause, Debouncer, FileState, PipelineEvent
from daemon.core.errors import InfrastructureError, LostWorkError
from daemon.core.jobs import run_label
from daemon.core.nospace import is_no_space
from daemon.core.outcome import Fanout, PipelineOutcome, Recorder, Silent
from daemon.core.records import Delivery
from daemon.core.runqueue import Admission, RunQueue
from daemon.core.stages import Outbox
from daemon.engine.metrics import Metrics
from daemon.engine.worker import Queued, Runner
from daemon.state.journal import Journal
from daemon.state.journal_schema import MAX_ATTEMPTS

log = structlog.get_logger()
# Libraries an idle daemon should not hold (tens of MB each): loaded when a run needs them.
HEAVY_MODULES = ("mlflow", "pandas", "sklearn", "scipy", "sqlalchemy", "pyarrow", "numpy")


class Intake(Protocol):
    """What the intake (watchers, scheduler, control socket) feeds and reads of the service."""

    raw: queue.Queue[RawEvent]
    metrics: Metrics

    def snapshot(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Hooks:
    """What the loop reads of the outside world between runs, injected by the composition root."""

    new_run_id: Callable[[], str]
    head_commit: Callable[[Settings], str]  # the watched branch's commit
    data_sha256: Callable[[Settings], str]
    start_intake: Callable[[Settings, Intake], Callable[[], None]] = field(
        default=lambda s, intake: lambda: None
    )  # starts watchers, scheduler and control socket feeding the service; returns their stop
    reload: Callable[[], Settings] | None = None
    collect: Callable[[Settings], None] = field(default=lambda s: None)  # retention after each run
    delivered: Callable[[Delivery], None] = field(default=lambda d: None)  # the tracking outbox sent one


def debouncer_for(s: Settings) -> Debouncer:
    """Bursts of file and ref changes into pipeline events, as the settings say."""
    return Debouncer(
        s.quiet_s,
        s.max_wait_s,
        data_globs=(s.data_glob,),
        marker_names=s.marker_names,
        close_events=close_events_available(),
    )


def held_writes(metrics: Metrics, raw: queue.Queue[RawEvent]) -> HeldWrites:
    """The journal's writes the disk refused, waiting in memory. Their count is a gauge; when a run's
    thread starts holding them, the sleeping loop is woken to start its retry clock."""

    def changed(count: int) -> None:
        metrics.held_writes.set(count)
        if count == 1 and threading.current_thread() is not threading.main_thread():
            raw.put(RawEvent("wake"))

    return HeldWrites(on_change=changed)


class Service:
    """The loop of one daemon, given its parts: raw events in, runs out, one at a time."""

    def __init__(
        self,
        settings: Settings,
        journal: Journal,
        raw: queue.Queue[RawEvent],
        debouncer: Debouncer,
        runs: RunQueue[Queued],
        runner: Runner,
        recorder: Recorder,
        hooks: Hooks,
        notifier: Notifier,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.journal, self.raw, self.debouncer = settings, journal, raw, debouncer
        self.queue, self.runner, self.recorder, self.hooks = runs, runner, recorder, hooks
        self.notifier, self.metrics, self.clock = notifier, metrics, clock
        self.ports = runner.ports
        # While the journal refuses writes (disk full): its writes wait in memory (the runner's
        # `writes`), and so do the events it could not record (admitted once it can), retried
        # after retry_s, doubling to retry_max_s.
        self.writes = runner.writes
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.last_commit = ""
        self._cancel_reason: str | None = None
        self._running: tuple[str, threading.Thread] | None = None
        self._last_ping = 0.0
        self._flushing: threading.Thread | None = None
        self._next_flush_check = 0.0
        self._unrecorded: list[tuple[PipelineEvent, int, str | None]] = []
        self.retry_s, self.retry_max_s = 2.0, 60.0
        self._retry_delay, self._next_retry, self._retrying = self.retry_s, 0.0, False

    # -- lifecycle -------------------------------------------------------------------------
    def serve(self) -> int:
        """Run until stop() is called; returns the exit code (0: a clean stop)."""
        self._recover()
        stop_intake = self.hooks.start_intake(self.settings, self)
        self.last_commit = self._safe(self.hooks.head_commit, "")
        self.reconcile("start")
        self.notifier.ready(self._status_line())
        log.info("watch_started", data_dir=str(self.settings.data_dir), repo=str(self.settings.repo))
        try:
            while not self.stopping.is_set():
                try:
                    self._step()
                except Exception as e:  # the loop's last boundary: log once, count, carry on
                    self._loop_error("step", e)
                    self.stopping.wait(1.0)  # not a hot loop if it keeps failing
        finally:
            stop_intake()
            self._shutdown()
        return 0

    def stop(self, why: str = "daemon stopping") -> None:
        """Signal-safe: only sets flags; the loop does the work."""
        self._cancel_reason = why
        self.stopping.set()
        self.raw.put(RawEvent("wake"))

    def request_reload(self) -> None:
        self.reload_requested.set()
        self.raw.put(RawEvent("wake"))

    def next_wakeup(self) -> float | None:
        """When the loop must look again with no event: the debouncer's deadline, the next watchdog
        ping, the next retry of held journal writes, the next outbox check. None: only an event.

        Everything else wakes it: watchers, the scheduler (cron, reconcile), the control socket,
        a finished run and stop() all put a RawEvent on the queue, so an idle daemon sleeps."""
        deadlines = [
            self.debouncer.next_deadline(),
            self._next_ping(),
            self._next_retry if (self._unrecorded or self.writes.count) else None,
            self._next_flush_check if self.ports.outbox is not None else None,
        ]
        return min((d for d in deadlines if d is not None), default=None)

    def _step(self) -> None:
        wake = self.next_wakeup()
        timeout = None if wake is None else max(0.01, wake - self.clock())
        try:
            self._observe_safely(self.raw.get(timeout=timeout))
            while True:  # drain a burst before polling
                self._observe_safely(self.raw.get_nowait())
        except queue.Empty:
            pass
        if self.reload_requested.is_set():
            self._reload()
        self._retry_held()
        fired = self.debouncer.poll(self.clock(), self._stat)
        if fired is not None:
            try:
                self.admit(fired)
            except Exception as e:  # once per event
                self._loop_error("admit", e)
        self._flush_outbox()
        self._ping_watchdog()

    def _observe_safely(self, ev: RawEvent) -> None:
        try:
            self._observe(ev)
        except Exception as e:  # once per event: the next one is looked at as usual
            self._loop_error(f"observe {ev.kind}", e)

    def _loop_error(self, where: str, e: BaseException) -> None:
        no_space = is_no_space(e)
        self.metrics.loop_errors.labels("no_space" if no_space else "other").inc()
        if no_space:
            self.metrics.no_space.set(1)
            log.error("loop_error", where=where, error=str(e), no_space=True)
        else:
            log.error("loop_error", where=where, error=str(e), exc_info=e)

    def _retry_held(self) -> None:
        """While the disk is full: replay held journal writes, then admit the events they held back."""
        if (not self._unrecorded and not self.writes.count) or self.clock() < self._next_retry:
            return
        held, self._unrecorded = self._unrecorded, []
        self._retrying = True
        try:
            if not self.writes.flush():
                self._unrecorded = held
            else:
                for event, attempt, retry_of in held:
                    self.admit(event, attempt, retry_of)
        finally:
            self._retrying = False
        if self._unrecorded or self.writes.count:
            self._retry_delay = min(self._retry_delay * 2, self.retry_max_s)
            self._next_retry = self.clock() + self._retry_delay
            return
        self._retry_delay = self.retry_s
        self.metrics.no_space.set(0)
        log.info("journal_recovered", events_admitted=len(held))

    def _shutdown(self) -> None:
        self.notifier.stopping()
        if self._running is not None:
            run_id, thread = self._running
            log.warning("run_cancelling", run_id=run_id, reason=self._cancel_reason)
            self.ports.containers.stop_labelled(run_label(run_id), self.settings.stop_timeout_s)
            thread.join(timeout=self.settings.stop_timeout_s + 30)
        if not self.writes.flush() or self._unrecorded:
            log.error(
                "journal_writes_lost",
                writes=self.writes.count,
                events=len(self._unrecorded),
                reason="the disk is still full; the next start recovers interrupted runs and reconciles",
            )
        log.info("watch_stopped")

    # -- events ----------------------------------------------------------------------------
    def _observe(self, ev: RawEvent) -> None:
        now = self.clock()
        if ev.kind == "file_changed":
            self.debouncer.file_changed(ev.name, now)
        elif ev.kind == "file_written":
            self.debouncer.file_written(ev.name, now)
        elif ev.kind == "file_opened":
            self.debouncer.file_opened(ev.name, now)
        elif ev.kind == "file_closed":
            self.debouncer.file_closed(ev.name, now)
        elif ev.kind == "file_released":
            self.debouncer.file_released(ev.name, now)
        elif ev.kind == "ref_changed":
            commit = self._safe(self.hooks.head_commit, self.last_commit)
            if commit != self.last_commit:
                self.last_commit = commit
                self.debouncer.ref_changed(self.settings.branch or ev.name, commit, now)
        elif ev.kind == "overflow":
            self.debouncer.overflow(now)
        elif ev.kind in ("manual", "forced"):
            self.debouncer.manual(ev.name, now, force=ev.kind == "forced")
        elif ev.kind == "scheduled":
            self.debouncer.scheduled(ev.name, now)
        elif ev.kind == "reconcile":
            self.reconcile("periodic")
            self._next_flush_check = now  # and a look at the outbox (a one-shot run may have filled it)
        elif ev.kind == "run_lost":
            self._retry_lost(ev.name)
        elif ev.kind == "run_finished":
            self._finished(ev.name)

    def admit(self, event: PipelineEvent, attempt: int = 1, retry_of: str | None = None) -> Admission:
        """Record the event and queue it; while the journal cannot record it (disk full), hold it."""
        causes = sorted((c.source, c.detail) for c in event.causes)
        try:
            if self._unrecorded or not self.writes.flush():  # keep the events' order
                raise InfrastructureError("state journal: earlier writes are still waiting for disk space")
            event_id = self.journal.record_event(causes)
        except InfrastructureError as e:
            self._unrecorded.append((event, attempt, retry_of))
            if is_no_space(e):
                self.metrics.no_space.set(1)
                self.writes.last_error = str(e)
            if not self._retrying:  # once per event, not once per retry
                log.error("event_held", causes=causes, error=str(e), held=len(self._unrecorded))
            if self._next_retry <= self.clock():
                self._next_retry = self.clock() + self._retry_delay
            return Admission.HELD
        admission = self.queue.submit(Queued(event, (event_id,), attempt, retry_of))
        self.metrics.event({c.source for c in event.causes})
        if admission is Admission.COALESCED:
            self.metrics.coalesced.inc()
        self.metrics.queue_depth.set(self.queue.depth)
        log.info("event_admitted", admission=admission.value, causes=causes, queue_depth=self.queue.depth)
        if admission is Admission.START:
            self._start(self.queue.running)
        elif admission is Admission.SUPERSEDE and self._running is not None:
            self._cancel(self._running[0], "superseded by a newer commit")
        return admission

    def reconcile(self, why: str) -> None:
        """Queue a run when the commit or data differ from the last attempted run's (idle only).

        Which runs count as attempted is journal_schema.counts_as_attempt: a retry interrupted too
        counts (its inputs are not run again, across any number of restarts), a cancelled run does not.
        """
        if self.queue.running is not None or self.debouncer.pending() or self._unrecorded:
            return
        last = self.journal.last_attempted()
        commit = self._safe(self.hooks.head_commit, "")
        data = self._safe(self.hooks.data_sha256, "")
        if not commit or not data or (last and (last.commit, last.data_sha256) == (commit, data)):
            return
        detail = f"{why}: commit {commit[:12]}, data {data[:12]} differ from the last run"
        now = self.clock()
        self.admit(PipelineEvent(frozenset({Cause("rescan", detail)}), now, now))

    # -- runs ------------------------------------------------------------------------------
    def _start(self, item: Queued | None) -> None:
        if item is None:
            return
        run_id = self.hooks.new_run_id()
        self._cancel_reason = None if not self.stopping.is_set() else self._cancel_reason

        def work() -> None:
            lost = _LostWork()
            recorder = Fanout(self.recorder, lost)
            try:  # never raises on purpose: every outcome is a journal row and a run_finished line
                self.runner.execute(item, run_id, self.settings, recorder, lambda: self._cancel_reason)
            except Exception as e:  # the run thread's boundary: log once, count, carry on
                self._loop_error(f"run {run_id}", e)
            if lost.error is not None and self._cancel_reason is None:
                self.raw.put(RawEvent("run_lost", run_id))
            try:
                self.hooks.collect(self.settings)  # retention: between runs, never during one
            except Exception as e:
                self._loop_error(f"gc after run {run_id}", e)
            finally:
                self.raw.put(RawEvent("run_finished", run_id))

        thread = threading.Thread(target=work, name=f"run-{run_id}", daemon=True)
        self._running = (run_id, thread)
        thread.start()

    def _finished(self, run_id: str) -> None:
        if self._running is not None and self._running[0] == run_id:
            self._running[1].join()
            self._running = None
        if self.stopping.is_set():
            return
        self._start(self.queue.finished())
        self.metrics.queue_depth.set(self.queue.depth)
        if self.ports.outbox is not None:
            self.metrics.backlog.set(self.ports.outbox.backlog())
            self._next_flush_check = self.clock()  # the run may have left its registration there
        self.notifier.status(self._status_line())

    def _flush_outbox(self, every_s: float = 2.0, idle_every_s: float = 60.0) -> None:
        """Send registrations that waited for MLflow, in a thread of their own, one flush at a time.

        Looked at every `every_s` while something waits (backoff starts at 5 s), and when empty every
        `idle_every_s`, after each run and at each reconcile (what a one-shot `retraind run` left)."""
        outbox = self.ports.outbox
        if outbox is None or self.clock() < self._next_flush_check:
            return
        self._next_flush_check = self.clock() + every_s
        if self._flushing is not None and self._flushing.is_alive():
            return
        backlog = outbox.backlog()
        self.metrics.backlog.set(backlog)
        if not backlog:
            self._next_flush_check = self.clock() + idle_every_s
            return
        if not outbox.due():
            return

        def flush() -> None:
            try:
                self._deliver(outbox)
            except Exception as e:  # the flusher thread's boundary (a full disk, a bug): next time again
                self._loop_error("outbox flush", e)

        self._flushing = threading.Thread(target=flush, name="outbox", daemon=True)
        self._flushing.start()

    def _deliver(self, outbox: Outbox) -> None:
        for d in outbox.flush(self.ports.tracker):
            if d.registration is not None:
                log.info(
                    "outbox_delivered",
                    run_id=d.run_id,
                    mlflow_run_id=d.registration.run_id,
                    model_version=d.registration.model_version,
                )
                self.hooks.delivered(d)
            else:
                log.warning("outbox_retry_later", run_id=d.run_id, error=d.error)
        self.metrics.backlog.set(outbox.backlog())

    def _cancel(self, run_id: str, why: str) -> None:
        self._cancel_reason = why
        threading.Thread(
            target=self.ports.containers.stop_labelled,
            args=(run_label(run_id), self.settings.stop_timeout_s),
            daemon=True,
        ).start()

    def _retry_lost(self, run_id: str) -> None:
        """A run whose stage lost its machine (daemon/core/errors.LostWorkError) is retried once,
        as a run a crash interrupted is."""
        run = self.journal.get_run(run_id)
        if run is None:
            return
        if run.attempt >= MAX_ATTEMPTS:
            why = f"its machine was lost twice: {run.error}"
            log.error("run_not_retried", run_id=run_id, attempt=run.attempt, reason=why)
            return
        log.warning("run_lost_retry", run_id=run_id, error=run.error, retry=True)
        now = self.clock()
        causes = frozenset(Cause(s, d) for s, d in run.causes)
        self.admit(PipelineEvent(causes, now, now), attempt=run.attempt + 1, retry_of=run.run_id)

    def _recover(self) -> None:
        """Runs a crash left 'running': interrupted, containers gone, MLflow ended, retried once."""
        for run in self.journal.recover_interrupted():
            removed = self.ports.containers.stop_labelled(run_label(run.run_id), 5)
            try:
                self.ports.tracker.end_interrupted(run.run_id, run.error or "interrupted")
            except Exception as e:  # a tracking outage must not stop recovery
                log.warning("mlflow_end_failed", run_id=run.run_id, error=str(e))
            if self.journal.should_retry(run):
                log.warning(
                    "run_recovered",
                    run_id=run.run_id,
                    containers_removed=len(removed),
                    error=run.error,
                    retry=True,
                )
                now = self.clock()
                causes = frozenset(Cause(s, d) for s, d in run.causes)
                self.admit(PipelineEvent(causes, now, now), attempt=run.attempt + 1, retry_of=run.run_id)
            else:
                log.error(
                    "run_not_retried",
                    run_id=run.run_id,
                    attempt=run.attempt,
                    reason="interrupted twice; fix the cause and trigger a run",
                )

    # -- helpers ---------------------------------------------------------------------------
    def _stat(self, name: str) -> FileState:
        try:
            st = (self.settings.data_dir / name).stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns)

    def _safe(self, read: Callable[[Settings], str], default: str) -> str:
        try:
            return read(self.settings)
        except Exception as e:  # a half-written ref or a missing data dir: try again later
            log.warning("read_failed", what=getattr(read, "__name__", "?"), error=str(e))
            return default

    def _reload(self) -> None:
        self.reload_requested.clear()
        if self.hooks.reload is None:
            return
        try:
            self.settings = self.hooks.reload()
        except Exception as e:
            log.error("config_reload_failed", error=str(e))
            return
        self.queue.supersede_on_commit = self.settings.supersede
        log.info("config_reloaded")

    def _next_ping(self) -> float | None:
        """systemd's watchdog wants WATCHDOG=1 within WatchdogSec: we ping every half of it."""
        interval = self.settings.watchdog_usec / 2e6
        return self._last_ping + interval if interval > 0 else None

    def _ping_watchdog(self) -> None:
        due = self._next_ping()
        if due is not None and self.clock() >= due:
            self.notifier.watchdog()
            self._last_ping = self.clock()

    def _status_line(self) -> str:
        if self._running is None:
            return f"idle; {self.queue.depth} queued"
        return f"run {self._running[0]}; {self.queue.depth} queued"

    def snapshot(self) -> dict[str, Any]:
        """For `retraind status` over the control socket (read from another thread: copies only)."""
        running = self._running
        return {
            "running": running[0] if running else None,
            "queue_depth": self.queue.depth,
            "pending_changes": self.debouncer.pending(),
            "held_journal_writes": self.writes.count,
            "held_events": len(self._unrecorded),
            "journal_error": self.writes.last_error,
            "data_dir": str(self.settings.data_dir),
            "repo": str(self.settings.repo),
            "threads": [{"name": t.name, "native_id": t.native_id} for t in threading.enumerate()],
            "heavy_modules": sorted(m for m in HEAVY_MODULES if m in sys.modules),
        }


class _LostWork(Silent):
    """Hears whether a run ended because its stage lost its machine."""

    def __init__(self) -> None:
        self.error: LostWorkError | None = None

    def run_finished(self, outcome: PipelineOutcome) -> None:
        self.error = outcome.error if isinstance(outcome.error, LostWorkError) else None
