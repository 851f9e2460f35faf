"""What a finished run tells people: its notice, built from the outcome and the run directory, and
the recorders that put it into the notification outbox (the daemon's journal row carries it in the
same transaction; `retraind run` writes it on its own)."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Callable, Mapping, Sequence

import structlog

from daemon.adapters.snapshot import read_manifest
from daemon.core.config import Settings
from daemon.core.errors import InfrastructureError, RetraindError
from daemon.core.notify import (
    INFRA_FAILED,
    STAGE_FAILED,
    TRACKING_DELIVERED,
    DataChange,
    Notice,
    Target,
    data_change,
    event_for,
    report_link,
    routed,
    run_link,
)
from daemon.core.outcome import PipelineOutcome, Silent
from daemon.core.records import REPORT_ARTIFACT, Delivery
from daemon.core.stages import VALIDATE
from daemon.core.vocab import CANCELLED, FAILED, GATE_REJECTED, SUCCEEDED, UP_TO_DATE
from daemon.state.notifications import ACCEPTED, FAILING, Notifications, record_outcome

log = structlog.get_logger()


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


class Announcer:
    """Builds and routes notices for one daemon or one `retraind run`; `wake` tells the courier."""

    def __init__(
        self,
        settings: Settings,
        targets: Sequence[Target],
        wake: Callable[[], None] = lambda: None,
        host: str | None = None,
    ) -> None:
        self.settings, self.targets, self.wake = settings, list(targets), wake
        self.host = socket.gethostname() if host is None else host

    def use(self, settings: Settings, targets: Sequence[Target]) -> None:
        """After a reload (SIGHUP): the new settings' MLflow UI address and targets."""
        self.settings, self.targets = settings, list(targets)

    def route(self, notice: Notice) -> list[str]:
        return [t.name for t in routed(notice, self.targets)]

    def notice_for(
        self, outcome: PipelineOutcome, at: float
    ) -> Callable[[Mapping[str, str]], tuple[Notice | None, Mapping[str, str]]]:
        """The decision, to be taken inside the journal's transaction (it reads how the runs before
        ended); the facts that need the disk are read now."""
        files = read_manifest(self.settings.runs_dir / outcome.run_id) if outcome.commit else None
        validate = outcome.results.get(VALIDATE)
        report = validate.outputs.get("data_report") if validate else None
        rows = int(report["rows"]) if isinstance(report, Mapping) and "rows" in report else None
        status = outcome.status
        failure = INFRA_FAILED if isinstance(outcome.error, InfrastructureError) else STAGE_FAILED
        champion = None if outcome.queued else outcome.champion  # queued: its news comes on delivery

        def decide(state: Mapping[str, str]) -> tuple[Notice | None, Mapping[str, str]]:
            updates: dict[str, str] = {}
            if status in (GATE_REJECTED, FAILED):
                updates[FAILING] = "1"
            elif status in (SUCCEEDED, UP_TO_DATE):
                updates[FAILING] = "0"
                if files is not None:
                    updates[ACCEPTED] = json.dumps(files)
            previous_failed = state.get(FAILING) == "1"
            event = event_for(status, failure, champion, previous_failed)
            if event is None or status == CANCELLED:
                return None, updates
            previous = json.loads(state[ACCEPTED]) if ACCEPTED in state else None
            change = data_change(previous, files, rows) if files is not None else None
            return self._notice(outcome, event, change, champion, previous_failed, at), updates

        return decide

    def _notice(
        self,
        outcome: PipelineOutcome,
        event: str,
        change: DataChange | None,
        champion: bool | None,
        recovered: bool,
        at: float,
    ) -> Notice:
        reg = outcome.registration
        version = outcome.model_version
        experiment = str(reg.get("experiment_id") or "") or None
        ui = self.settings.mlflow_ui_url
        return Notice(
            event=event,
            run_id=outcome.run_id,
            status=outcome.status,
            trigger=outcome.trigger,
            commit=outcome.commit,
            subject=outcome.subject,
            data=change,
            failed_stage=outcome.failed_stage,
            reasons=tuple(r[:500] for r in outcome.reasons[:5]),
            f1=outcome.f1,
            champion_f1=_float(reg.get("previous_champion_f1")),
            champion_version=str(reg["previous_champion"]) if reg.get("previous_champion") else None,
            model_version=version,
            alias=None if champion is None else ("champion" if champion else "challenger"),
            promotion_reason=str(reg.get("reason") or ""),
            durations={k: round(v, 2) for k, v in outcome.durations.items()},
            duration_s=round(outcome.duration_s, 2),
            mlflow_run_id=outcome.mlflow_run_id,
            run_link=run_link(ui, experiment, outcome.mlflow_run_id),
            report_link=report_link(ui, experiment, outcome.mlflow_run_id, REPORT_ARTIFACT)
            if version
            else None,
            recovered=recovered,
            host=self.host,
            at=at,
        )

    def delivered(self, delivery: Delivery, at: float) -> Notice | None:
        """A registration the tracking outbox delivered late: the run's news, finally."""
        reg = delivery.registration
        if reg is None:
            return None
        ui = self.settings.mlflow_ui_url
        return Notice(
            event=TRACKING_DELIVERED,
            run_id=delivery.run_id,
            status=SUCCEEDED,
            champion_f1=reg.previous_champion_f1,
            champion_version=reg.previous_champion,
            model_version=reg.model_version,
            alias="champion" if reg.champion else "challenger",
            promotion_reason=reg.promoted_reason,
            mlflow_run_id=reg.run_id,
            run_link=run_link(ui, reg.experiment_id, reg.run_id),
            report_link=report_link(ui, reg.experiment_id, reg.run_id, REPORT_ARTIFACT)
            if reg.model_version
            else None,
            host=self.host,
            at=at,
        )

    def in_transaction(self, outcome: PipelineOutcome) -> Callable[[sqlite3.Connection, float], object]:
        """For the journal's finish_run: the run's notifications in the transaction of its row."""

        def write(tx: sqlite3.Connection, at: float) -> object:
            return record_outcome(tx, self.notice_for(outcome, at), self.route, at)

        return write


class OutboxRecorder(Silent):
    """`retraind run`'s witness: the run's notifications into the outbox (no run row to share)."""

    def __init__(self, announcer: Announcer, outbox: Notifications) -> None:
        self.announcer, self.outbox = announcer, outbox

    def run_finished(self, outcome: PipelineOutcome) -> None:
        """Never fails the run: a journal that cannot take the rows (a full disk) costs its notices."""
        try:
            notice_for = self.announcer.notice_for(outcome, self.outbox.journal.now())
            self.outbox.record(notice_for, self.announcer.route)
        except (RetraindError, OSError) as e:
            log.error("notifications_not_recorded", run_id=outcome.run_id, error=str(e))
            return
        self.announcer.wake()
