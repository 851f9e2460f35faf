"""The daemon loop's decisions, with a real journal and fake ports: recovery and reconcile."""

from __future__ import annotations

import errno
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import structlog
from prometheus_client import CollectorRegistry

from daemon.adapters.notify import Notifier
from daemon.adapters.watch import RawEvent
from daemon.core.config import Settings, load_settings
from daemon.core.debounce import Cause, PipelineEvent
from daemon.core.errors import EXIT_INFRA, ConfigError, InfrastructureError, LostWorkError
from daemon.core.records import RunRecord
from daemon.core.runqueue import Admission, RunQueue
from daemon.core.stages import Ports, RunContext
from daemon.engine.metrics import Metrics
from daemon.engine.service import HEAVY_MODULES, Hooks, Service, debouncer_for, held_writes
from daemon.engine.worker import Queued, Runner, daemon_recorder, merge
from daemon.state.journal import Journal
from daemon.state.outbox import Outbox
from tests.fakes import FakeClock, FakeContainers, FakeTracker
from tests.threadwait import needs_proc_syscall, sleeps_until_woken


def refuse(settings: object, run_id: str) -> RunContext:
    raise ConfigError("no data in this test")


def make_service(
    settings: Settings,
    journal: Journal,
    ports: Ports,
    prepare: Callable[[Settings, str], RunContext],
    hooks: Hooks,
    notifier: Notifier | None = None,
    clock: Callable[[], float] = time.monotonic,
    metrics: Metrics | None = None,
) -> Service:
    """A service wired as build_service wires it, with these ports, no stages and this prepare."""
    metrics = metrics or Metrics(CollectorRegistry())
    notifier = notifier or Notifier(None)
    raw: queue.Queue[RawEvent] = queue.Queue()
    writes = held_writes(metrics, raw)
    runner = Runner(lambda s, run_id, trigger: prepare(s, run_id), ports, (), writes, metrics)
    recorder = daemon_recorder(journal, writes, notifier, metrics, settings.state_dir)
    runs: RunQueue[Queued] = RunQueue(merge, supersede_on_commit=settings.supersede)
    debouncer = debouncer_for(settings)
    return Service(settings, journal, raw, debouncer, runs, runner, recorder, hooks, notifier, metrics, clock)


@pytest.fixture
def service(tmp_path: Path) -> Service:
    settings = load_settings({"state_dir": tmp_path / "state"}, environ={"HOME": str(tmp_path)})
    journal = Journal.open(tmp_path / "journal.db")
    ids = iter(f"r{i}" for i in range(100))
    hooks = Hooks(new_run_id=lambda: next(ids), head_commit=lambda s: "c1", data_sha256=lambda s: "d1")
    ports = Ports(FakeContainers(), FakeTracker())
    return make_service(settings, journal, ports, refuse, hooks, clock=FakeClock().now)


def wait_for_run(service: Service) -> None:
    if service._running is not None:
        service._running[1].join(10)


def test_a_run_interrupted_once_is_cleaned_up_and_retried(service: Service) -> None:
    service.journal.start_run("old", "data", [("data", "a.csv")], "c0", "d0")
    service._recover()
    wait_for_run(service)
    runs = service.journal.recent_runs(5)
    assert [(r.run_id, r.status) for r in runs] == [("r0", "failed"), ("old", "interrupted")]
    assert (runs[0].attempt, runs[0].retry_of) == (2, "old")
    assert service.ports.containers.stopped == ["io.retraind.run=old"]  # type: ignore[attr-defined]
    assert service.ports.tracker.ended[0][0] == "old"  # type: ignore[attr-defined]


def test_a_run_interrupted_twice_is_not_retried_and_says_so(service: Service) -> None:
    service.journal.start_run("old", "data", [("data", "a.csv")], "c0", "d0")
    service.journal.recover_interrupted()
    service.journal.start_run("retry", "data", [("data", "a.csv")], "c0", "d0", attempt=2, retry_of="old")
    with structlog.testing.capture_logs() as logs:
        service._recover()
    assert service.queue.running is None
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["run_not_retried"]
    assert service.journal.get_run("retry").status == "interrupted"  # type: ignore[union-attr]


