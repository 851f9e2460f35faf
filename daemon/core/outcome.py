"""How a run ended, as typed facts, and the recorder interface every witness of a run implements.

The stage results keep their outputs as JSON (the stage cache stores them); the facts the rest of
the daemon reads of a finished run (F1, model version, image ID, champion, queued, reasons, status)
are read out of them here, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from daemon.core.errors import EXIT_OK, CancelledError, GateRejectedError, RetraindError
from daemon.core.stages import BUILD, REGISTER, TRAIN, StageResult
from daemon.core.vocab import CANCELLED, FAILED, GATE_REJECTED, SUCCEEDED, UP_TO_DATE


def run_status(error: RetraindError | None) -> str:
    """How a run that ended with `error` (None: it succeeded) is recorded."""
    if error is None:
        return SUCCEEDED
    if isinstance(error, GateRejectedError):
        return GATE_REJECTED
    if isinstance(error, CancelledError):
        return CANCELLED
    return FAILED


@dataclass(frozen=True)
class RunStart:
    """A daemon run about to run its stages (or refused before them: commit and data then None)."""

    run_id: str
    trigger: str
    causes: tuple[tuple[str, str], ...]
    commit: str | None
    data_sha256: str | None
    attempt: int = 1
    event_ids: tuple[int, ...] = ()
    retry_of: str | None = None


@dataclass(frozen=True)
class PipelineOutcome:
    run_id: str
    results: Mapping[str, StageResult]
    durations: Mapping[str, float]
    duration_s: float
    failed_stage: str | None = None
    error: RetraindError | None = None
    trigger: str = "manual"
    commit: str | None = None  # the commit it built (None: refused before its inputs were sealed)
    subject: str = ""  # that commit's first line

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def up_to_date(self) -> bool:
        """Every stage answered from the stage cache: nothing was built, checked or trained."""
        return self.ok and bool(self.results) and all(r.cached_from for r in self.results.values())

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.error is None else self.error.exit_code

    @property
    def status(self) -> str:
        """run_status, and "up_to_date" when every stage came from the stage cache."""
        return UP_TO_DATE if self.up_to_date else run_status(self.error)

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it failed: each rejected check of the gate, or the one error; () when it succeeded."""
        if self.error is None:
            return ()
        return self.error.reasons if isinstance(self.error, GateRejectedError) else (str(self.error),)

    @property
    def cached_stages(self) -> tuple[str, ...]:
        return tuple(name for name, r in self.results.items() if r.cached_from)

    @property
    def image_id(self) -> str | None:
        build = self.results.get(BUILD)
        return str(build.outputs["image_id"]) if build else None

    @property
    def f1(self) -> float | None:
        """The held-out weighted F1 the training measured."""
        train = self.results.get(TRAIN)
        return float(train.outputs["metrics"]["f1_score_weighted"]) if train else None

    @property
    def model_version(self) -> str | None:
        version = self._registered("model_version")
        return None if version is None else str(version)

    @property
    def registration(self) -> Mapping[str, object]:
        """The register stage's outputs (empty when it did not run)."""
        register = self.results.get(REGISTER)
        return register.outputs if register else {}

    @property
    def mlflow_run_id(self) -> str | None:
        run = self._registered("mlflow_run_id")
        return None if run is None else str(run)

    @property
    def champion(self) -> bool | None:
        """Whether this run's registration became champion; None when it registered nothing of its
        own (it failed before register, or the stage cache answered for register)."""
        register = self.results.get(REGISTER)
        if register is None or register.cached_from:
            return None
        return bool(register.outputs["champion"])

    @property
    def queued(self) -> bool:
        """Trained, and its registration waits in the outbox (MLflow was unreachable)."""
        register = self.results.get(REGISTER)
        return register is not None and not register.final

    @property
    def up_to_date_with(self) -> str | None:
        """The earlier run whose registration answers for this one, when every stage was cached."""
        return self.results[REGISTER].cached_from if self.up_to_date and REGISTER in self.results else None

    def _registered(self, key: str) -> object:
        register = self.results.get(REGISTER)
        return register.outputs.get(key) if register else None


class Recorder(Protocol):
    """A witness of runs: the journal, the metrics, the log lines, the console each implement it.

    run_started is the daemon's (`retraind run` keeps no run row); the rest come from the runner
    for every run, run_finished exactly once, also for a run refused before its first stage."""

    def run_started(self, start: RunStart) -> None: ...
    def stage_started(self, run_id: str, stage: str) -> None: ...
    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None: ...
    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None: ...
    def run_finished(self, outcome: PipelineOutcome) -> None: ...


class Fanout:
    """One recorder that tells several, in order."""

    def __init__(self, *recorders: Recorder) -> None:
        self.recorders = recorders

    def run_started(self, start: RunStart) -> None:
        for r in self.recorders:
            r.run_started(start)

    def stage_started(self, run_id: str, stage: str) -> None:
        for r in self.recorders:
            r.stage_started(run_id, stage)

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        for r in self.recorders:
            r.stage_finished(run_id, result, duration_s)

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        for r in self.recorders:
            r.stage_failed(run_id, stage, duration_s, error)

    def run_finished(self, outcome: PipelineOutcome) -> None:
        for r in self.recorders:
            r.run_finished(outcome)


class Silent:
    """A recorder base that ignores every call: a witness overrides only what it records."""

    def run_started(self, start: RunStart) -> None:
        pass

    def stage_started(self, run_id: str, stage: str) -> None:
        pass

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        pass

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        pass

    def run_finished(self, outcome: PipelineOutcome) -> None:
        pass
