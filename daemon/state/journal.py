"""The state journal: events, runs and stages in SQLite, so a crash loses nothing that was committed."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from daemon.core.errors import ConfigError, InfrastructureError
from daemon.state.journal_schema import (
    FINAL_STATUSES,
    MAX_ATTEMPTS,
    MIGRATIONS,
    RUN_COLUMNS,
    STATUSES,
    EventRow,
    JobRow,
    RunRow,
    StageRow,
    counts_as_attempt,
    dump_causes,
    load_causes,
    run_row,
)

__all__ = ["MIGRATIONS", "STATUSES", "EventRow", "Journal", "RunRow", "StageRow"]


def _migrate(conn: sqlite3.Connection, path: Path, migrations: Sequence[Sequence[str]]) -> None:
    """Bring the schema forward, inside the caller's write transaction (so two openers cannot race)."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(migrations):
        raise ConfigError(
            f"state journal {path} has schema version {version}, newer than this retraind knows "
            f"({len(migrations)}); upgrade retraind or move the file away"
        )
    for statements in migrations[version:]:
        for statement in statements:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {len(migrations)}")


class Journal:
    """One SQLite connection shared by the daemon's threads.

    Threads: the connection is opened with check_same_thread=False and every call holds `_lock` for
    one short transaction, so calls from the watcher and the runner threads are serialised in-process
    and never see "database is locked". Writes use BEGIN IMMEDIATE with a busy timeout, which covers a
    second process (the CLI) writing the same file. Durability: WAL with synchronous=NORMAL survives a
    kill -9 at any point (a transaction is either wholly in the WAL or absent); a power cut may lose
    the last few commits but never corrupts the file.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Callable[[], float]) -> None:
        self._conn, self.path, self._clock = conn, path, clock
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: Path,
        clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 10.0,
        migrations: Sequence[Sequence[str]] = MIGRATIONS,
    ) -> Journal:
        if path.is_dir():
            raise ConfigError(f"state journal {path} is a directory: move it away")
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # 0600 before SQLite creates it with the umask's mode; its -wal and -shm files follow it
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            conn = sqlite3.connect(
                path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as e:
            raise InfrastructureError(f"cannot open state journal {path}: {e}") from e
        journal = cls(conn, path, clock)
        try:
            journal._prepare(migrations)
        except BaseException:
            conn.close()
            raise
        return journal

    def _prepare(self, migrations: Sequence[Sequence[str]]) -> None:
        """WAL and the schema; a file that is no SQLite database (or a damaged one) is the user's to move."""
        try:
            try:
                mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                self._conn.execute("PRAGMA synchronous = NORMAL")
                self._conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as e:
                raise InfrastructureError(f"cannot open state journal {self.path}: {e}") from e
            if str(mode).lower() != "wal":
                raise InfrastructureError(f"state journal {self.path}: SQLite refused WAL mode (got {mode})")
            with self._tx(write=False) as tx:  # up to date: no write, so a reader works on a full disk
                current = int(tx.execute("PRAGMA user_version").fetchone()[0]) == len(migrations)
            if not current:
                with self._tx() as tx:
                    _migrate(tx, self.path, migrations)
        except InfrastructureError as e:
            code = getattr(e.__cause__, "sqlite_errorcode", 0) & 0xFF  # the primary result code
            if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
                raise ConfigError(
                    f"state journal {self.path} is not a usable SQLite database ({e.__cause__}): "
                    f"move it away (mv {self.path} {self.path}.broken) and retraind starts a new one"
                ) from e
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def transaction(self, write: bool = True) -> AbstractContextManager[sqlite3.Connection]:
        """For modules that keep their own tables in the journal (the outbox)."""
        return self._tx(write)

    def now(self) -> float:
        return self._clock()

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock; rolled back on any error, sqlite errors mapped at the edge."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield conn
                    conn.execute("COMMIT")
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            except sqlite3.Error as e:
                raise InfrastructureError(f"state journal {self.path}: {e}") from e

    # Writes

    # Each write takes `at`, when it happened (default: now), so a write held back while the disk was
    # full (daemon/adapters/heldwrites.py) is recorded with its own time when it is replayed.

    def _at(self, at: float | None) -> float:
        return self._clock() if at is None else at

    def record_event(self, causes: Sequence[tuple[str, str]], at: float | None = None) -> int:
        with self._tx() as tx:
            cur = tx.execute(
                "INSERT INTO events (received_at, causes) VALUES (?, ?)", (self._at(at), dump_causes(causes))
            )
            return int(cur.lastrowid or 0)

    def start_run(
        self,
        run_id: str,
        trigger: str,
        causes: Sequence[tuple[str, str]],
        commit: str | None,
        data_sha256: str | None,
        attempt: int = 1,
        event_ids: Sequence[int] = (),
        retry_of: str | None = None,
        at: float | None = None,
    ) -> None:
        """Record a run as running and attach its events; a retry also takes over the events of retry_of."""
        with self._tx() as tx:
            tx.execute(
                'INSERT INTO runs (run_id, trigger, causes, "commit", data_sha256, status, attempt, '
                "retry_of, started_at) VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (run_id, trigger, dump_causes(causes), commit, data_sha256, attempt, retry_of, self._at(at)),
            )
            if retry_of is not None:
                tx.execute("UPDATE events SET run_id = ? WHERE run_id = ?", (run_id, retry_of))
            ids = sorted(set(event_ids))
            marks = ", ".join("?" * len(ids))
            cur = tx.execute(f"UPDATE events SET run_id = ? WHERE id IN ({marks})", (run_id, *ids))
            if cur.rowcount != len(ids):
                raise ValueError(f"run {run_id}: unknown event id among {ids}")

    def stage_started(self, run_id: str, stage: str, at: float | None = None) -> None:
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO stages (run_id, stage, started_at) VALUES (?, ?, ?) ON CONFLICT (run_id, stage) "
                "DO UPDATE SET started_at = excluded.started_at, finished_at = NULL, duration_s = NULL, "
                "outcome = NULL, summary = NULL",
                (run_id, stage, self._at(at)),
            )

    def stage_finished(
        self, run_id: str, stage: str, duration_s: float, outcome: str, summary: str, at: float | None = None
    ) -> None:
        """outcome: "ok", "failed" or "rejected" by convention; a stage never started is recorded anyway."""
        now = self._at(at)
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO stages (run_id, stage, started_at, finished_at, duration_s, outcome, summary) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, stage) DO UPDATE SET "
                "finished_at = excluded.finished_at, duration_s = excluded.duration_s, "
                "outcome = excluded.outcome, summary = excluded.summary",
                (run_id, stage, now - duration_s, now, duration_s, outcome, summary),
            )

    def finish_run(
        self,
        run_id: str,
        status: str,
        exit_code: int | None,
        failed_stage: str | None = None,
        error: str | None = None,
        f1: float | None = None,
        model_version: str | None = None,
        mlflow_run_id: str | None = None,
        image_id: str | None = None,
        champion: bool | None = None,
        at: float | None = None,
        also: Callable[[sqlite3.Connection, float], object] | None = None,
    ) -> None:
        """The run's final row; `also(tx, at)` writes in the same transaction (its notifications)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish_run: {status!r} is not one of {', '.join(FINAL_STATUSES)}")
        with self._tx() as tx:
            cur = tx.execute(
                "UPDATE runs SET status = ?, finished_at = ?, exit_code = ?, failed_stage = ?, error = ?, "
                "f1 = ?, model_version = ?, mlflow_run_id = ?, image_id = ?, champion = ? "
                "WHERE run_id = ? AND status = 'running'",
                (status, self._at(at), exit_code, failed_stage, error, f1, model_version, mlflow_run_id,
                 image_id, champion, run_id),
            )  # fmt: skip
            if cur.rowcount != 1:
                raise ValueError(f"finish_run: run {run_id} is not running")
            if also is not None:
                also(tx, self._at(at))

    def recover_interrupted(self) -> list[RunRow]:
        """At start: runs left 'running' by a crash become 'interrupted', naming the stage they were in.

        Also returned: runs interrupted earlier that should be retried but whose retry never started
        (the daemon died again in between), so a retry is never lost. Removing their containers and
        failing their MLflow run are idempotent, so the caller may do both again.
        """
        now = self._clock()
        with self._tx() as tx:
            stopped = [run_id for (run_id,) in tx.execute("SELECT run_id FROM runs WHERE status = 'running'")]
            for run_id in stopped:
                self._interrupt(tx, run_id, now)
            marks = ", ".join("?" * len(stopped))
            rows = tx.execute(
                f"SELECT {RUN_COLUMNS} FROM runs r WHERE run_id IN ({marks}) OR (status = 'interrupted' "
                f"AND attempt < {MAX_ATTEMPTS} AND NOT EXISTS "
                "(SELECT 1 FROM runs n WHERE n.retry_of = r.run_id)) ORDER BY started_at, rowid",
                stopped,
            ).fetchall()
        return [run_row(row) for row in rows]

    @staticmethod
    def _interrupt(tx: sqlite3.Connection, run_id: str, now: float) -> None:
        last = tx.execute(
            "SELECT stage, finished_at FROM stages WHERE run_id = ? ORDER BY started_at DESC, rowid DESC",
            (run_id,),
        ).fetchone()
        if last is None:
            stage, error = None, "daemon stopped before any stage started"
        elif last[1] is None:
            stage, error = last[0], f"daemon stopped during stage {last[0]}"
        else:
            stage, error = None, f"daemon stopped after stage {last[0]} finished"
        tx.execute(
            "UPDATE stages SET finished_at = ?, duration_s = ? - started_at, outcome = 'interrupted' "
            "WHERE run_id = ? AND finished_at IS NULL",
            (now, now, run_id),
        )
        tx.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?, failed_stage = ?, error = ? "
            "WHERE run_id = ?",
            (now, stage, error, run_id),
        )

    @staticmethod
    def should_retry(run: RunRow) -> bool:
        """Retry an interrupted run once; a run interrupted on its retry too is left for a person."""
        return run.status == "interrupted" and run.attempt < MAX_ATTEMPTS

    # Reads

    def _runs(
        self, where: str = "", params: Sequence[Any] = (), order: str = "started_at", limit: int = -1
    ) -> list[RunRow]:
        with self._tx(write=False) as tx:
            rows = tx.execute(
                f"SELECT {RUN_COLUMNS} FROM runs {where} ORDER BY {order} DESC, rowid DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [run_row(row) for row in rows]

    def get_run(self, run_id: str) -> RunRow | None:
        found = self._runs("WHERE run_id = ?", (run_id,))
        return found[0] if found else None

    def current_run(self) -> RunRow | None:
        found = self._runs("WHERE status = 'running'", limit=1)
        return found[0] if found else None

    def recent_runs(self, n: int) -> list[RunRow]:
        """Newest first, by start time."""
        return self._runs(limit=max(n, 0))

    def last_attempted(self, window: int = 50) -> RunRow | None:
        """The newest run that counts as attempted (journal_schema.counts_as_attempt), among the last few."""
        return next((r for r in self.recent_runs(window) if counts_as_attempt(r)), None)

    def last_success(self) -> RunRow | None:
        found = self._runs("WHERE status = 'succeeded'", order="finished_at", limit=1)
        return found[0] if found else None

    def pending_events(self) -> list[EventRow]:
        """Events no run has taken yet (the daemon stopped before starting one): queue them again."""
        with self._tx(write=False) as tx:
            rows = tx.execute(
                "SELECT id, received_at, causes, run_id FROM events WHERE run_id IS NULL ORDER BY id"
            ).fetchall()
        return [EventRow(row[0], row[1], load_causes(row[2]), row[3]) for row in rows]

    def stages(self, run_id: str) -> list[StageRow]:
        with self._tx(write=False) as tx:
            rows = tx.execute(
                "SELECT run_id, stage, started_at, finished_at, duration_s, outcome, summary FROM stages "
                "WHERE run_id = ? ORDER BY started_at, rowid",
                (run_id,),
            ).fetchall()
        return [StageRow(*row) for row in rows]

    def job_submitted(self, job_id: str, name: str, run_id: str, stage: str, at: float | None = None) -> None:
        with self._tx() as tx:
            tx.execute(
                "INSERT INTO slurm_jobs (job_id, name, run_id, stage, submitted_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (job_id, name) DO NOTHING",
                (job_id, name, run_id, stage, self._at(at)),
            )

    def job_ended(
        self,
        job_id: str,
        name: str,
        state: str,
        reason: str,
        node: str,
        exit_code: int,
        at: float | None = None,
    ) -> None:
        with self._tx() as tx:
            tx.execute(
                "UPDATE slurm_jobs SET ended_at = ?, state = ?, reason = ?, node = ?, exit_code = ? "
                "WHERE job_id = ? AND name = ?",
                (self._at(at), state, reason, node, exit_code, job_id, name),
            )

    def jobs(self, run_id: str) -> list[JobRow]:
        """The run's Slurm jobs, in the order they were submitted."""
        with self._tx(write=False) as tx:
            rows = tx.execute(
                "SELECT job_id, name, run_id, stage, submitted_at, ended_at, state, reason, node, exit_code "
                "FROM slurm_jobs WHERE run_id = ? ORDER BY submitted_at, rowid",
                (run_id,),
            ).fetchall()
        return [JobRow(*row) for row in rows]

    def gauges(self) -> dict[str, float]:
        """Values to restore metrics from at start; a key is absent when nothing is known yet.

        last_run_f1: f1 of the latest finished run that has one; last_run_finished_at: when the latest
        run finished, whatever its status; last_success_finished_at: the latest succeeded run;
        champion_f1: f1 of the latest succeeded run whose version the gate made champion (rows from
        before the gate: that registered a version). The daemon then follows the registry itself.
        """
        queries = {
            "last_run_f1": "SELECT f1 FROM runs WHERE f1 IS NOT NULL AND finished_at IS NOT NULL",
            "last_run_finished_at": "SELECT finished_at FROM runs WHERE finished_at IS NOT NULL",
            "last_success_finished_at": "SELECT finished_at FROM runs WHERE status = 'succeeded'",
            "champion_f1": "SELECT f1 FROM runs WHERE status = 'succeeded' AND model_version IS NOT NULL "
            "AND f1 IS NOT NULL AND coalesce(champion, 1) = 1",
        }
        found: dict[str, float] = {}
        with self._tx(write=False) as tx:
            for key, query in queries.items():
                row = tx.execute(f"{query} ORDER BY finished_at DESC, rowid DESC LIMIT 1").fetchone()
                if row is not None and row[0] is not None:
                    found[key] = float(row[0])
        return found