def test_reconcile_queues_only_when_inputs_differ_from_the_last_attempt(service: Service) -> None:
    service.journal.start_run("done", "data", [("data", "a.csv")], "c1", "d1")
    service.journal.finish_run("done", "gate_rejected", 3)
    service.reconcile("periodic")
    assert service.queue.running is None  # a rejected drop is not retried until something changes
    service.hooks = replace(service.hooks, data_sha256=lambda s: "d2")
    service.reconcile("periodic")
    wait_for_run(service)
    assert service.journal.recent_runs(1)[0].causes[0][0] == "rescan"


def test_a_manual_trigger_is_debounced_into_one_event(service: Service) -> None:
    clock = FakeClock()
    service.clock = clock.now
    service._observe(RawEvent("manual", "alice"))
    service._observe(RawEvent("manual", "alice"))
    assert service.debouncer.poll(clock.now(), service._stat) is None
    clock.advance(1.5)
    event = service.debouncer.poll(clock.now(), service._stat)
    assert event is not None and {(c.source, c.detail) for c in event.causes} == {("manual", "alice")}


def test_trigger_force_adds_a_force_cause_to_the_manual_one(service: Service) -> None:
    clock = FakeClock()
    service.clock = clock.now
    service._observe(RawEvent("forced", "alice"))
    service._observe(RawEvent("manual", "bob"))
    clock.advance(1.5)
    event = service.debouncer.poll(clock.now(), service._stat)
    assert event is not None
    assert {(c.source, c.detail) for c in event.causes} == {
        ("manual", "alice"),
        ("force", "alice"),
        ("manual", "bob"),
    }


def test_after_a_retry_interrupted_too_a_restart_queues_no_fresh_run_of_the_same_inputs(
    service: Service,
) -> None:
    service.journal.start_run("first", "data", [("data", "a.csv")], "c1", "d1")  # killed: interrupted
    service.journal.recover_interrupted()
    service.journal.start_run("retry", "data", [("data", "a.csv")], "c1", "d1", attempt=2, retry_of="first")
    with structlog.testing.capture_logs() as logs:
        service._recover()  # the second restart: the retry was killed too
        service.reconcile("start")
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["run_not_retried"]
    assert service.queue.running is None and not [e for e in logs if e["event"] == "event_admitted"]
    assert [r.run_id for r in service.journal.recent_runs(5)] == ["retry", "first"]
    service.hooks = replace(service.hooks, data_sha256=lambda s: "d2")  # new data is still run
    service.reconcile("periodic")
    wait_for_run(service)
    assert service.journal.recent_runs(1)[0].attempt == 1


def test_a_run_cancelled_by_sigterm_is_run_again_after_the_restart(service: Service) -> None:
    service.journal.start_run("stopped", "data", [("data", "a.csv")], "c1", "d1")
    service.journal.finish_run("stopped", "cancelled", 130, error="cancelled during train: daemon stopping")
    service.reconcile("start")
    wait_for_run(service)
    assert [r.run_id for r in service.journal.recent_runs(5)] == ["r0", "stopped"]


class FullDiskJournal(Journal):
    """A real journal whose writes fail as SQLite's do on a full disk, while `full` is set."""

    full = False

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        if write and self.full:
            try:
                raise sqlite3.OperationalError("database or disk is full")
            except sqlite3.Error as e:  # mapped as Journal._tx maps it
                raise InfrastructureError(f"state journal {self.path}: {e}") from e
        with super()._tx(write) as tx:
            yield tx


