"""The runner of the daemon: one queued item to its end (pinned inputs, the stages, how it ended), and
the daemon's own recorders: the journal, systemd's status line, the drift reference."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from daemon.adapters.heldwrites import HeldWrites
from daemon.adapters.notify import Notifier
from daemon.core.config import Settings
from daemon.core.debounce import Cause, PipelineEvent
from daemon.core.errors import InfrastructureError, RetraindError
from daemon.core.nospace import is_no_space, no_space_error
from daemon.core.outcome import Fanout, PipelineOutcome, Recorder, RunStart, Silent
from daemon.core.stages import Ports, RunContext, Stage, StageResult
from daemon.core.vocab import DAEMON_TRIGGERS, STAGE_CACHE_HIT, STAGE_SUCCESS
from daemon.engine.announce import Announcer
from daemon.engine.metrics import Metrics
from daemon.engine.pipeline import run_stages
from daemon.engine.progress import LogRecorder, MetricsRecorder, WarmUp
from daemon.state.journal import Journal
from handlers.validate import advance_reference

log = structlog.get_logger()


@dataclass(frozen=True)
class Queued:
    """A pipeline event waiting for (or given to) a run, with its journal event ids."""

    event: PipelineEvent
    event_ids: tuple[int, ...] = ()
    attempt: int = 1
    retry_of: str | None = None

    @property
    def causes(self) -> frozenset[Cause]:
        return self.event.causes


def merge(a: Queued, b: Queued) -> Queued:
    """Coalesce two waiting events into one follow-up that carries every cause."""
    event = PipelineEvent(
        a.event.causes | b.event.causes,
        min(a.event.first_seen, b.event.first_seen),
        max(a.event.fired_at, b.event.fired_at),
    )
    return Queued(event, a.event_ids + b.event_ids)


def trigger_of(causes: frozenset[Cause]) -> str:
    sources = {c.source for c in causes}
    return next((t for t in DAEMON_TRIGGERS if t in sources), "manual")


class JournalRecorder(Silent):
    """Runs and their stages into the journal: the row `retraind status`, recovery and reconcile read.

    Journal writes go through `writes`: while the disk is full they wait in memory, in order.
    """

    def __init__(self, journal: Journal, writes: HeldWrites, announcer: Announcer | None = None) -> None:
        self.journal, self.writes, self.announcer = journal, writes, announcer

    def run_started(self, start: RunStart) -> None:
        def call(at: float) -> None:
            self.journal.start_run(
                start.run_id, start.trigger, list(start.causes), start.commit, start.data_sha256,
                start.attempt, start.event_ids, start.retry_of, at=at,
            )  # fmt: skip

        self.writes.write("start_run", call)

    def stage_started(self, run_id: str, stage: str) -> None:
        self.writes.write("stage_started", lambda at: self.journal.stage_started(run_id, stage, at=at))

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        outcome = STAGE_CACHE_HIT if result.cached_from else STAGE_SUCCESS
        self.writes.write(
            "stage_finished",
            lambda at: self.journal.stage_finished(
                run_id, result.stage, duration_s, outcome, result.summary, at=at
            ),
        )

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        kind, text = type(error).__name__, str(error)[:2000]
        self.writes.write(
            "stage_finished",
            lambda at: self.journal.stage_finished(run_id, stage, duration_s, kind, text, at=at),
        )

    def run_finished(self, outcome: PipelineOutcome) -> None:
        """The run's row: how it ended, with what it made."""
        error = outcome.error
        if error is not None and is_no_space(error):
            error = as_run_error(error, self.journal.path.parent)
        text = str(error) if error else None
        notify = self.announcer.in_transaction(outcome) if self.announcer else None

        def call(at: float) -> None:
            self.journal.finish_run(
                outcome.run_id, outcome.status, outcome.exit_code, outcome.failed_stage, text, outcome.f1,
                outcome.model_version, outcome.mlflow_run_id, outcome.image_id, outcome.champion, at=at,
                also=notify,
            )  # fmt: skip
            if self.announcer is not None:
                self.announcer.wake()

        self.writes.write("finish_run", call)


