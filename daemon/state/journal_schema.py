"""The state journal's schema: its migrations, in order, and the rows it hands out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.core.vocab import CANCELLED, INTERRUPTED, RUN_STATUSES

ACTIVE_STATUSES = ("queued", "running")
FINAL_STATUSES = RUN_STATUSES
STATUSES = ACTIVE_STATUSES + FINAL_STATUSES
MAX_ATTEMPTS = 2  # a first try and one retry after an interruption, counted across restarts

# MIGRATIONS[i] takes a journal from schema version i to i + 1, in one transaction. Append, never edit.
# Times are Unix seconds from the injected clock; causes are JSON [[source, detail], ...].
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        f"""CREATE TABLE runs (run_id TEXT PRIMARY KEY, trigger TEXT NOT NULL, causes TEXT NOT NULL,
            "commit" TEXT, data_sha256 TEXT,
            status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in STATUSES)})),
            attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1), retry_of TEXT REFERENCES runs(run_id),
            started_at REAL, finished_at REAL, exit_code INTEGER, failed_stage TEXT, error TEXT,
            f1 REAL, model_version TEXT, mlflow_run_id TEXT, image_id TEXT)""",
        "CREATE INDEX runs_by_status ON runs(status)",
        "CREATE INDEX runs_by_retry_of ON runs(retry_of)",
        """CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, received_at REAL NOT NULL,
            causes TEXT NOT NULL, run_id TEXT REFERENCES runs(run_id))""",
        "CREATE INDEX events_by_run ON events(run_id)",
        """CREATE TABLE stages (run_id TEXT NOT NULL REFERENCES runs(run_id), stage TEXT NOT NULL,
            started_at REAL NOT NULL, finished_at REAL, duration_s REAL, outcome TEXT, summary TEXT,
            PRIMARY KEY (run_id, stage))""",
    ),
    (  # 2: the MLflow outbox (daemon/state/outbox.py): registrations waiting for the tracking server
        """CREATE TABLE outbox (run_id TEXT PRIMARY KEY, payload TEXT NOT NULL, created_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL, last_error TEXT,
            delivered_at REAL, mlflow_run_id TEXT, model_version TEXT)""",
        "CREATE INDEX outbox_pending ON outbox(delivered_at, next_attempt_at)",
    ),
    (  # 3: the stage cache (daemon/state/stagecache.py): each stage's successful result by its input key
        """CREATE TABLE stage_cache (stage TEXT NOT NULL, key TEXT NOT NULL, run_id TEXT NOT NULL,
            summary TEXT NOT NULL, outputs TEXT NOT NULL, created_at REAL NOT NULL,
            PRIMARY KEY (stage, key))""",
    ),
    (  # 4: whether the promotion gate made the run's version champion (NULL: not known, older rows)
        "ALTER TABLE runs ADD COLUMN champion INTEGER",
    ),
    (  # 5: notifications waiting for their target (daemon/state/notifications.py); key is idempotent
        """CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,
            target TEXT NOT NULL, event TEXT NOT NULL, run_id TEXT NOT NULL, notice TEXT NOT NULL,
            created_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
            last_error TEXT, delivered_at REAL, dropped_at REAL, UNIQUE (key, target))""",
        "CREATE INDEX notifications_pending ON notifications(delivered_at, dropped_at, next_attempt_at)",
        "CREATE TABLE notify_state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (  # 6: the Slurm jobs of each run's stages (executor = "slurm"): where a stage ran, how it ended
        """CREATE TABLE slurm_jobs (job_id TEXT NOT NULL, name TEXT NOT NULL, run_id TEXT NOT NULL,
            stage TEXT NOT NULL, submitted_at REAL NOT NULL, ended_at REAL, state TEXT, reason TEXT,
            node TEXT, exit_code INTEGER, PRIMARY KEY (job_id, name))""",
        "CREATE INDEX slurm_jobs_run ON slurm_jobs(run_id)",
    ),
)

Causes = tuple[tuple[str, str], ...]
RUN_COLUMNS = (
    'run_id, trigger, causes, "commit", data_sha256, status, attempt, retry_of, started_at, finished_at, '
    "exit_code, failed_stage, error, f1, model_version, mlflow_run_id, image_id, champion"
)


@dataclass(frozen=True)
class RunRow:
    run_id: str
    trigger: str
    causes: Causes  # ((source, detail), ...)
    commit: str | None
    data_sha256: str | None
    status: str  # one of STATUSES
    attempt: int  # 1 for a first try, 2 for the retry after an interruption
    retry_of: str | None  # the interrupted run this one retries
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    failed_stage: str | None
    error: str | None
    f1: float | None
    model_version: str | None
    mlflow_run_id: str | None
    image_id: str | None
    champion: int | None = None  # 1: the gate made its version champion; 0: challenger; None: unknown


@dataclass(frozen=True)
class EventRow:
    id: int
    received_at: float
    causes: Causes
    run_id: str | None  # None until a run takes the event


@dataclass(frozen=True)
class StageRow:
    run_id: str
    stage: str
    started_at: float
    finished_at: float | None
    duration_s: float | None
    outcome: str | None
    summary: str | None


@dataclass(frozen=True)
class JobRow:
    """One Slurm job of a stage (daemon/adapters/slurm.py): state is None until it ended."""

    job_id: str
    name: str
    run_id: str
    stage: str
    submitted_at: float
    ended_at: float | None
    state: str | None
    reason: str | None
    node: str | None
    exit_code: int | None


def dump_causes(causes: Sequence[tuple[str, str]]) -> str:
    return json.dumps([[source, detail] for source, detail in causes])


def load_causes(text: str) -> Causes:
    return tuple((str(source), str(detail)) for source, detail in json.loads(text))


def run_row(row: Sequence[Any]) -> RunRow:
    values = list(row)
    values[2] = load_causes(values[2])
    return RunRow(*values)


def counts_as_attempt(run: RunRow) -> bool:
    """Whether a run is the "last attempted run" that reconcile compares the current inputs with.

    The retry rule, across restarts: a run interrupted by a crash (kill -9, OOM, power) is retried once
    (attempt 2, retry_of the first); a retry interrupted too is not retried, and it counts as attempted,
    so reconcile does not queue a fresh attempt 1 of the same commit and data after the restart (under
    systemd an input that crashes the daemon would otherwise loop forever). A new commit, new data or
    `retraind trigger` still start a run.

    Not counted: an interrupted first attempt (its retry, queued at start, is the attempt), and a
    cancelled run, stopped on purpose (SIGTERM, superseded by a newer commit) rather than by its
    inputs, so the same inputs may run again after the restart as before. Each such restart needs a
    deliberate stop, so this cannot loop on its own.
    """
    if run.status == CANCELLED:
        return False
    if run.status == INTERRUPTED:
        return run.attempt >= MAX_ATTEMPTS
    return True
