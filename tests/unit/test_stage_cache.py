"""The stage cache in the runner: which stages a change reruns, and what is reused or refused."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from daemon.core.inputs import DataFile, Manifest
from daemon.core.outcome import PipelineOutcome
from daemon.core.params import TrainParams
from daemon.core.stages import Ports, RunContext, StageResult
from daemon.engine.pipeline import run_stages
from daemon.state.journal import Journal
from daemon.state.stagecache import JournalStageCache
from handlers.registry import STAGES
from tests.fakes import FakeContainers, FakeTracker, MemoryStageCache, RecordingReporter
from tests.unit.test_pipeline import containers as fresh_containers

BUILT = "sha256:" + "b" * 64  # the image ID the fake build produces


def containers(**override: object) -> FakeContainers:
    """Scripted containers on a machine where an earlier run's image is still present."""
    fake = fresh_containers(**override)
    fake.images["localhost/retraind:latest"] = BUILT
    return fake


def run(
    ctx: RunContext, run_id: str, fake: FakeContainers, cache: object, force: bool = False
) -> PipelineOutcome:
    ports = Ports(fake, FakeTracker(), cache=cache)  # type: ignore[arg-type]
    ctx = replace(ctx, run_id=run_id, run_dir=ctx.run_dir.parent / run_id)
    return run_stages(ctx, list(STAGES.values()), ports, RecordingReporter(), use_cache=not force)


def ran(fake: FakeContainers) -> set[str]:
    stages = {job.labels["io.retraind.stage"] for job in fake.ran}
    return stages | ({"build"} if fake.built else set())


