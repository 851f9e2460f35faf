"""The typed facts of a finished run (daemon/core/outcome.py), read out of the stage results once."""

from __future__ import annotations

from dataclasses import replace

from daemon.core.errors import CancelledError, GateRejectedError, StageFailedError
from daemon.core.outcome import Fanout, PipelineOutcome, RunStart, Silent, run_status
from daemon.core.stages import STAGE_NAMES, StageResult
from daemon.core.vocab import RETURNED, RUN_STATUSES, TRIGGERS
from daemon.engine.metrics import RUN_OUTCOMES
from daemon.state.journal_schema import FINAL_STATUSES

BUILD = StageResult("build", "", {"image_id": "sha256:" + "b" * 64})
TRAIN = StageResult("train", "", {"metrics": {"f1_score_weighted": 0.7311}})
REGISTER = StageResult("register", "", {"mlflow_run_id": "m1", "model_version": "3", "champion": True})
RESULTS = {"build": BUILD, "train": TRAIN, "register": REGISTER}


def test_a_run_that_registered_says_its_f1_version_image_and_champion() -> None:
    outcome = PipelineOutcome("r1", RESULTS, {}, 5.0, trigger="data")
    assert (outcome.status, outcome.trigger, outcome.reasons) == ("succeeded", "data", ())
    assert (outcome.f1, outcome.model_version, outcome.mlflow_run_id) == (0.7311, "3", "m1")
    assert outcome.image_id == BUILD.outputs["image_id"]
    assert outcome.champion is True and not outcome.queued and outcome.cached_stages == ()


def test_a_registration_from_the_cache_made_no_champion_and_one_in_the_outbox_is_queued() -> None:
    cached = {name: replace(r, cached_from="r0") for name, r in RESULTS.items()}
    up_to_date = PipelineOutcome("r2", cached, {}, 0.4)
    assert up_to_date.status == "up_to_date" and up_to_date.up_to_date_with == "r0"
    assert up_to_date.champion is None and up_to_date.model_version == "3"
    assert up_to_date.cached_stages == ("build", "train", "register")
    waiting = StageResult(
        "register", "", {"mlflow_run_id": None, "model_version": None, "champion": False}, final=False
    )
    queued = PipelineOutcome("r3", {**RESULTS, "register": waiting}, {}, 5.0)
    assert queued.queued and queued.ok and queued.model_version is None and queued.champion is False


def test_a_failed_run_gives_its_reasons_and_the_status_its_error_names() -> None:
    gate = GateRejectedError("validate", ["3 rows have no label", "unknown label 'meh'"])
    rejected = PipelineOutcome("r4", {"build": BUILD}, {}, 1.0, "validate", gate)
    assert rejected.status == "gate_rejected" and rejected.reasons == gate.reasons
    assert rejected.f1 is None and rejected.model_version is None and rejected.champion is None
    assert rejected.exit_code == gate.exit_code
    failed = PipelineOutcome("r5", {}, {}, 1.0, "train", StageFailedError("train", 1, "boom"))
    assert failed.status == "failed" and len(failed.reasons) == 1
    assert run_status(CancelledError("train", "SIGTERM")) == "cancelled"


def test_the_words_are_defined_once() -> None:
    assert FINAL_STATUSES == RUN_STATUSES and RUN_OUTCOMES == RUN_STATUSES
    assert set(RETURNED) == set(RUN_STATUSES) - {"interrupted"}
    assert {"commit", "data", "manual", "schedule", "rescan", "ci"} == set(TRIGGERS)
    assert len(STAGE_NAMES) == 5


def test_fanout_tells_every_recorder_in_order() -> None:
    heard: list[str] = []

    class Witness(Silent):
        def __init__(self, name: str) -> None:
            self.name = name

        def run_started(self, start: RunStart) -> None:
            heard.append(f"{self.name}:{start.run_id}")

        def run_finished(self, outcome: PipelineOutcome) -> None:
            heard.append(f"{self.name}:{outcome.status}")

    both = Fanout(Witness("a"), Witness("b"))
    both.run_started(RunStart("r1", "data", (("data", "x.csv"),), "c" * 40, "d" * 64))
    both.stage_started("r1", "build")  # the Silent base ignores it
    both.run_finished(PipelineOutcome("r1", RESULTS, {}, 1.0))
    assert heard == ["a:r1", "b:r1", "a:succeeded", "b:succeeded"]
