"""One daemon run: pin its inputs, journal it, run the stages, and record how it ended."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import structlog

from daemon.debounce import Cause, PipelineEvent
from daemon.errors import RetraindError
from daemon.journal import Journal
from daemon.metrics import Metrics
from daemon.notify import Notifier
from daemon.pipeline import PipelineOutcome, Reporter, run_stages
from daemon.progress import Fanout, LogReporter, MetricsReporter, outcome_status
from handlers.base import Ports, RunContext, Stage, StageResult

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
    """Stage progress into the journal and systemd's STATUS= line, beside the JSON log lines."""

    def __init__(self, journal: Journal, notifier: Notifier) -> None:
        self.journal, self.notifier, self.logs = journal, notifier, LogReporter()

    def stage_started(self, run_id: str, stage: str) -> None:
        self.journal.stage_started(run_id, stage)
        self.notifier.status(f"run {run_id}: {stage}")
        self.logs.stage_started(run_id, stage)

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        outcome = "cache_hit" if result.cached_from else "success"
        self.journal.stage_finished(run_id, result.stage, duration_s, outcome, result.summary)
        self.logs.stage_finished(run_id, result, duration_s)

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        self.journal.stage_finished(run_id, stage, duration_s, type(error).__name__, str(error)[:2000])
        self.logs.stage_failed(run_id, stage, duration_s, error)

    def run_finished(self, outcome: PipelineOutcome) -> None:
        self.logs.run_finished(outcome)


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
) -> str:
    """Run one queued item to its end; returns the journal status. Never raises RetraindError."""
    trigger = trigger_of(item.causes)
    causes = sorted((c.source, c.detail) for c in item.causes)
    try:
        ctx = prepare(run_id, trigger)
    except RetraindError as e:  # no commit, no data: the run ends before any stage
        journal.start_run(run_id, trigger, causes, None, None, item.attempt, item.event_ids, item.retry_of)
        journal.finish_run(run_id, "failed", e.exit_code, error=str(e))
        log.error("run_refused", run_id=run_id, error_kind=type(e).__name__, error=str(e))
        return "failed"
    journal.start_run(
        run_id,
        trigger,
        causes,
        ctx.git.commit,
        ctx.manifest.sha256,
        item.attempt,
        item.event_ids,
        item.retry_of,
    )
    ctx = replace(ctx, settings=replace(ctx.settings, trigger=trigger))
    reporter: Reporter = JournalReporter(journal, notifier)
    if metrics is not None:
        reporter = Fanout(reporter, MetricsReporter(metrics, trigger))
    forced = any(c.source == "force" for c in item.causes)  # `retraind trigger --force`
    outcome = run_stages(
        ctx, list(stages.values()), ports, reporter, cancelled=cancelled, use_cache=not forced
    )
    status = outcome_status(outcome)
    train = outcome.results.get("train")
    register = outcome.results.get("register")
    journal.finish_run(
        run_id,
        status,
        outcome.exit_code,
        failed_stage=outcome.failed_stage,
        error=str(outcome.error) if outcome.error else None,
        f1=train.outputs["metrics"]["f1_score_weighted"] if train else None,
        model_version=register.outputs["model_version"] if register else None,
        mlflow_run_id=register.outputs["mlflow_run_id"] if register else None,
        image_id=outcome.results["build"].outputs["image_id"] if "build" in outcome.results else None,
        champion=bool(register.outputs["champion"]) if register and not register.cached_from else None,
    )
    return status
