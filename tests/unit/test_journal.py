"""The state journal against real SQLite files: round trips, recovery after a crash, threads."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.core.errors import ConfigError, InfrastructureError
from daemon.state.journal import MIGRATIONS, Journal, RunRow
from tests.conftest import ROOT

CAUSES = (("git", "main@abc123"), ("data", "train.csv modified"))


@dataclass
class FakeClock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "journal.db"


@pytest.fixture
def journal(path: Path, clock: FakeClock) -> Iterator[Journal]:
    j = Journal.open(path, clock=clock)
    yield j
    j.close()


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection beside the journal's, closed afterwards (sqlite3's own `with` does not close)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def started(j: Journal, run_id: str, clock: FakeClock, *stages: str, attempt: int = 1) -> None:
    j.start_run(run_id, "commit", CAUSES, "abc123", "d" * 64, attempt=attempt)
    for stage in stages:
        clock.advance(1)
        j.stage_started(run_id, stage)


def test_new_file_gets_wal_schema_version_and_foreign_keys(journal: Journal, path: Path) -> None:
    with raw(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"events", "runs", "stages"} <= tables
    with pytest.raises(InfrastructureError, match="FOREIGN KEY"):
        journal.stage_started("no-such-run", "build")


def test_run_round_trip(journal: Journal, clock: FakeClock) -> None:
    first, second = journal.record_event(CAUSES[:1]), journal.record_event(CAUSES[1:])
    clock.advance(5)
    journal.start_run("r1", "commit", CAUSES, "abc123", "d" * 64, event_ids=[first, second])
    journal.stage_started("r1", "build")
    clock.advance(30)
    journal.stage_finished("r1", "build", 30.0, "ok", "image sha256:1")
    clock.advance(2)
    journal.finish_run("r1", "succeeded", 0, f1=0.73, model_version="4", mlflow_run_id="m1", image_id="i1")

    assert journal.get_run("r1") == RunRow(
        "r1", "commit", CAUSES, "abc123", "d" * 64, "succeeded", 1, None, 1_005.0, 1_037.0,
        0, None, None, 0.73, "4", "m1", "i1",
    )  # fmt: skip
    [stage] = journal.stages("r1")
    assert (stage.started_at, stage.finished_at, stage.duration_s) == (1_005.0, 1_035.0, 30.0)
    assert (stage.outcome, stage.summary) == ("ok", "image sha256:1")
    assert journal.pending_events() == []
    assert journal.current_run() is None
    assert journal.get_run("nope") is None


def test_events_wait_for_a_run(journal: Journal) -> None:
    taken, waiting = journal.record_event(CAUSES[:1]), journal.record_event(CAUSES[1:])
    journal.start_run("r1", "data", CAUSES[:1], None, None, event_ids=[taken])
    [pending] = journal.pending_events()
    assert (pending.id, pending.causes, pending.run_id) == (waiting, CAUSES[1:], None)


def test_a_failed_write_leaves_nothing_behind(journal: Journal) -> None:
    with pytest.raises(ValueError, match="unknown event id"):
        journal.start_run("r1", "commit", CAUSES, "abc", None, event_ids=[999])
    assert journal.get_run("r1") is None
    journal.start_run("r1", "commit", CAUSES, "abc", None)  # the run id is still free
    assert journal.current_run() == journal.get_run("r1")


def test_finish_run_needs_a_final_status_and_a_running_run(journal: Journal) -> None:
    journal.start_run("r1", "commit", CAUSES, "abc", None)
    with pytest.raises(ValueError, match="not one of"):
        journal.finish_run("r1", "running", None)
    journal.finish_run("r1", "gate_rejected", 3, failed_stage="validate", error="3 empty rows")
    with pytest.raises(ValueError, match="not running"):
        journal.finish_run("r1", "succeeded", 0)
    with pytest.raises(ValueError, match="not running"):
        journal.finish_run("never-started", "failed", 4)
    row = journal.get_run("r1")
    assert row is not None
    assert (row.status, row.exit_code, row.failed_stage, row.error) == (
        "gate_rejected",
        3,
        "validate",
        "3 empty rows",
    )


def test_recover_marks_running_runs_and_names_the_stage(path: Path, clock: FakeClock) -> None:
    journal = Journal.open(path, clock=clock)
    started(journal, "r1", clock, "build")
    journal.stage_finished("r1", "build", 1.0, "ok", "built")
    clock.advance(1)
    journal.stage_started("r1", "train")
    journal.close()  # the daemon dies here

    clock.advance(60)
    journal = Journal.open(path, clock=clock)
    [run] = journal.recover_interrupted()
    assert (run.run_id, run.status, run.finished_at) == ("r1", "interrupted", clock.now)
    assert (run.failed_stage, run.error) == ("train", "daemon stopped during stage train")
    assert Journal.should_retry(run)
    train = journal.stages("r1")[-1]
    assert (train.outcome, train.duration_s) == ("interrupted", 60.0)
    assert journal.current_run() is None
    assert journal.get_run("r1") == run
    journal.close()


@pytest.mark.parametrize(
    ("finish_build", "error"),
    [(None, "daemon stopped before any stage started"), (True, "daemon stopped after stage build finished")],
)
def test_recover_says_where_a_run_stopped_between_stages(
    journal: Journal, clock: FakeClock, finish_build: bool | None, error: str
) -> None:
    started(journal, "r1", clock, *(["build"] if finish_build else []))
    if finish_build:
        journal.stage_finished("r1", "build", 1.0, "ok", "built")
    [run] = journal.recover_interrupted()
    assert (run.error, run.failed_stage) == (error, None)


def test_a_retry_interrupted_again_is_not_retried(journal: Journal, clock: FakeClock) -> None:
    event = journal.record_event(CAUSES)
    journal.start_run("r1", "commit", CAUSES, "abc", None, event_ids=[event])
    journal.stage_started("r1", "train")
    [first] = journal.recover_interrupted()
    assert Journal.should_retry(first)

    journal.start_run("r2", first.trigger, first.causes, first.commit, None, attempt=2, retry_of="r1")
    journal.stage_started("r2", "validate")
    [second] = journal.recover_interrupted()  # r1 has its retry, so only r2 comes back
    assert (second.run_id, second.attempt, second.retry_of) == ("r2", 2, "r1")
    assert second.error == "daemon stopped during stage validate"
    assert not Journal.should_retry(second)
    assert journal.recover_interrupted() == []
    with raw(journal.path) as conn:
        assert conn.execute("SELECT run_id FROM events WHERE id = ?", (event,)).fetchone() == ("r2",)


def test_an_interruption_whose_retry_never_started_comes_back(path: Path, clock: FakeClock) -> None:
    journal = Journal.open(path, clock=clock)
    started(journal, "r1", clock, "build")
    [run] = journal.recover_interrupted()
    journal.close()  # the daemon dies again before queueing the retry

    clock.advance(10)
    journal = Journal.open(path, clock=clock)
    assert journal.recover_interrupted() == [run]  # unchanged, still to be retried
    journal.close()


def test_should_retry_only_interrupted_first_attempts(journal: Journal) -> None:
    journal.start_run("r1", "commit", CAUSES, "abc", None)
    running = journal.get_run("r1")
    assert running is not None
    assert not Journal.should_retry(running)


def test_recent_runs_newest_first(journal: Journal, clock: FakeClock) -> None:
    for run_id in ("a", "b", "c"):
        clock.advance(1)
        journal.start_run(run_id, "schedule", (), None, None)
        journal.finish_run(run_id, "up_to_date", 0)
    journal.start_run("d", "schedule", (), None, None)  # same start time as c: insertion order decides
    assert [r.run_id for r in journal.recent_runs(3)] == ["d", "c", "b"]
    assert [r.run_id for r in journal.recent_runs(10)] == ["d", "c", "b", "a"]
    assert journal.recent_runs(0) == []
    current = journal.current_run()
    assert current is not None and current.run_id == "d"


def test_last_success_and_gauges(journal: Journal, clock: FakeClock) -> None:
    assert journal.last_success() is None
    assert journal.gauges() == {}
    runs = [
        ("before-the-gate", "succeeded", 0.68, "1", None),
        ("old", "succeeded", 0.70, "2", True),
        ("challenger", "succeeded", 0.60, "3", False),
        ("unregistered", "succeeded", 0.75, None, None),
        ("rejected", "gate_rejected", None, None, None),
    ]
    for run_id, status, f1, version, champion in runs:
        clock.advance(10)
        journal.start_run(run_id, "commit", CAUSES, "abc", None)
        clock.advance(5)
        journal.finish_run(run_id, status, 0, f1=f1, model_version=version, champion=champion)
    success = journal.last_success()
    assert success is not None and success.run_id == "unregistered"
    assert journal.gauges() == {
        "last_run_f1": 0.75,
        "last_run_finished_at": 1_075.0,
        "last_success_finished_at": 1_060.0,
        "champion_f1": 0.70,
    }


def test_reopening_keeps_everything(path: Path, clock: FakeClock) -> None:
    journal = Journal.open(path, clock=clock)
    event = journal.record_event(CAUSES)
    journal.start_run("r1", "commit", CAUSES, "abc", "d" * 64, event_ids=[event])
    journal.finish_run("r1", "succeeded", 0, f1=0.8, model_version="2")
    before = journal.get_run("r1")
    journal.close()
    again = Journal.open(path, clock=clock)
    assert again.get_run("r1") == before
    assert again.record_event(CAUSES) == event + 1
    again.close()


def test_migrations_run_forward_once_and_refuse_a_newer_file(path: Path, clock: FakeClock) -> None:
    Journal.open(path, clock=clock).close()
    with raw(path) as conn:
        conn.execute(
            "INSERT INTO runs (run_id, trigger, causes, status) VALUES ('r1', 'ci', '[]', 'running')"
        )
    newer = (*MIGRATIONS, ("ALTER TABLE runs ADD COLUMN note TEXT",))
    Journal.open(path, clock=clock, migrations=newer).close()
    Journal.open(path, clock=clock, migrations=newer).close()  # already at the newest: nothing re-runs
    with raw(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (len(newer),)
        assert conn.execute("SELECT run_id, note FROM runs").fetchall() == [("r1", None)]
    with pytest.raises(ConfigError, match=f"schema version {len(newer)}"):
        Journal.open(path, clock=clock)


def test_a_file_that_is_not_a_journal_is_a_config_error_saying_to_move_it_away(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database, just bytes" * 100)
    with pytest.raises(ConfigError, match="is not a usable SQLite database") as caught:
        Journal.open(path)
    assert caught.value.exit_code == 78 and f"mv {path} {path}.broken" in str(caught.value)


# A child process writes, the test kills it with SIGKILL, the journal must come back consistent.
CHILD = """
import sqlite3, sys
from itertools import count
from pathlib import Path
from daemon.state.journal import Journal