def test_nothing_changed_runs_no_stage_and_says_which_run_it_matches(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    first = run(ctx, "r1", containers(), cache)
    assert first.ok and not first.up_to_date
    again = containers()
    second = run(ctx, "r2", again, cache)
    assert {s: r.cached_from for s, r in second.results.items()} == {s: "r1" for s in STAGES}
    assert second.up_to_date and second.exit_code == 0
    assert again.ran == [] and again.built == []
    assert {r.cached_from for r in second.results.values()} == {"r1"}
    assert second.results["register"].outputs["model_version"] == "1"
    assert second.results["train"].summary.startswith("up to date: weighted F1 0.7300")


def test_force_runs_everything_and_keys_are_still_computed(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    run(ctx, "r1", containers(), cache)
    fake = containers()
    forced = run(ctx, "r2", fake, cache, force=True)
    assert forced.ok and not forced.up_to_date and ran(fake) == set(STAGES) - {"register"}
    assert all(r.cache_key and not r.cached_from for r in forced.results.values())


def test_a_parameter_change_retrains_but_reuses_build_validate_and_preprocess(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    run(ctx, "r1", containers(), cache)
    fake = containers()
    outcome = run(replace(ctx, params=TrainParams(c=0.5)), "r2", fake, cache)
    assert ran(fake) == {"train"}
    assert [s for s, r in outcome.results.items() if r.cached_from] == ["build", "validate", "preprocess"]
    assert outcome.results["register"].outputs["model_version"] == "1"  # a fresh FakeTracker: registered anew


def test_new_data_reruns_everything_but_the_build(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    run(ctx, "r1", containers(), cache)
    fake = containers()
    new_drop = replace(ctx, manifest=Manifest((DataFile("tweets.csv", 11, "e" * 64),)))
    outcome = run(new_drop, "r2", fake, cache)
    assert ran(fake) == {"validate", "preprocess", "train"} and outcome.results["build"].cached_from == "r1"


def test_a_copied_script_changing_rebuilds_and_an_identical_image_reuses_the_rest(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    (ctx.git.workdir / "Containerfile").write_text("FROM base\nCOPY scripts/ /opt/scripts/\n")
    (ctx.git.workdir / "scripts" / "train.py").write_text("v1")
    run(ctx, "r1", containers(), cache)
    (ctx.git.workdir / "scripts" / "train.py").write_text("v1  # a comment")
    fake = containers()
    outcome = run(ctx, "r2", fake, cache)
    assert fake.built and outcome.results["build"].cached_from == ""
    # the fake builds the same image ID: everything downstream is keyed by it and is reused
    assert all(
        outcome.results[s].cached_from == "r1" for s in ("validate", "preprocess", "train", "register")
    )


def test_an_ignored_file_does_not_touch_the_build_key(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    (ctx.git.workdir / "Containerfile").write_text("FROM base\nCOPY scripts/ /opt/scripts/\n")
    (ctx.git.workdir / ".containerignore").write_text("**/node_modules\n")
    run(ctx, "r1", containers(), cache)
    (ctx.git.workdir / "scripts" / "node_modules").mkdir()
    (ctx.git.workdir / "scripts" / "node_modules" / "x.js").write_text("x")
    (ctx.git.workdir / "README.md").write_text("not copied")
    assert run(ctx, "r2", containers(), cache).up_to_date


def test_a_cached_result_whose_outputs_are_gone_is_not_reused(ctx: RunContext) -> None:
    cache = MemoryStageCache()
    first = run(ctx, "r1", containers(), cache)
    shutil.rmtree(first.results["preprocess"].outputs["dir"])
    fake = containers()
    fake.images.clear()  # the image was pruned too
    fake.images["localhost/retraind-base:bookworm"] = "sha256:base"
    outcome = run(ctx, "r2", fake, cache)
    assert ran(fake) == {"build", "preprocess"}  # the model itself is still there
    assert outcome.results["validate"].cached_from == "r1"


def test_failed_stages_are_not_cached(ctx: RunContext) -> None:
    from tests.fakes import writes

    cache = MemoryStageCache()
    rejected = containers(**{"validate-data": writes("data-check.json", {"problems": [{"message": "x"}]}, 1)})
    assert run(ctx, "r1", rejected, cache).exit_code == 3
    assert {stage for stage, _ in cache.entries} == {"build", "build.inspect"}  # the image, not the drop
    fake = containers()
    assert run(ctx, "r2", fake, cache).ok and "validate" in ran(fake)


def test_the_journal_keeps_entries_across_processes(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    JournalStageCache(journal).store("train", "k1", "r1", StageResult("train", "F1 0.7", {"dir": "/x"}))
    journal.close()
    reopened = Journal.open(tmp_path / "journal.db")
    found = JournalStageCache(reopened).lookup("train", "k1")
    assert found is not None and found.run_id == "r1" and found.outputs == {"dir": "/x"}
    assert JournalStageCache(reopened).lookup("train", "k2") is None


def test_the_daemon_uses_the_cache_unless_a_trigger_says_force(ctx: RunContext, tmp_path: Path) -> None:
    from daemon.adapters.notify import Notifier
    from daemon.core.debounce import Cause, PipelineEvent
    from daemon.engine.worker import Queued
    from tests.unit.test_worker import execute

    journal = Journal.open(tmp_path / "journal.db")
    cache = JournalStageCache(journal)

    def queued(*causes: Cause) -> Queued:
        return Queued(PipelineEvent(frozenset(causes), 0.0, 0.0))

    def daemon_run(item: Queued, run_id: str) -> tuple[str, FakeContainers]:
        fake = containers()
        prepare = lambda rid, trigger: replace(ctx, run_id=rid, run_dir=tmp_path / rid)  # noqa: E731
        ports = Ports(fake, FakeTracker(), cache=cache)
        status = execute(item, run_id, prepare, journal, ports, STAGES, Notifier(None), lambda: None)
        return status, fake

    manual = Cause("manual", "alice")
    assert daemon_run(queued(manual), "d1")[0] == "succeeded"
    status, fake = daemon_run(queued(manual), "d2")
    assert status == "up_to_date" and not fake.ran
    assert [s.outcome for s in journal.stages("d2")] == ["cache_hit"] * 5
    status, fake = daemon_run(queued(manual, Cause("force", "alice")), "d3")
    assert status == "succeeded" and ran(fake) == set(STAGES) - {"register"}
    assert journal.get_run("d3").trigger == "manual"  # type: ignore[union-attr]
