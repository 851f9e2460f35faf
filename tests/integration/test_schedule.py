"""Cron retraining and the periodic reconcile through a real APScheduler 3 scheduler."""

from __future__ import annotations

import queue
from datetime import UTC, datetime
from pathlib import Path

from daemon.adapters.watch import RawEvent
from daemon.app import build_scheduler
from daemon.core.config import load_settings


def test_cron_jobs_fire_scheduled_events_onto_the_daemon_queue(tmp_path: Path) -> None:
    settings = load_settings({"schedule": ("0 3 * * *", "*/15 * * * 1-5")}, environ={"HOME": str(tmp_path)})
    raw: queue.Queue[RawEvent] = queue.Queue()
    scheduler = build_scheduler(settings, raw)
    scheduler.start()
    try:
        nightly = scheduler.get_job("cron 0 3 * * *")
        assert (nightly.next_run_time.hour, nightly.next_run_time.minute) == (3, 0)
        assert scheduler.get_job("reconcile").trigger.interval.total_seconds() == 300
        nightly.modify(next_run_time=datetime.now(UTC))  # fire it now, for real
        assert raw.get(timeout=5) == RawEvent("scheduled", "0 3 * * *")
    finally:
        scheduler.shutdown(wait=False)
