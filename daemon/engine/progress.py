"""The recorders of a run (daemon.core.outcome.Recorder): a live line per stage on a TTY, structured
log events elsewhere, the Prometheus metrics; and the MLflow warm-up, which watches runs the same way."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from rich.console import Console
from rich.status import Status

from daemon.adapters.logs import escape_controls
from daemon.core.errors import CancelledError, GateRejectedError, RetraindError
from daemon.core.outcome import PipelineOutcome, Silent
from daemon.core.stages import REGISTER, VALIDATE, StageResult
from daemon.core.vocab import STAGE_CACHE_HIT, STAGE_CANCELLED, STAGE_FAILURE, STAGE_SUCCESS
from daemon.engine.metrics import Metrics


def outcome_fields(outcome: PipelineOutcome) -> dict[str, Any]:
    """The facts of a finished run, shared by the log line and the console (the canonical run line)."""
    fields: dict[str, Any] = {
        "run_id": outcome.run_id,
        "outcome": ("up_to_date" if outcome.up_to_date else "success")
        if outcome.ok
        else type(outcome.error).__name__,
        "exit_code": outcome.exit_code,
        "duration_s": round(outcome.duration_s, 3),
        "stage_durations_s": {k: round(v, 3) for k, v in outcome.durations.items()},
    }
    if outcome.failed_stage:
        fields["failed_stage"] = outcome.failed_stage
    if outcome.error is not None:  # also a run refused before any stage (no commit, no data, no space)
        fields["error"] = str(outcome.error)
    if outcome.f1 is not None:
        fields["f1_score_weighted"] = outcome.f1
    if REGISTER in outcome.results:
        fields.update(
            mlflow_run_id=outcome.mlflow_run_id,
            model_version=outcome.model_version,
            champion=bool(outcome.results[REGISTER].outputs["champion"]),
        )
    if outcome.up_to_date:
        fields.update(up_to_date_with=outcome.up_to_date_with, champion=False)
        fields["summary"] = f"up to date: run {outcome.up_to_date_with}, model v{outcome.model_version}"
    if outcome.cached_stages:
        fields["cached_stages"] = list(outcome.cached_stages)
    if outcome.image_id is not None:
        fields["image_id"] = outcome.image_id
    return fields


class LogRecorder(Silent):
    """JSON log events: stage_started, stage_finished, stage_failed, run_finished."""

    def __init__(self, logger: Any = None) -> None:
        self.log = logger or structlog.get_logger()

    def stage_started(self, run_id: str, stage: str) -> None:
        self.log.info("stage_started", run_id=run_id, stage=stage)

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        self.log.info(
            "stage_finished",
            run_id=run_id,
            stage=result.stage,
            duration_s=round(duration_s, 3),
            summary=result.summary,
        )

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        reasons = list(error.reasons) if isinstance(error, GateRejectedError) else [str(error)]
        self.log.error(
            "stage_failed",
            run_id=run_id,
            stage=stage,
            duration_s=round(duration_s, 3),
            error_kind=type(error).__name__,
            reasons=reasons,
        )

    def run_finished(self, outcome: PipelineOutcome) -> None:
        level = self.log.info if outcome.ok else self.log.error
        level("run_finished", **outcome_fields(outcome))


class ConsoleRecorder(Silent):
    """A spinner while a stage runs, then one line per stage and a summary."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._status: Status | None = None

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def stage_started(self, run_id: str, stage: str) -> None:
        self._status = self.console.status(f"[bold]{stage}[/] running…")
        self._status.start()

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        self._stop()
        mark = "[dim]=[/]" if result.cached_from else "[green]✓[/]"
        summary = escape_controls(result.summary)
        self.console.print(f"{mark} {result.stage:<11}{duration_s:8.1f} s  {summary}", highlight=False)

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        self._stop()
        self.console.print(f"[red]✗[/] {stage:<11}{duration_s:8.1f} s  [red]{type(error).__name__}[/]")
        reasons = error.reasons if isinstance(error, GateRejectedError) else (str(error),)
        for reason in reasons:
            self.console.print(f"    {escape_controls(reason)}", markup=False, highlight=False)

    def run_finished(self, outcome: PipelineOutcome) -> None:
        self._stop()
        f = outcome_fields(outcome)
        if outcome.up_to_date:
            self.console.print(
                f"[bold green]up to date[/]: run {f['up_to_date_with']}, model v{f.get('model_version')}, "
                f"weighted F1 {f.get('f1_score_weighted', float('nan')):.4f}; nothing to train "
                f"({f['duration_s']:.1f} s; retraind run --force retrains anyway)"
            )
        elif outcome.ok:
            champion = " (champion)" if f.get("champion") else ""
            model = f"model v{f['model_version']}{champion}, " if f.get("model_version") else ""
            self.console.print(
                f"[bold green]run {f['run_id']} succeeded[/] in {f['duration_s']:.1f} s: "
                f"{model}weighted F1 {f.get('f1_score_weighted', float('nan')):.4f}"
            )
        else:
            self.console.print(
                f"[bold red]run {f['run_id']} failed[/] at {f['failed_stage']} "
                f"after {f['duration_s']:.1f} s (exit {f['exit_code']})"
            )


class MetricsRecorder(Silent):
    """Stage and run outcomes into the Prometheus metrics."""

    def __init__(self, metrics: Metrics, clock: Callable[[], float] = time.time) -> None:
        self.metrics, self.clock = metrics, clock

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        self.metrics.stage(result.stage, STAGE_CACHE_HIT if result.cached_from else STAGE_SUCCESS, duration_s)
        if result.cached_from:
            self.metrics.cache_hits.labels(result.stage).inc()

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        outcome = STAGE_CANCELLED if isinstance(error, CancelledError) else STAGE_FAILURE
        self.metrics.stage(stage, outcome, duration_s)
        if isinstance(error, GateRejectedError):
            self.metrics.gate_failure(set(error.kinds))

    def run_finished(self, outcome: PipelineOutcome) -> None:
        champion = bool(outcome.champion)
        self.metrics.run(
            outcome.status, outcome.trigger, outcome.duration_s, self.clock(), outcome.f1, champion
        )


class WarmUp(Silent):
    """Calls `warm_up` once a run, when its validate stage has really run and passed: a training and
    a registration follow, so MLflow is imported while the containers work (register then takes
    0.2 s rather than 2.6 s), and a daemon whose runs all come from the stage cache never imports it."""

    def __init__(self, warm_up: Callable[[], object]) -> None:
        self.warm_up, self.called = warm_up, False

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        if result.stage == VALIDATE and not result.cached_from and not self.called:
            self.called = True
            self.warm_up()

    def run_finished(self, outcome: PipelineOutcome) -> None:
        self.called = False
