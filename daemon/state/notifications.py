"""The notification outbox: one row per (notice, target) in the journal, written in the transaction
that records the run's outcome, so an outcome is never recorded without its notifications (nor the
other way round). The courier (daemon/engine/courier.py) delivers them at least once; the notice's
key (one run's one event) is the idempotency key a receiver can drop duplicates by.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from daemon.core.notify import Notice
from daemon.state.journal import Journal

# notify_state's names: FAILING "1" while the last run that ended on its own failed; ACCEPTED the
# files (JSON) of the last drop a run succeeded with, which a notice's data change is measured from.
FAILING, ACCEPTED = "failing", "accepted_files"


@dataclass(frozen=True)
class Pending:
    id: int
    key: str
    target: str
    event: str
    run_id: str
    notice: str  # Notice.to_json()
    attempts: int
    created_at: float
    next_attempt_at: float


@dataclass(frozen=True)
class Backlog:
    waiting: int
    oldest_at: float | None
    last_error: str | None  # redacted by the courier before it is stored
    dropped: int


def _insert(tx: sqlite3.Connection, notice: Notice, targets: Sequence[str], at: float) -> None:
    for target in targets:
        tx.execute(
            "INSERT OR IGNORE INTO notifications (key, target, event, run_id, notice, created_at,"
            " next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (notice.key, target, notice.event, notice.run_id, notice.to_json(), at, at),
        )


NoticeFor = Callable[[Mapping[str, str]], tuple[Notice | None, Mapping[str, str]]]


def record_outcome(
    tx: sqlite3.Connection, notice_for: NoticeFor, route: Callable[[Notice], Sequence[str]], at: float
) -> Notice | None:
    """Inside the caller's transaction: given notify_state (how the runs before ended), the notice
    of a run that ended and what notify_state becomes; the notice's rows for the targets that want it."""
    state = {str(k): str(v) for k, v in tx.execute("SELECT name, value FROM notify_state")}
    notice, updates = notice_for(state)
    for name, value in updates.items():
        tx.execute(
            "INSERT INTO notify_state (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE"
            " SET value = excluded.value",
            (name, value),
        )
    if notice is not None:
        _insert(tx, notice, route(notice), at)
    return notice


class Notifications:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def put(self, notice: Notice, targets: Sequence[str]) -> None:
        """A notice of its own (a registration the tracking outbox delivered), in one transaction."""
        with self.journal.transaction() as tx:
            _insert(tx, notice, targets, self.journal.now())

    def record(self, notice_for: NoticeFor, route: Callable[[Notice], Sequence[str]]) -> Notice | None:
        """record_outcome in a transaction of its own: `retraind run` keeps no run row to share."""
        with self.journal.transaction() as tx:
            return record_outcome(tx, notice_for, route, self.journal.now())

    def due(self, limit: int = 50, force: bool = False) -> list[Pending]:
        """What waits and is due; with force, also what waits for its backoff (`retraind run`'s
        first pass: the next run delivers what the last one left, whatever the backoff said)."""
        with self.journal.transaction(write=False) as tx:
            rows = tx.execute(
                "SELECT id, key, target, event, run_id, notice, attempts, created_at, next_attempt_at"
                " FROM notifications WHERE delivered_at IS NULL AND dropped_at IS NULL"
                " AND (? OR next_attempt_at <= ?) ORDER BY id LIMIT ?",
                (force, self.journal.now(), limit),
            ).fetchall()
        return [Pending(*row) for row in rows]

    def claim(self, pending: Pending, lease_s: float) -> bool:
        """Compare-and-set on the row as it was read: one process sends it; another (a `retraind
        run` next to the daemon) sees it due only once the lease has passed."""
        with self.journal.transaction() as tx:
            cur = tx.execute(
                "UPDATE notifications SET next_attempt_at = ? WHERE id = ? AND delivered_at IS NULL"
                " AND dropped_at IS NULL AND next_attempt_at = ?",
                (self.journal.now() + lease_s, pending.id, pending.next_attempt_at),
            )
            return cur.rowcount == 1

    def delivered(self, pending: Pending) -> None:
        with self.journal.transaction() as tx:
            tx.execute(
                "UPDATE notifications SET delivered_at = ?, attempts = attempts + 1, last_error = NULL"
                " WHERE id = ?",
                (self.journal.now(), pending.id),
            )

    def failed(self, pending: Pending, retry_in_s: float, error: str) -> None:
        with self.journal.transaction() as tx:
            tx.execute(
                "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE id = ?",
                (self.journal.now() + retry_in_s, error[:2000], pending.id),
            )

    def dropped(self, pending: Pending, why: str) -> None:
        with self.journal.transaction() as tx:
            tx.execute(
                "UPDATE notifications SET dropped_at = ?, last_error = ? WHERE id = ?",
                (self.journal.now(), why[:2000], pending.id),
            )

    def next_due(self) -> float | None:
        with self.journal.transaction(write=False) as tx:
            row = tx.execute(
                "SELECT min(next_attempt_at) FROM notifications WHERE delivered_at IS NULL"
                " AND dropped_at IS NULL"
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def backlog(self) -> Backlog:
        with self.journal.transaction(write=False) as tx:
            waiting, oldest = tx.execute(
                "SELECT count(*), min(created_at) FROM notifications WHERE delivered_at IS NULL"
                " AND dropped_at IS NULL"
            ).fetchone()
            error = tx.execute(
                "SELECT last_error FROM notifications WHERE delivered_at IS NULL AND dropped_at IS NULL"
                " AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
            dropped = tx.execute("SELECT count(*) FROM notifications WHERE dropped_at IS NOT NULL").fetchone()
        return Backlog(int(waiting), oldest, error[0] if error else None, int(dropped[0]))

    def rows(self) -> list[tuple[str, str, str, int, float | None, float | None]]:
        """(key, target, event, attempts, delivered_at, dropped_at) of every row, oldest first."""
        with self.journal.transaction(write=False) as tx:
            return [
                (str(r[0]), str(r[1]), str(r[2]), int(r[3]), r[4], r[5])
                for r in tx.execute(
                    "SELECT key, target, event, attempts, delivered_at, dropped_at FROM notifications"
                    " ORDER BY id"
                )
            ]
