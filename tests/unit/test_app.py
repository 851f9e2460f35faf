"""The composition root's own logic: the champion gauge that follows the registry."""

from __future__ import annotations

import structlog
from prometheus_client import CollectorRegistry

from daemon.app import ChampionGauge
from daemon.core.errors import TrackingError
from daemon.engine.metrics import Metrics


class FakeRegistry:
    def __init__(self, *answers: float | Exception | None) -> None:
        self.answers = list(answers)

    def champion_f1(self, name: str) -> float | None:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_the_champion_gauge_follows_the_registry_and_keeps_its_value_through_an_outage() -> None:
    registry = CollectorRegistry()
    gauge = ChampionGauge(
        FakeRegistry(0.74, 0.69, TrackingError("MLflow down"), None), "m", Metrics(registry)
    )
    value = lambda: registry.get_sample_value("retraind_champion_f1")  # noqa: E731
    assert gauge.refresh() == 0.74 and value() == 0.74
    assert gauge.refresh() == 0.69 and value() == 0.69  # a rollback by hand
    with structlog.testing.capture_logs() as logs:
        assert gauge.refresh() is None and value() == 0.69  # outage: the last known value stays
    assert [(e["event"], e["error"]) for e in logs] == [("champion_refresh_failed", "MLflow down")]
    assert gauge.refresh() is None and value() == 0.69  # no champion (yet): nothing to show


def test_a_trigger_request_with_force_becomes_a_forced_event() -> None:
    import queue
    from types import SimpleNamespace

    from daemon.adapters.watch import RawEvent
    from daemon.app import control_handler

    raw: queue.Queue[RawEvent] = queue.Queue()
    handle = control_handler(SimpleNamespace(raw=raw))  # type: ignore[arg-type]
    assert handle({"cmd": "trigger", "who": "alice", "force": True}, 1000) == {"ok": True, "accepted": True}
    handle({"cmd": "trigger"}, 1000)
    assert [raw.get_nowait(), raw.get_nowait()] == [
        RawEvent("forced", "alice"),
        RawEvent("manual", "uid 1000"),
    ]
