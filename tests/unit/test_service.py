"""The daemon loop's decisions, with a real journal and fake ports: recovery and reconcile."""

from __future__ import annotations

from pathlib import Path

import pytest
import structlog

from daemon.config import load_settings
from daemon.errors import ConfigError
from daemon.journal import Journal
from daemon.notify import Notifier
from daemon.service import Hooks, Service
from daemon.watch import RawEvent
from handlers.base import Ports, RunContext
from tests.fakes import FakeClock, FakeContainers, FakeTracker


def refuse(settings: object, run_id: str) -> RunContext:
    raise ConfigError("no data in this test")


@pytest.fixture
def service(tmp_path: Path) -> Service:
    settings = load_settings({"state_dir": tmp_path / "state"}, environ={"HOME": str(tmp_path)})
    journal = Journal.open(tmp_path / "journal.db")
    ids = iter(f"r{i}" for i in range(100))
    hooks = Hooks(
        prepare=refuse, new_run_id=lambda: next(ids), head_commit=lambda s: "c1", data_sha256=lambda s: "d1"
    )
    ports = Ports(FakeContainers(), FakeTracker())
    return Service(settings, journal, ports, {}, hooks, Notifier(None), clock=FakeClock().now)


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
    service.hooks.data_sha256 = lambda s: "d2"
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