def test_a_full_disk_fails_a_run_with_its_reason_and_the_loop_recovers_without_losing_the_event(
    tmp_path: Path, ctx: RunContext
) -> None:
    settings = load_settings({"state_dir": tmp_path / "state"}, environ={"HOME": str(tmp_path)})
    journal = FullDiskJournal.open(tmp_path / "state" / "journal.db")
    attempts: list[str] = []

    def prepare(s: object, run_id: str) -> RunContext:
        attempts.append(run_id)
        if len(attempts) == 1:  # the manifest cache cannot be written
            raise OSError(
                errno.ENOSPC, "No space left on device", str(tmp_path / "state/manifest-cache.json")
            )
        journal.full = True  # and then the journal fills up during the run
        return replace(ctx, run_id=run_id)

    ids = iter(f"r{i}" for i in range(100))
    hooks = Hooks(new_run_id=lambda: next(ids), head_commit=lambda s: "c1", data_sha256=lambda s: "d1")
    clock, registry = FakeClock(), CollectorRegistry()
    service = make_service(settings, journal, Ports(FakeContainers(), FakeTracker()), prepare, hooks,
                           clock=clock.now, metrics=Metrics(registry))  # fmt: skip

    def steps(n: int = 3) -> None:
        for _ in range(n):
            clock.advance(service.retry_max_s)  # past any backoff
            service.raw.put(RawEvent("wake"))  # so the step does not wait for its poll timeout
            service._step()
            wait_for_run(service)

    journal.full = True
    drop = PipelineEvent(frozenset({Cause("data", "drop.csv")}), 0.0, 0.0)
    assert service.admit(drop) is Admission.HELD  # not lost: held until the journal can record it
    steps()
    assert (
        service.snapshot()["held_events"] == 1 and registry.get_sample_value("retraind_state_no_space") == 1
    )
    journal.full = False
    steps()
    first = journal.get_run("r0")
    assert first is not None and first.status == "failed" and first.exit_code == EXIT_INFRA
    assert (first.error or "").startswith("no space left on device") and "free space in" in (
        first.error or ""
    )
    assert [e.run_id for e in journal.pending_events()] == [] and service.snapshot()["held_events"] == 0

    service.admit(drop)  # space came back: the next run starts, and the journal fills up again under it
    steps()
    assert journal.get_run("r1") is None and service.writes.count == 2  # start_run, finish_run, in order
    assert registry.get_sample_value("retraind_journal_held_writes") == service.writes.count
    journal.full = False
    steps()
    second = journal.get_run("r1")
    assert second is not None and second.status == "succeeded" and second.finished_at is not None
    assert registry.get_sample_value("retraind_journal_held_writes") == 0
    assert registry.get_sample_value("retraind_loop_errors_total", {"reason": "no_space"}) == 1