path, mode = Path(sys.argv[1]), sys.argv[2]
journal = Journal.open(path)
if mode == "loop":  # commit runs as fast as possible, report each one after its commit
    for i in count():
        event = journal.record_event([("git", str(i))])
        journal.start_run(f"r{i}", "commit", [("git", str(i))], "abc", None, event_ids=[event])
        journal.stage_started(f"r{i}", "train")
        journal.stage_finished(f"r{i}", "train", 0.1, "ok", "trained")
        journal.finish_run(f"r{i}", "succeeded", 0, f1=0.5)
        print(f"r{i}", flush=True)
else:  # commit one run, then die halfway through a large transaction that has spilled into the WAL
    journal.start_run("committed", "commit", [], "abc", None)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA cache_size = 1")
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO events (received_at, causes) VALUES (0, ?)", [("x" * 500,)] * 5000)
    conn.execute("UPDATE runs SET status = 'failed'")
    print("in-transaction", flush=True)
    sys.stdin.read()
"""


def kill_child(path: Path, mode: str, lines: int) -> list[str]:
    """Run CHILD until it has printed `lines` lines, then SIGKILL it; return what it printed."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), mode],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    printed = [child.stdout.readline().strip() for _ in range(lines)]
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert all(printed), "the child died before printing"
    return printed


