"""The MLflow outbox: a registration that cannot reach the tracking server waits in the journal.

The run's outputs stay on disk; the daemon (or the next `retraind run`) sends them when the server
is back, with capped exponential backoff, exactly once: the pipeline run ID is the idempotency key
(tag `retraind.run_id`), and the tracker reuses or replaces a partial MLflow run carrying it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from daemon.core.errors import TrackingError
from daemon.core.records import Delivery, Registration, RunRecord
from daemon.core.registration import KEY_TAG, registered
from daemon.core.stages import Tracker
from daemon.state.journal import Journal
from daemon.state.stagecache import JournalStageCache

BACKOFF_FIRST_S = 5.0
BACKOFF_MAX_S = 300.0


def record_to_json(record: RunRecord, model_name: str) -> str:
    data = asdict(record)
    data["artifact_dirs"] = {k: str(v) for k, v in record.artifact_dirs.items()}
    data["model_dir"] = str(record.model_dir) if record.model_dir else None
    return json.dumps({"record": data, "model_name": model_name})


def record_from_json(payload: str) -> tuple[RunRecord, str]:
    data: dict[str, Any] = json.loads(payload)
    r = data["record"]
    r["artifact_dirs"] = {k: Path(v) for k, v in r["artifact_dirs"].items()}
    r["model_dir"] = Path(r["model_dir"]) if r["model_dir"] else None
    return RunRecord(**r), str(data["model_name"])


def backoff_s(attempts: int) -> float:
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, attempts - 1)))


class Outbox:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def put(self, run_id: str, record: RunRecord, model_name: str, error: str) -> None:
        now = self.journal.now()
        with self.journal.transaction() as tx:
            tx.execute(
                "INSERT OR REPLACE INTO outbox (run_id, payload, created_at, attempts, next_attempt_at,"
                " last_error) VALUES (?, ?, ?, 1, ?, ?)",
                (run_id, record_to_json(record, model_name), now, now + backoff_s(1), error),
            )

    def backlog(self) -> int:
        with self.journal.transaction(write=False) as tx:
            return int(tx.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0])

    def due(self, force: bool = False) -> list[tuple[str, str, int]]:
        now = self.journal.now()
        with self.journal.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT run_id, payload, attempts FROM outbox WHERE delivered_at IS NULL"
                " AND (? OR next_attempt_at <= ?) ORDER BY created_at",
                (force, now),
            ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def flush(self, tracker: Tracker, force: bool = False) -> list[Delivery]:
        """Try every due entry once; `tracker` is a Tracker (record + idempotency by run ID)."""
        deliveries = []
        for run_id, payload, attempts in self.due(force):
            record, model_name = record_from_json(payload)
            try:
                reg = tracker.record(record, model_name)
            except TrackingError as e:
                self._failed(run_id, attempts + 1, str(e))
                deliveries.append(Delivery(run_id, None, str(e)))
                continue
            self._delivered(run_id, reg)
            self._cache(run_id, record, model_name, reg)
            deliveries.append(Delivery(run_id, reg))
        return deliveries

    def _failed(self, run_id: str, attempts: int, error: str) -> None:
        with self.journal.transaction() as tx:
            tx.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE run_id = ?",
                (attempts, self.journal.now() + backoff_s(attempts), error[:2000], run_id),
            )

    def _cache(self, run_id: str, record: RunRecord, model_name: str, reg: Registration) -> None:
        """A late registration is still the register stage's result: the next run with the same
        inputs is up to date rather than registering the same model again."""
        key = record.tags.get(KEY_TAG)
        if key and reg.model_version is not None:
            result = registered(reg, model_name)
            result = replace(result, summary=f"{result.summary} (from the outbox)")
            JournalStageCache(self.journal).store(result.stage, key, run_id, result)

    def _delivered(self, run_id: str, reg: Registration) -> None:
        with self.journal.transaction() as tx:
            tx.execute(
                "UPDATE outbox SET delivered_at = ?, mlflow_run_id = ?, model_version = ? WHERE run_id = ?",
                (self.journal.now(), reg.run_id, reg.model_version, run_id),
            )
            tx.execute(
                "UPDATE runs SET mlflow_run_id = ?, model_version = ? WHERE run_id = ?",
                (reg.run_id, reg.model_version, run_id),
            )
