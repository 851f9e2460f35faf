"""Shared test doubles: a scripted container runner, an in-memory tracker, a recording reporter."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.core.errors import RetraindError
from daemon.core.jobs import BuildJob, CmdResult, ContainerJob
from daemon.core.records import Registration, RunRecord
from daemon.core.stages import CacheEntry, StageResult

Script = Callable[[ContainerJob], CmdResult]


def ok(job: ContainerJob | BuildJob, stdout: str = "") -> CmdResult:
    return CmdResult(("fake",), 0, stdout, "")


def out_dir(job: ContainerJob) -> Path:
    return next(m.host for m in job.mounts if m.container == "/out")


def writes(filename: str, content: Any, returncode: int = 0) -> Script:
    """A container step that writes JSON into its /out mount and exits with returncode."""

    def script(job: ContainerJob) -> CmdResult:
        target = out_dir(job) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(content), encoding="utf-8")
        return CmdResult(tuple(job.argv), returncode, "", "")

    return script


@dataclass
class FakeContainers:
    """Answers each container job by the first script whose key is in the job's name."""

    scripts: dict[str, Script] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    build_result: CmdResult = field(default_factory=lambda: CmdResult(("fake",), 0, "", ""))
    ran: list[ContainerJob] = field(default_factory=list)
    built: list[BuildJob] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    def build(self, job: BuildJob, log_path: Path) -> CmdResult:
        self.built.append(job)
        if self.build_result.returncode == 0:
            self.images[job.tag] = "sha256:" + "b" * 64
        return self.build_result

    def run(self, job: ContainerJob, log_path: Path) -> CmdResult:
        self.ran.append(job)
        for key, script in self.scripts.items():
            if key in job.name:
                return script(job)
        raise AssertionError(f"no script for container {job.name}")

    def image_id(self, ref: str) -> str | None:
        return self.images.get(ref) or (ref if ref in self.images.values() else None)

    def stop_labelled(self, label: str, stop_timeout_s: float) -> list[str]:
        self.stopped.append(label)
        return []

    def placements(self, run_id: str) -> dict[str, str]:
        return {}


@dataclass
class FakeTracker:
    records: list[RunRecord] = field(default_factory=list)
    fail_with: Exception | None = None
    ended: list[tuple[str, str]] = field(default_factory=list)

    def end_interrupted(self, retraind_run_id: str, reason: str) -> list[str]:
        self.ended.append((retraind_run_id, reason))
        return []

    def record(self, run: RunRecord, model_name: str) -> Registration:
        if self.fail_with is not None:
            raise self.fail_with
        self.records.append(run)
        return Registration(
            f"mlflow-{len(self.records)}",
            str(len(self.records)) if run.model_dir else None,
            len(self.records) == 1 and run.model_dir is not None,
        )


@dataclass
class MemoryStageCache:
    """The stage cache in a dict, as the journal-backed one keeps it."""

    entries: dict[tuple[str, str], CacheEntry] = field(default_factory=dict)

    def lookup(self, stage: str, key: str) -> CacheEntry | None:
        return self.entries.get((stage, key))

    def store(self, stage: str, key: str, run_id: str, result: StageResult) -> None:
        outputs = json.loads(json.dumps(result.outputs))  # what the journal's JSON column gives back
        self.entries[(stage, key)] = CacheEntry(run_id, result.summary, outputs)


@dataclass
class RecordingReporter:
    events: list[tuple[str, Any]] = field(default_factory=list)

    def run_started(self, start: Any) -> None:
        self.events.append(("run_started", start.run_id))

    def stage_started(self, run_id: str, stage: str) -> None:
        self.events.append(("started", stage))

    def stage_finished(self, run_id: str, result: StageResult, duration_s: float) -> None:
        self.events.append(("finished", result.stage))

    def stage_failed(self, run_id: str, stage: str, duration_s: float, error: RetraindError) -> None:
        self.events.append(("failed", stage))

    def run_finished(self, outcome: Any) -> None:
        self.events.append(("run", outcome.exit_code))


class FakeClock:
    """A clock that moves only when the test says so: feed `now()` to the pure state machines."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self._now += seconds
        return self._now
