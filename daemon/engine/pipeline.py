"""The runner: executes the stages of one pipeline run in order, timing and reporting each."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from types import MappingProxyType

import structlog

from daemon.core.errors import CancelledError, RetraindError, TrackingError
from daemon.core.outcome import PipelineOutcome, Recorder
from daemon.core.stages import Ports, RunContext, Stage, StageResult
from handlers.register import failure_record

log = structlog.get_logger()


def run_stages(
    ctx: RunContext,
    stages: Sequence[Stage],
    ports: Ports,
    recorder: Recorder,
    clock: Callable[[], float] = time.monotonic,
    cancelled: Callable[[], str | None] = lambda: None,
    use_cache: bool = True,
) -> PipelineOutcome:
    """Run stages until one fails; a failed run is still recorded in MLflow, as FAILED.

    A stage whose cache key matches an earlier success is not run: its result is reused (unless
    use_cache is False, `--force`). `cancelled` returns why the run was stopped (or None); it is
    checked before each stage, and a stage that fails while it is set failed because we stopped
    its container.
    """
    results: dict[str, StageResult] = {}
    durations: dict[str, float] = {}
    started = clock()
    for stage in stages:
        recorder.stage_started(ctx.run_id, stage.name)
        t0 = clock()
        try:
            if why := cancelled():
                raise CancelledError(stage.name, why)
            result = run_or_reuse(
                stage, replace(ctx, results=MappingProxyType(dict(results))), ports, use_cache
            )
        except RetraindError as caught:
            why = cancelled()
            error = (
                CancelledError(stage.name, why) if why and not isinstance(caught, CancelledError) else caught
            )
            durations[stage.name] = clock() - t0
            recorder.stage_failed(ctx.run_id, stage.name, durations[stage.name], error)
            _record_failure(replace(ctx, results=MappingProxyType(results)), stage.name, error, ports)
            outcome = PipelineOutcome(
                ctx.run_id, results, durations, clock() - started, stage.name, error, ctx.trigger,
                ctx.git.commit, ctx.git.subject,
            )  # fmt: skip
            recorder.run_finished(outcome)
            return outcome
        durations[stage.name] = clock() - t0
        results[stage.name] = result
        recorder.stage_finished(ctx.run_id, result, durations[stage.name])
    outcome = PipelineOutcome(
        ctx.run_id, results, durations, clock() - started, trigger=ctx.trigger, commit=ctx.git.commit,
        subject=ctx.git.subject,
    )  # fmt: skip
    recorder.run_finished(outcome)
    return outcome


def run_or_reuse(stage: Stage, ctx: RunContext, ports: Ports, use_cache: bool) -> StageResult:
    """The cached result when the stage's inputs match an earlier success, else a fresh run."""
    key = stage.cache_key(ctx, ports)
    if use_cache and ports.cache is not None:
        hit = ports.cache.lookup(stage.name, key)
        if hit is not None and stage.reusable(hit.outputs, ports):
            summary = f"up to date: {hit.summary} (run {hit.run_id})"
            return StageResult(stage.name, summary, hit.outputs, key, hit.run_id)
    result = replace(stage.run(ctx, ports), cache_key=key)
    if ports.cache is not None and result.final:
        ports.cache.store(stage.name, key, ctx.run_id, result)
    return result


def _record_failure(ctx: RunContext, stage: str, error: RetraindError, ports: Ports) -> None:
    """Best effort: a tracking outage must not hide the stage's own failure."""
    if isinstance(error, TrackingError):
        return
    try:
        record = failure_record(ctx, stage, error, ports.containers.placements(ctx.run_id))
        ports.tracker.record(record, ctx.settings.model_name)
    except TrackingError as e:
        log.warning("failure_record_failed", run_id=ctx.run_id, stage=stage, error=str(e))
