"""The runner: executes the stages of one pipeline run in order, timing and reporting each."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Protocol

import structlog

from daemon.errors import EXIT_OK, CancelledError, RetraindError, TrackingError
from handlers.base import Ports, RunContext, Stage, StageResult
from handlers.register import failure_record

log = structlog.get_logger()


@dataclass(frozen=True)
class PipelineOutcome:
    run_id: str
    results: Mapping[str, StageResult]
    durations: Mapping[str, float]
    duration_s: float
    failed_stage: str | None = None
    error: RetraindError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.error is None else self.error.exit_code


class Reporter(Protocol):
    def stage_started(self, run_id: str, stage: str) -> None: ...
    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None: ...
    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None: ...
    def run_finished(self, outcome: PipelineOutcome) -> None: ...


def run_stages(
    ctx: RunContext,
    stages: Sequence[Stage],
    ports: Ports,
    reporter: Reporter,
    clock: Callable[[], float] = time.monotonic,
    cancelled: Callable[[], str | None] = lambda: None,
) -> PipelineOutcome:
    """Run stages until one fails; a failed run is still recorded in MLflow, as FAILED.

    `cancelled` returns why the run was stopped (or None); it is checked before each stage, and a
    stage that fails while it is set failed because we stopped its container.
    """
    results: dict[str, StageResult] = {}
    durations: dict[str, float] = {}
    started = clock()
    for stage in stages:
        reporter.stage_started(ctx.run_id, stage.name)
        t0 = clock()
        try:
            if why := cancelled():
                raise CancelledError(stage.name, why)
            result = stage.run(replace(ctx, results=MappingProxyType(dict(results))), ports)
        except RetraindError as caught:
            why = cancelled()
            error = (
                CancelledError(stage.name, why) if why and not isinstance(caught, CancelledError) else caught
            )
            durations[stage.name] = clock() - t0
            reporter.stage_failed(ctx.run_id, stage.name, durations[stage.name], error)
            _record_failure(replace(ctx, results=MappingProxyType(results)), stage.name, error, ports)
            outcome = PipelineOutcome(ctx.run_id, results, durations, clock() - started, stage.name, error)
            reporter.run_finished(outcome)
            return outcome
        durations[stage.name] = clock() - t0
        results[stage.name] = result
        reporter.stage_finished(ctx.run_id, result, durations[stage.name])
    outcome = PipelineOutcome(ctx.run_id, results, durations, clock() - started)
    reporter.run_finished(outcome)
    return outcome


def _record_failure(ctx: RunContext, stage: str, error: RetraindError, ports: Ports) -> None:
    """Best effort: a tracking outage must not hide the stage's own failure."""
    if isinstance(error, TrackingError):
        return
    try:
        ports.tracker.record(failure_record(ctx, stage, error), ctx.settings.model_name)
    except TrackingError as e:
        log.warning("failure_record_failed", run_id=ctx.run_id, stage=stage, error=str(e))
