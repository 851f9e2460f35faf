"""One daemon run: pin its inputs, journal it, run the stages, and record how it ended."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from daemon.adapters.heldwrites import HeldWrites
from daemon.adapters.notify import Notifier
from daemon.core.debounce import Cause, PipelineEvent
from daemon.core.errors import InfrastructureError, RetraindError
from daemon.core.nospace import is_no_space, no_space_error
from daemon.core.stages import Ports, RunContext, Stage, StageResult
from daemon.engine.metrics import Metrics
from daemon.engine.pipeline import PipelineOutcome, Reporter, run_stages
from daemon.engine.progress import Fanout, LogReporter, MetricsReporter, WarmUpReporter, outcome_status
from daemon.state.journal import Journal
from handlers.validate import advance_reference

log = structlog.get_logger()
# Which cause names a run's trigger when one event carries several.
_TRIGGER_ORDER = ("commit", "data", "manual", "schedule", "rescan")


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
    return next((t for t in _TRIGGER_ORDER if t in sources), "manual")


class JournalReporter:
    """Stage progress into the journal and systemd's STATUS= line, beside the JSON log lines.

    Journal writes go through `writes`: while the disk is full they wait in memory, in order.
    `current` is the stage running now, so a crash can name it.
    """

    def __init__(self, journal: Journal, notifier: Notifier, writes: HeldWrites | None = None) -> None:
        self.journal, self.notifier, self.logs = journal, notifier, LogReporter()
        self.writes = writes or HeldWrites()
        self.current: str | None = None

    def stage_started(self, run_id: str, stage: str) -> None:
        self.current = stage
        self.writes.write("stage_started", lambda at: self.journal.stage_started(run_id, stage, at=at))
        self.notifier.status(f"run {run_id}: {stage}")
        self.logs.stage_started(run_id, stage)

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        self.current = None
        outcome = "cache_hit" if result.cached_from else "success"
        self.writes.write(
            "stage_finished",
            lambda at: self.journal.stage_finished(
                run_id, result.stage, duration_s, outcome, result.summary, at=at
            ),
        )
        self.logs.stage_finished(run_id, result, duration_s)

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        self.current = None
        kind, text = type(error).__name__, str(error)[:2000]
        self.writes.write(
            "stage_finished",
            lambda at: self.journal.stage_finished(run_id, stage, duration_s, kind, text, at=at),
        )
        self.logs.stage_failed(run_id, stage, duration_s, error)

    def run_finished(self, outcome: PipelineOutcome) -> None:
        self.logs.run_finished(outcome)


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


def execute(
    item: Queued,
    run_id: str,
    prepare: Callable[[str, str], RunContext],
    journal: Journal,
    ports: Ports,
    stages: Mapping[str, Stage],
    notifier: Notifier,
    cancelled: Callable[[], str | None],
    metrics: Metrics | None = None,
    writes: HeldWrites | None = None,
    clock: Callable[[], float] = time.monotonic,
    warm_up: Callable[[], object] | None = None,
) -> str:
    """Run one queued item to its end; returns the journal status. Never raises (the loop's boundary).

    Whatever happens, the run gets a finished journal row and one canonical `run_finished` line:
    prepare refusing (no commit, no data) or raising anything (a symlink loop, a full disk), a stage
    handler raising a bug. Journal writes the disk refuses wait in `writes` and are replayed later.
    Only a run that succeeded advances the drift reference. `warm_up` (importing MLflow) starts once
    validate has really passed, so that it overlaps the training.
    """
    writes = writes or HeldWrites()
    trigger = trigger_of(item.causes)
    causes = sorted((c.source, c.detail) for c in item.causes)
    journal_reporter = JournalReporter(journal, notifier, writes)
    reporter: Reporter = journal_reporter
    if metrics is not None:
        reporter = Fanout(reporter, MetricsReporter(metrics, trigger))
    if warm_up is not None:
        reporter = Fanout(reporter, WarmUpReporter(warm_up))
    started = clock()
    state_dir = journal.path.parent

    def start(commit: str | None, data: str | None) -> None:
        def call(at: float) -> None:
            journal.start_run(
                run_id, trigger, causes, commit, data, item.attempt, item.event_ids, item.retry_of, at=at
            )

        writes.write("start_run", call)

    try:
        ctx = prepare(run_id, trigger)
    except Exception as e:  # no commit, no data, a full disk: the run ends before any stage
        start(None, None)
        error = _caught(e, state_dir, run_id, metrics)
        outcome = PipelineOutcome(run_id, {}, {}, clock() - started, None, error)
        reporter.run_finished(outcome)
        return _record(outcome, run_id, journal, writes, state_dir)
    start(ctx.git.commit, ctx.manifest.sha256)
    if metrics is not None and not writes.count:  # the manifest cache and the run directory were written
        metrics.no_space.set(0)
    ctx = replace(ctx, settings=replace(ctx.settings, trigger=trigger))
    forced = any(c.source == "force" for c in item.causes)  # `retraind trigger --force`
    try:
        outcome = run_stages(
            ctx, list(stages.values()), ports, reporter, cancelled=cancelled, use_cache=not forced
        )
    except Exception as e:  # a handler's bug: the run fails, the daemon carries on
        error = _caught(e, ctx.settings.state_dir, run_id, metrics)
        stage = journal_reporter.current
        outcome = PipelineOutcome(run_id, {}, {}, clock() - started, stage, error)
        if stage is not None:
            reporter.stage_failed(run_id, stage, 0.0, error)
        reporter.run_finished(outcome)
    if outcome.ok:
        _advance_reference(ctx, outcome, metrics)
    return _record(outcome, run_id, journal, writes, ctx.settings.state_dir)


def _caught(e: Exception, state_dir: Path, run_id: str, metrics: Metrics | None) -> RetraindError:
    error = as_run_error(e, state_dir)
    no_space = is_no_space(error)
    if not isinstance(e, RetraindError) and not no_space:  # a bug: its traceback, once
        log.error("run_crashed", run_id=run_id, error=str(error), exc_info=e)
    if metrics is not None and (no_space or not isinstance(e, RetraindError)):
        metrics.loop_errors.labels("no_space" if no_space else "other").inc()
        if no_space:
            metrics.no_space.set(1)
    return error


def _advance_reference(ctx: RunContext, outcome: PipelineOutcome, metrics: Metrics | None) -> None:
    try:
        advanced = advance_reference(ctx.settings, outcome.results)
    except OSError as e:  # the run stands; the next drop is compared with the older reference
        log.error("drift_reference_not_advanced", run_id=ctx.run_id, error=str(e))
        if metrics is not None:
            metrics.loop_errors.labels("no_space" if is_no_space(e) else "other").inc()
        return
    if advanced is not None:
        log.info("drift_reference_advanced", run_id=ctx.run_id, source=str(advanced))


def _record(
    outcome: PipelineOutcome, run_id: str, journal: Journal, writes: HeldWrites, state_dir: Path
) -> str:
    """The run's row: how it ended, with what it made."""
    status = outcome_status(outcome)
    error = outcome.error
    if error is not None and is_no_space(error):
        error = as_run_error(error, state_dir)
    train = outcome.results.get("train")
    register = outcome.results.get("register")
    build = outcome.results.get("build")
    text = str(error) if error else None
    f1 = train.outputs["metrics"]["f1_score_weighted"] if train else None
    version = register.outputs["model_version"] if register else None
    mlflow_run_id = register.outputs["mlflow_run_id"] if register else None
    image_id = build.outputs["image_id"] if build else None
    champion = bool(register.outputs["champion"]) if register and not register.cached_from else None

    def call(at: float) -> None:
        journal.finish_run(
            run_id, status, outcome.exit_code, outcome.failed_stage, text, f1, version, mlflow_run_id,
            image_id, champion, at=at,
        )  # fmt: skip

    writes.write("finish_run", call)
    return status