class SystemdStatus(Silent):
    """systemd's STATUS= line names the run and the stage it is in (`systemctl --user status`)."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def stage_started(self, run_id: str, stage: str) -> None:
        self.notifier.status(f"run {run_id}: {stage}")


class DriftReference(Silent):
    """A run that succeeded makes its drop the reference the next drop's drift is measured against;
    before its journal row is finished, so whoever sees the run finished sees the new reference."""

    def __init__(self, state_dir: Path, metrics: Metrics | None = None) -> None:
        self.state_dir, self.metrics = state_dir, metrics

    def run_finished(self, outcome: PipelineOutcome) -> None:
        if not outcome.ok:
            return
        try:
            advanced = advance_reference(self.state_dir, outcome.results)
        except OSError as e:  # the run stands; the next drop is compared with the older reference
            log.error("drift_reference_not_advanced", run_id=outcome.run_id, error=str(e))
            if self.metrics is not None:
                self.metrics.loop_errors.labels("no_space" if is_no_space(e) else "other").inc()
            return
        if advanced is not None:
            log.info("drift_reference_advanced", run_id=outcome.run_id, source=str(advanced))


def daemon_recorder(
    journal: Journal,
    writes: HeldWrites,
    notifier: Notifier,
    metrics: Metrics | None,
    state_dir: Path,
    warm_up: Callable[[], object] | None = None,
    announcer: Announcer | None = None,
) -> Recorder:
    """The daemon's witnesses of a run, in the order they hear of it: the JSON log line, the
    metrics, systemd's status line, the MLflow warm-up, the drift reference, then the journal row
    (last: whoever sees the run finished there sees everything else done), with the run's
    notifications in the same transaction."""
    recorders: list[Recorder] = [LogRecorder()]
    if metrics is not None:
        recorders.append(MetricsRecorder(metrics))
    recorders.append(SystemdStatus(notifier))
    if warm_up is not None:
        recorders.append(WarmUp(warm_up))
    recorders += [DriftReference(state_dir, metrics), JournalRecorder(journal, writes, announcer)]
    return Fanout(*recorders)


class _CurrentStage(Silent):
    """Which stage is running, so that a handler's crash can be recorded against it."""

    def __init__(self) -> None:
        self.stage: str | None = None

    def stage_started(self, run_id: str, stage: str) -> None:
        self.stage = stage

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        self.stage = None

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        self.stage = None


def as_run_error(error: BaseException, state_dir: Path) -> RetraindError:
    """What a run ends with when something raised: a full disk says so and where to make room, an
    OSError (a symlink loop in the data, a permission) is infrastructure, anything else a crash (exit 1)."""
    if is_no_space(error):
        if isinstance(error, InfrastructureError) and str(error).startswith("no space left on device"):
            return error
        return no_space_error(error, state_dir)
    if isinstance(error, RetraindError):
        return error
    if isinstance(error, OSError):
        return InfrastructureError(str(error))
    return RetraindError(f"internal error: {type(error).__name__}: {error}")


@dataclass(frozen=True)
class Runner:
    """Runs one queued item to its end: pins its inputs (`prepare`), runs the stages, and tells the
    recorder everything, exactly one run_finished included, whatever happens."""

    prepare: Callable[[Settings, str, str], RunContext]  # (settings, run_id, trigger) -> pinned inputs
    ports: Ports
    stages: Sequence[Stage]
    writes: HeldWrites  # the journal's: the no-space gauge clears only once nothing waits in it
    metrics: Metrics | None = None
    clock: Callable[[], float] = time.monotonic

    def execute(
        self,
        item: Queued,
        run_id: str,
        settings: Settings,
        recorder: Recorder,
        cancelled: Callable[[], str | None] = lambda: None,
    ) -> str:
        """Returns the run's status. Never raises (the loop's boundary).

        Prepare refusing (no commit, no data) or raising anything (a symlink loop, a full disk), a
        stage handler raising a bug: the run still gets run_started and one run_finished.
        """
        trigger = trigger_of(item.causes)
        causes = tuple(sorted((c.source, c.detail) for c in item.causes))
        current = _CurrentStage()
        recorder = Fanout(current, recorder)
        started = self.clock()

        def start(commit: str | None, data: str | None) -> None:
            recorder.run_started(
                RunStart(run_id, trigger, causes, commit, data, item.attempt, item.event_ids, item.retry_of)
            )

        try:
            ctx = self.prepare(settings, run_id, trigger)
        except Exception as e:  # no commit, no data, a full disk: the run ends before any stage
            start(None, None)
            error = self._caught(e, settings.state_dir, run_id)
            outcome = PipelineOutcome(run_id, {}, {}, self.clock() - started, None, error, trigger)
            recorder.run_finished(outcome)
            return outcome.status
        start(ctx.git.commit, ctx.manifest.sha256)
        if self.metrics is not None and not self.writes.count:  # the manifest cache and run dir were written
            self.metrics.no_space.set(0)
        forced = any(c.source == "force" for c in item.causes)  # `retraind trigger --force`
        try:
            outcome = run_stages(
                ctx, self.stages, self.ports, recorder, cancelled=cancelled, use_cache=not forced
            )
        except Exception as e:  # a handler's bug: the run fails, the daemon carries on
            error = self._caught(e, settings.state_dir, run_id)
            stage = current.stage
            outcome = PipelineOutcome(
                run_id, {}, {}, self.clock() - started, stage, error, trigger, ctx.git.commit, ctx.git.subject
            )
            if stage is not None:
                recorder.stage_failed(run_id, stage, 0.0, error)
            recorder.run_finished(outcome)
        return outcome.status

    def _caught(self, e: Exception, state_dir: Path, run_id: str) -> RetraindError:
        error = as_run_error(e, state_dir)
        no_space = is_no_space(error)
        if not isinstance(e, RetraindError) and not no_space:  # a bug: its traceback, once
            log.error("run_crashed", run_id=run_id, error=str(error), exc_info=e)
        if self.metrics is not None and (no_space or not isinstance(e, RetraindError)):
            self.metrics.loop_errors.labels("no_space" if no_space else "other").inc()
            if no_space:
                self.metrics.no_space.set(1)
        return error
