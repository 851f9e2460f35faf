"""The MLflow outbox: a registration waits out a tracking outage and is sent exactly once."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from daemon.core.errors import TrackingError
from daemon.core.records import RunRecord
from daemon.state.journal import Journal
from daemon.state.outbox import Outbox, backoff_s, record_from_json, record_to_json
from tests.fakes import FakeClock, FakeTracker

RECORD = RunRecord(
    "exp",
    "r1",
    "FINISHED",
    {"seed": "42"},
    {"f1": 0.7},
    {"retraind.run_id": "r1"},
    {"": Path("/state/runs/r1/train/artifacts")},
    Path("/state/runs/r1/train/model"),
)


def test_records_survive_the_round_trip_through_json() -> None:
    assert record_from_json(record_to_json(RECORD, "model")) == (RECORD, "model")
    report = {"metrics": {"f1": 0.7}, "per_class": [{"label": "a", "support": 3}], "recomputed": None}
    with_report = replace(RECORD, report=report)
    assert record_from_json(record_to_json(with_report, "model")) == (with_report, "model")


def test_an_entry_written_before_reports_existed_still_reads() -> None:
    payload = json.loads(record_to_json(RECORD, "model"))
    del payload["record"]["report"]
    assert record_from_json(json.dumps(payload)) == (RECORD, "model")


def test_backoff_is_exponential_and_capped() -> None:
    assert [backoff_s(a) for a in (1, 2, 3, 10)] == [5.0, 10.0, 20.0, 300.0]


def test_waits_with_backoff_then_delivers_once(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    journal = Journal.open(tmp_path / "journal.db", clock=clock.now)
    journal.start_run("r1", "data", [("data", "a.csv")], "c", "d")
    outbox = Outbox(journal)
    outbox.put("r1", RECORD, "model", "connection refused")
    assert outbox.backlog() == 1 and outbox.due() == []  # not before its backoff

    down = FakeTracker(fail_with=TrackingError("still down"))
    clock.advance(5)
    (attempt,) = outbox.flush(down)
    assert attempt.registration is None and "still down" in attempt.error
    assert outbox.due() == []  # the next try waits longer
    clock.advance(10)
    up = FakeTracker()
    (delivered,) = outbox.flush(up)
    assert delivered.registration is not None and up.records == [RECORD]
    assert outbox.backlog() == 0 and outbox.flush(up, force=True) == []
    assert journal.get_run("r1").mlflow_run_id == "mlflow-1"  # type: ignore[union-attr]


def test_a_late_registration_fills_the_register_stage_cache(tmp_path: Path) -> None:
    from dataclasses import replace

    from daemon.state.stagecache import JournalStageCache

    journal = Journal.open(tmp_path / "journal.db")
    journal.start_run("r1", "data", [("data", "a.csv")], "c", "d")
    outbox = Outbox(journal)
    keyed = replace(RECORD, tags={**RECORD.tags, "retraind.cache_key.register": "k" * 64})
    outbox.put("r1", keyed, "model", "connection refused")
    outbox.flush(FakeTracker(), force=True)
    hit = JournalStageCache(journal).lookup("register", "k" * 64)
    assert hit is not None and hit.run_id == "r1" and hit.outputs["model_version"] == "1"
