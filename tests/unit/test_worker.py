"""One daemon run end to end with fakes: every outcome has a journal row and one run_finished line."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from daemon.adapters.heldwrites import HeldWrites
from daemon.adapters.notify import Notifier
from daemon.core.config import load_settings
from daemon.core.debounce import Cause, PipelineEvent
from daemon.core.errors import EXIT_CRASH, EXIT_INFRA
from daemon.core.jobs import CmdResult
from daemon.core.stages import Ports, RunContext, Stage
from daemon.engine.metrics import Metrics
from daemon.engine.worker import Queued, Runner, daemon_recorder
from daemon.state.journal import Journal
from daemon.state.stagecache import JournalStageCache
from handlers.registry import STAGES
from tests.fakes import FakeContainers, FakeTracker, writes
from tests.unit.test_pipeline import DATA_OK, containers

DATA = Queued(PipelineEvent(frozenset({Cause("data", "drop.csv")}), 0.0, 0.0))


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
    warm_up: Callable[[], object] | None = None,
    state_dir: Path | None = None,
) -> str:
    """One run through the daemon's runner and its recorders, wired as build_service wires them
    (the state directory: the journal's unless given)."""
    state = state_dir or journal.path.parent
    settings = load_settings({"state_dir": state}, environ={"HOME": str(state)})
    writes = HeldWrites()
    pinned = lambda s, rid, trigger: prepare(rid, trigger)  # noqa: E731
    runner = Runner(pinned, ports, tuple(stages.values()), writes, metrics)
    recorder = daemon_recorder(journal, writes, notifier, metrics, state, warm_up)
    return runner.execute(item, run_id, settings, recorder, cancelled)


def daemon_run(
    ctx: RunContext, journal: Journal, run_id: str, fake: FakeContainers, metrics: Metrics | None = None
) -> str:
    prepare = lambda rid, trigger: replace(ctx, run_id=rid, run_dir=ctx.run_dir.parent / rid)  # noqa: E731
    return execute(DATA, run_id, prepare, journal, Ports(fake, FakeTracker()), STAGES, Notifier(None),
                   lambda: None, metrics, state_dir=ctx.settings.state_dir)  # fmt: skip


def finished_lines(logs: list[dict[str, object]], run_id: str) -> list[dict[str, object]]:
    return [e for e in logs if e["event"] == "run_finished" and e.get("run_id") == run_id]


def test_a_prepare_that_raises_any_error_is_a_failed_run_with_a_row_and_one_finished_line(
    tmp_path: Path,
) -> None:
    journal = Journal.open(tmp_path / "state" / "journal.db")
    registry = CollectorRegistry()

    def symlink_loop(run_id: str, trigger: str) -> RunContext:
        raise OSError(errno.ELOOP, "Too many levels of symbolic links", str(tmp_path / "data" / "loop.csv"))

    with structlog.testing.capture_logs() as logs:
        status = execute(DATA, "r1", symlink_loop, journal, Ports(FakeContainers(), FakeTracker()), STAGES,
                         Notifier(None), lambda: None, Metrics(registry))  # fmt: skip
    assert status == "failed"
    run = journal.get_run("r1")
    assert run is not None and (run.status, run.exit_code) == ("failed", EXIT_INFRA)
    assert "Too many levels of symbolic links" in (run.error or "") and run.finished_at is not None
    (line,) = finished_lines(logs, "r1")
    assert line["exit_code"] == EXIT_INFRA and "symbolic links" in str(line["error"])
    assert registry.get_sample_value("retraind_runs_total", {"outcome": "failed", "trigger": "data"}) == 1


def test_a_full_disk_in_prepare_says_no_space_and_where_to_free_it(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "state" / "journal.db")
    registry = CollectorRegistry()

    def full(run_id: str, trigger: str) -> RunContext:
        raise OSError(
            errno.ENOSPC, "No space left on device", str(tmp_path / "state" / "manifest-cache.json")
        )

    execute(DATA, "r1", full, journal, Ports(FakeContainers(), FakeTracker()), STAGES, Notifier(None),
            lambda: None, Metrics(registry))  # fmt: skip
    run = journal.get_run("r1")
    assert run is not None and run.status == "failed" and run.exit_code == EXIT_INFRA
    assert (run.error or "").startswith("no space left on device: ")
    assert f"free space in {tmp_path / 'state'}" in (run.error or "")
    assert registry.get_sample_value("retraind_loop_errors_total", {"reason": "no_space"}) == 1
    assert registry.get_sample_value("retraind_state_no_space") == 1


def test_a_handler_that_crashes_fails_its_stage_and_the_run_with_a_row(
    ctx: RunContext, tmp_path: Path
) -> None:
    journal = Journal.open(tmp_path / "journal.db")

    def buggy(job: object) -> CmdResult:
        raise KeyError("rows")

    with structlog.testing.capture_logs() as logs:
        status = daemon_run(ctx, journal, "r1", containers(**{"preprocess": buggy}))
    assert status == "failed"
    run = journal.get_run("r1")
    assert run is not None and (run.status, run.exit_code, run.failed_stage) == (
        "failed",
        EXIT_CRASH,
        "preprocess",
    )
    assert "internal error: KeyError" in (run.error or "")
    assert [s.outcome for s in journal.stages("r1")][-1] == "RetraindError"
    assert len(finished_lines(logs, "r1")) == 1
    assert [e["event"] for e in logs if e["event"] == "run_crashed"] == ["run_crashed"]  # its traceback


def drift_check(content: dict[str, object]):  # type: ignore[no-untyped-def]
    def script(job):  # type: ignore[no-untyped-def]
        out = next(m.host for m in job.mounts if m.container == "/out")
        (out / "drift-reference.json").write_text(json.dumps(content))
        return writes("data-check.json", DATA_OK)(job)

    return script


def test_only_a_successful_run_advances_the_drift_reference(ctx: RunContext, tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "journal.db")
    reference = ctx.settings.state_dir / "drift-reference.json"
    reference.parent.mkdir(parents=True, exist_ok=True)
    reference.write_text('{"drop": "accepted"}')
    parity_fails = writes("parity.json", {"rows": 100, "mismatches": 3, "examples": []}, returncode=1)
    rejected = containers(
        **{"validate-data": drift_check({"drop": "rejected"}), "preprocess-parity": parity_fails}
    )
    assert daemon_run(ctx, journal, "r1", rejected) == "gate_rejected"
    assert json.loads(reference.read_text()) == {"drop": "accepted"}  # validate passed, parity did not
    good = containers(**{"validate-data": drift_check({"drop": "good"})})
    assert daemon_run(ctx, journal, "r2", good) == "succeeded"
    assert json.loads(reference.read_text()) == {"drop": "good"}


def test_mlflow_is_warmed_up_once_validate_really_passed_and_not_for_a_run_from_the_cache(
    tmp_path: Path, ctx: RunContext
) -> None:
    journal = Journal.open(tmp_path / "state" / "journal.db")
    ports = Ports(containers(), FakeTracker(), cache=JournalStageCache(journal))
    calls: list[str] = []
    prepare = lambda rid, trigger: replace(ctx, run_id=rid, run_dir=ctx.run_dir.parent / rid)  # noqa: E731

    def run(run_id: str) -> str:
        return execute(DATA, run_id, prepare, journal, ports, STAGES, Notifier(None), lambda: None,
                       warm_up=lambda: calls.append(run_id))  # fmt: skip

    assert run("r1") == "succeeded" and calls == ["r1"]
    assert run("r2") == "up_to_date" and calls == ["r1"]  # every stage from the cache: MLflow not needed
    rejected = Ports(
        containers(**{"validate-data": writes("data-check.json", {"problems": []}, 1)}), FakeTracker()
    )
    assert execute(DATA, "r3", prepare, journal, rejected, STAGES, Notifier(None), lambda: None,
                   warm_up=lambda: calls.append("r3")) == "gate_rejected"  # fmt: skip
    assert calls == ["r1"]