def assert_consistent(path: Path) -> None:
    with raw(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []


def test_sigkill_mid_transaction_keeps_committed_data_only(path: Path, clock: FakeClock) -> None:
    kill_child(path, "mid-transaction", 1)
    assert path.with_name("journal.db-wal").stat().st_size > 1_000_000  # uncommitted pages reached the WAL
    assert_consistent(path)
    journal = Journal.open(path, clock=clock)
    run = journal.get_run("committed")
    assert run is not None and run.status == "running"
    assert journal.pending_events() == []  # none of the 5000 uncommitted rows survived
    assert [r.run_id for r in journal.recover_interrupted()] == ["committed"]  # and the file is writable
    journal.close()


def test_sigkill_while_writing_loses_no_committed_run(path: Path, clock: FakeClock) -> None:
    printed = kill_child(path, "loop", 25)
    assert_consistent(path)
    journal = Journal.open(path, clock=clock)
    for run_id in printed:
        run = journal.get_run(run_id)
        assert run is not None and (run.status, run.f1) == ("succeeded", 0.5)
    runs = journal.recent_runs(10_000)
    assert {r.status for r in runs} <= {"succeeded", "running"}
    assert sum(r.status == "running" for r in runs) <= 1
    journal.recover_interrupted()
    assert journal.current_run() is None
    journal.close()


def hammer(journal: Journal, prefix: str, start: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        start.wait()
        for i in range(100):
            event = journal.record_event([("thread", prefix)])
            journal.start_run(f"{prefix}{i}", "data", [("thread", prefix)], None, None, event_ids=[event])
            journal.stage_started(f"{prefix}{i}", "train")
            journal.finish_run(f"{prefix}{i}", "succeeded", 0)
    except BaseException as e:
        errors.append(e)


@pytest.mark.parametrize("connections", [1, 2])
def test_two_threads_write_at_once(path: Path, connections: int) -> None:
    journals = [Journal.open(path) for _ in range(connections)]
    start, errors = threading.Barrier(2), []  # type: ignore[var-annotated]
    threads = [
        threading.Thread(target=hammer, args=(journals[i % connections], prefix, start, errors))
        for i, prefix in enumerate(("a", "b"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(journals[0].recent_runs(1_000)) == 200
    assert journals[0].pending_events() == []
    for journal in journals:
        journal.close()
    assert_consistent(path)


def test_last_attempted_counts_a_retry_interrupted_too_but_not_a_cancelled_run(
    journal: Journal, clock: FakeClock
) -> None:
    journal.start_run("r1", "data", [], "c1", "d1")
    journal.recover_interrupted()
    assert journal.last_attempted() is None  # interrupted once: its retry will be the attempt
    clock.advance(1)
    journal.start_run("r2", "data", [], "c1", "d1", attempt=2, retry_of="r1")
    journal.recover_interrupted()
    assert journal.last_attempted().run_id == "r2"  # type: ignore[union-attr]
    clock.advance(1)
    journal.start_run("r3", "manual", [], "c1", "d1")
    journal.finish_run("r3", "cancelled", 130)
    assert journal.last_attempted().run_id == "r2"  # type: ignore[union-attr]


def test_a_write_replayed_later_keeps_the_time_it_happened(journal: Journal, clock: FakeClock) -> None:
    clock.advance(100)
    journal.start_run("r1", "data", [], "c1", "d1", at=10.0)
    journal.stage_started("r1", "build", at=11.0)
    journal.stage_finished("r1", "build", 1.5, "success", "ok", at=12.5)
    journal.finish_run("r1", "failed", 5, at=13.0)
    run = journal.get_run("r1")
    assert run is not None and (run.started_at, run.finished_at) == (10.0, 13.0)
    (stage,) = journal.stages("r1")
    assert (stage.started_at, stage.finished_at) == (11.0, 12.5)
