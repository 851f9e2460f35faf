"""Images that speak stage contract 2: validate's container goes on to preprocess a drop that passed
(gate.js), preprocess takes its files or runs preprocess.js --parity in one container, and what an
image holds is asked once per image ID. Scripted containers; the real scripts are tested by Jest
and by the podman integration tests."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon.core.errors import EXIT_GATE
from daemon.core.jobs import CmdResult, ContainerJob
from daemon.core.outcome import PipelineOutcome
from daemon.core.stages import Ports, RunContext
from daemon.engine.pipeline import run_stages
from handlers.registry import STAGES
from tests.fakes import FakeContainers, FakeTracker, MemoryStageCache, RecordingReporter, ok, out_dir, writes
from tests.unit.test_pipeline import DATA_OK, train_script

JEST_OK = {"success": True, "exitCode": 0, "numPassedTests": 212, "testResults": []}
PARITY_OK = {"rows": 100, "mismatches": 0, "examples": []}
PARITY_BAD = {"rows": 100, "mismatches": 2, "examples": []}


def printed(contract: int | None) -> str:
    document: dict[str, Any] = {
        "versions": {"node": "18.19.0"},
        "environment": {"debian": []},
        "tests": JEST_OK,
    }
    if contract is not None:
        document["stage_contract"] = contract
    return json.dumps(document)


def preprocessed(job: ContainerJob, parity: dict[str, Any], returncode: int) -> CmdResult:
    """What gate.js or preprocess.js --parity leave in /out."""
    out = out_dir(job)
    (out / "processed.jsonl").write_text('{"tokens": "a b"}\n')
    (out / "summary.json").write_text(json.dumps({"rows_out": 100}))
    (out / "parity.json").write_text(json.dumps(parity))
    return CmdResult(tuple(job.argv), returncode, "", "")


def gate(parity: dict[str, Any] = PARITY_OK, returncode: int = 0) -> Any:
    def script(job: ContainerJob) -> CmdResult:
        writes("data-check.json", DATA_OK)(job)
        return preprocessed(job, parity, returncode) if job.argv[1] == "gate.js" else ok(job)

    return script


def containers(contract: int | None = 2, /, **override: Any) -> FakeContainers:
    scripts = {
        "build-versions": lambda job: ok(job, printed(contract)),
        "validate-data": gate(),
        "preprocess-parity": writes("parity.json", PARITY_OK),
        "preprocess": lambda job: preprocessed(job, PARITY_OK, 0),
        "train": train_script,
    }
    scripts.update(override)
    return FakeContainers(scripts, images={"localhost/retraind-base:bookworm": "sha256:base"})


def run(
    ctx: RunContext, run_id: str, fake: FakeContainers, cache: Any = None, force: bool = False
) -> PipelineOutcome:
    ports = Ports(fake, FakeTracker(), cache=cache)
    ctx = replace(ctx, run_id=run_id, run_dir=ctx.run_dir.parent / run_id)
    return run_stages(ctx, list(STAGES.values()), ports, RecordingReporter(), use_cache=not force)


def steps(fake: FakeContainers) -> list[str]:
    return [job.name.split("-", 2)[2] for job in fake.ran]  # retraind-<run>-<stage>[-<step>]


def test_validate_preprocesses_a_drop_that_passed_and_preprocess_starts_no_container(ctx: RunContext) -> None:
    fake = containers()
    outcome = run(ctx, "r1", fake)
    assert outcome.ok, outcome.error
    assert steps(fake) == ["build-versions", "validate-data", "train"]
    argv = next(j.argv for j in fake.ran if j.name.endswith("validate-data"))
    assert argv[:2] == ("node", "gate.js")
    assert {"--output", "--summary", "--parity"} <= set(argv)
    pre = outcome.results["preprocess"]
    assert pre.outputs["parity"]["rows"] == 100 and "in validate's container" in pre.summary
    taken, written = (
        Path(pre.outputs["dir"]) / "processed.jsonl",
        Path(ctx.run_dir.parent / "r1/validate/processed.jsonl"),
    )
    assert os.path.samefile(taken, written)  # a hard link, not a second copy
    train = next(j for j in fake.ran if j.name.endswith("-train"))
    assert next(m.host for m in train.mounts if m.container == "/in") == Path(pre.outputs["dir"])


def test_a_parity_mismatch_found_in_validates_container_rejects_the_run_at_preprocess(
    ctx: RunContext,
) -> None:
    fake = containers(**{"validate-data": gate(PARITY_BAD, 3)})
    outcome = run(ctx, "r1", fake)
    assert outcome.failed_stage == "preprocess" and outcome.exit_code == EXIT_GATE
    assert outcome.error.kinds == {"parity"}  # type: ignore[union-attr]
    assert "differs from Node on 2 of 100 rows" in str(outcome.error)
    assert "validate" in outcome.results and not any(j.name.endswith("-train") for j in fake.ran)


def test_a_rejected_drop_is_not_preprocessed(ctx: RunContext) -> None:
    rejected = writes(
        "data-check.json", {"passed": False, "problems": [{"check": "header", "message": "x"}]}, 1
    )
    fake = containers(**{"validate-data": rejected})
    outcome = run(ctx, "r1", fake)
    assert outcome.failed_stage == "validate" and outcome.exit_code == EXIT_GATE
    assert not (ctx.run_dir.parent / "r1/validate/processed.jsonl").exists()
    assert steps(fake) == ["build-versions", "validate-data"]


def test_preprocessing_that_fails_after_the_checks_passed_is_a_stage_failure_not_a_rejection(
    ctx: RunContext,
) -> None:
    def fails(job: ContainerJob) -> CmdResult:
        writes("data-check.json", DATA_OK)(job)
        return CmdResult(tuple(job.argv), 1, "", "cannot read tweets.csv")

    outcome = run(ctx, "r1", containers(**{"validate-data": fails}))
    assert outcome.failed_stage == "validate" and outcome.exit_code != EXIT_GATE


def test_after_a_cached_validate_preprocess_runs_one_container_with_the_parity_pipe(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    first = run(ctx, "r1", containers(**{"validate-data": gate(PARITY_BAD, 3)}), cache)
    assert first.failed_stage == "preprocess"  # validate passed and is cached; preprocess is not
    fake = containers()
    second = run(ctx, "r2", fake, cache)
    assert second.ok, second.error
    assert second.results["validate"].cached_from == "r1"
    assert steps(fake) == ["preprocess", "train"]  # r1's files are r1's: not taken
    argv = fake.ran[0].argv
    assert argv[:2] == ("node", "preprocess.js") and "--parity" in argv


def test_an_image_before_the_contract_gets_the_checks_preprocessing_and_parity_in_three_containers(
    ctx: RunContext,
) -> None:
    fake = containers(None)
    outcome = run(ctx, "r1", fake)
    assert outcome.ok, outcome.error
    assert steps(fake) == ["build-versions", "validate-data", "preprocess", "preprocess-parity", "train"]
    assert fake.ran[1].argv[1] == "check-data.js" and "--parity" not in fake.ran[2].argv
    assert outcome.results["build"].outputs["contract"] == 1


def test_what_an_image_holds_is_asked_once_per_image_even_by_forced_runs(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    first, second = containers(), containers()
    assert run(ctx, "r1", first, cache, force=True).ok
    assert run(ctx, "r2", second, cache, force=True).ok
    assert len(second.built) == 1  # forced: podman build ran again
    assert "build-versions" not in steps(second)  # same image ID: same files, same answer
    assert second.ran and steps(second)[0] == "validate-data"
    assert run(ctx, "r3", containers(), None).results["build"].outputs["environment"] == {
        "debian": []
    }  # without a cache, asked every time


def test_the_built_image_id_is_read_from_the_iidfile_as_podman_inspect_prints_it(tmp_path: Path) -> None:
    from daemon.core.jobs import BuildJob
    from handlers.build import built_id

    job = BuildJob(tmp_path, tmp_path / "Containerfile", tag="t", iidfile=tmp_path / "id")
    assert built_id(job) is None  # not written: podman image inspect answers instead
    (tmp_path / "id").write_text("sha256:" + "ab" * 32)
    assert built_id(job) == "ab" * 32
    (tmp_path / "id").write_text("sha256:short")
    assert built_id(job) is None