def test_an_event_that_raises_is_logged_once_and_counted_and_the_loop_goes_on(service: Service) -> None:
    def broken(window: int = 50) -> None:
        raise RuntimeError("a bug in reconcile")

    service.journal.last_attempted = broken  # type: ignore[method-assign,assignment]
    service.raw.put(RawEvent("reconcile"))
    with structlog.testing.capture_logs() as logs:
        service._step()
    assert [e["where"] for e in logs if e["event"] == "loop_error"] == ["observe reconcile"]
    (family,) = service.metrics.loop_errors.collect()
    counted = {s.labels["reason"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert counted == {"no_space": 0, "other": 1}
    service.raw.put(RawEvent("manual", "alice"))
    service._step()
    assert service.debouncer.pending()  # the next event is handled as usual


class Pings(Notifier):
    def __init__(self) -> None:
        super().__init__(None)
        self.pinged: list[str] = []

    def watchdog(self) -> bool:
        self.pinged.append("WATCHDOG=1")
        return True


@needs_proc_syscall
def test_an_idle_daemon_sleeps_until_an_event_instead_of_polling(service: Service) -> None:
    """Nothing pending, no systemd watchdog, no outbox: the loop waits on its queue with no timeout
    (it woke every second), and an event still gets through at once."""
    assert service.next_wakeup() is None
    loop = threading.Thread(target=service.serve, name="service-loop", daemon=True)
    loop.start()
    assert sleeps_until_woken(loop)
    service.raw.put(RawEvent("manual", "alice"))
    deadline = time.monotonic() + 30
    while not service.debouncer.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert service.debouncer.pending()
    service.stop()
    loop.join(30)
    assert not loop.is_alive()


def test_the_watchdog_ping_is_a_deadline_at_half_of_watchdog_sec(tmp_path: Path) -> None:
    settings = load_settings(
        {"state_dir": tmp_path / "state"}, environ={"HOME": str(tmp_path), "WATCHDOG_USEC": "60000000"}
    )
    clock, notifier = FakeClock(1000.0), Pings()
    hooks = Hooks(new_run_id=lambda: "r", head_commit=lambda s: "c", data_sha256=lambda s: "d")
    service = make_service(settings, Journal.open(tmp_path / "j.db"), Ports(FakeContainers(), FakeTracker()),
                           refuse, hooks, notifier, clock=clock.now)  # fmt: skip
    service.raw.put(RawEvent("wake"))
    service._step()
    assert notifier.pinged == ["WATCHDOG=1"] and service.next_wakeup() == 1030.0
    clock.advance(29.5)
    service.raw.put(RawEvent("wake"))
    service._step()  # woken by an event before the deadline: no ping yet
    assert len(notifier.pinged) == 1 and service.next_wakeup() == 1030.0
    clock.advance(0.5)
    service.raw.put(RawEvent("wake"))
    service._step()
    assert len(notifier.pinged) == 2 and service.next_wakeup() == 1060.0


def test_the_outbox_is_looked_at_every_2_s_while_it_waits_and_after_each_run(tmp_path: Path) -> None:
    settings = load_settings({"state_dir": tmp_path / "state"}, environ={"HOME": str(tmp_path)})
    journal, clock = Journal.open(tmp_path / "j.db"), FakeClock(500.0)
    hooks = Hooks(new_run_id=lambda: "r", head_commit=lambda s: "c", data_sha256=lambda s: "d")
    outbox = Outbox(journal)
    ports = Ports(FakeContainers(), FakeTracker(), outbox)
    service = make_service(settings, journal, ports, refuse, hooks, clock=clock.now)
    service._flush_outbox()
    assert service.next_wakeup() == 560.0  # empty: once a minute
    outbox.put("r0", RunRecord("e", "r0", "FINISHED"), "m", "MLflow down")
    service._finished("r0")  # a run that left its registration in the outbox
    assert service.next_wakeup() == 500.0
    service._flush_outbox()
    assert service.next_wakeup() == 502.0  # waiting (its first retry is 5 s out): every 2 s
    clock.advance(100)
    service.raw.put(RawEvent("reconcile"))
    service._step()
    assert service.next_wakeup() == 602.0


def test_heavy_libraries_stay_out_of_the_daemon_until_a_run_needs_them() -> None:
    """The CLI, the composition root and the loop import no MLflow, pandas, sklearn...: an idle
    daemon holds none of them (tens of MB each)."""
    code = (
        "import sys, daemon.cli, daemon.app, daemon.engine.service, daemon.adapters.champion;"
        "from daemon.engine.service import HEAVY_MODULES;"
        "print(','.join(m for m in HEAVY_MODULES if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_status_names_the_threads_and_the_heavy_libraries_loaded(service: Service) -> None:
    snap = service.snapshot()
    assert {"name": "MainThread", "native_id": threading.main_thread().native_id} in snap["threads"]
    assert set(snap["heavy_modules"]) <= set(HEAVY_MODULES)


def test_a_write_held_by_the_run_thread_wakes_the_sleeping_loop_to_retry_it(service: Service) -> None:
    def refused(at: float) -> None:
        raise InfrastructureError("state journal: no space left on device")

    run = threading.Thread(target=service.writes.write, args=("finish_run", refused))
    run.start()
    run.join(10)
    assert service.writes.count == 1
    assert service.raw.get_nowait() == RawEvent("wake")  # next_wakeup then includes the retry
    assert service.next_wakeup() is not None


def test_a_run_whose_stage_lost_its_machine_is_retried_once(tmp_path: Path) -> None:
    """A Slurm node failure or preemption (LostWorkError) is not the stage's fault: one retry, as
    for a run a crash interrupted; lost again, the daemon waits for a person."""
    settings = load_settings({"state_dir": tmp_path / "state"}, environ={"HOME": str(tmp_path)})
    journal = Journal.open(tmp_path / "journal.db")

    def lost(s: object, run_id: str) -> RunContext:
        raise LostWorkError("stage train: slurm job 7 lost its node (NODE_FAIL, reason NodeDown, node n3)")

    ids = iter(f"r{i}" for i in range(100))
    hooks = Hooks(new_run_id=lambda: next(ids), head_commit=lambda s: "c1", data_sha256=lambda s: "d1")
    clock = FakeClock()
    service = make_service(
        settings, journal, Ports(FakeContainers(), FakeTracker()), lost, hooks, clock=clock.now
    )
    with structlog.testing.capture_logs() as logs:
        service.admit(PipelineEvent(frozenset({Cause("data", "drop.csv")}), 0.0, 0.0))
        for _ in range(6):
            wait_for_run(service)
            service.raw.put(RawEvent("wake"))
            service._step()
        wait_for_run(service)
    runs = list(reversed(journal.recent_runs(5)))
    assert [(r.run_id, r.status, r.attempt, r.retry_of) for r in runs] == [
        ("r0", "failed", 1, None),
        ("r1", "failed", 2, "r0"),
    ]
    assert "NODE_FAIL" in (runs[0].error or "") and runs[0].exit_code == EXIT_INFRA
    assert [e["event"] for e in logs if e["event"] in ("run_lost_retry", "run_not_retried")] == [
        "run_lost_retry",
        "run_not_retried",
    ]
