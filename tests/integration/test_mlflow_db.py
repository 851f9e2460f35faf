"""The embedded SQLite tracking database is created whole or not at all: a process killed while
MLflow creates it (2-3 s of migrations) used to leave a file no later MLflow call could use."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from daemon.adapters.registry import mlflow_client, prepare_sqlite_store

CREATE = (
    "import sys; from daemon.adapters.registry import prepare_sqlite_store; prepare_sqlite_store(sys.argv[1])"
)


def experiments(path: Path) -> int:
    with sqlite3.connect(path) as con:
        return int(con.execute("SELECT count(*) FROM experiments").fetchone()[0])


def temp_size(folder: Path, pid: int) -> int:
    found = list(folder.glob(f".mlflow.db.{pid}-*.tmp"))
    return found[0].stat().st_size if found else -1


def test_a_creator_killed_at_any_moment_leaves_no_database_or_a_whole_one(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    # Killed while importing, as soon as its database file exists, and at three points of the
    # migrations that fill it (about 950 KB when whole).
    for grown in (None, 0, 100_000, 400_000, 800_000):
        child = subprocess.Popen([sys.executable, "-c", CREATE, uri])
        deadline = time.monotonic() + 120
        while grown is not None and temp_size(tmp_path, child.pid) < grown and child.poll() is None:
            assert time.monotonic() < deadline, f"the database never reached {grown} bytes"
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert not db.exists() or experiments(db) == 1, grown  # never half made
        db.unlink(missing_ok=True)
    prepare_sqlite_store(uri)  # the next creator, after all those kills, makes it whole
    assert experiments(db) == 1 and oct(db.stat().st_mode & 0o777) == "0o600"  # and private
    assert list(tmp_path.glob(".mlflow.db.*.tmp")) == []  # and removes the killed creators' files
    assert mlflow_client(uri).create_experiment("after-kills")


def test_a_half_made_database_of_an_older_version_is_moved_aside_and_made_anew(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as con:  # what a kill during MLflow's own creation left
        con.execute("CREATE TABLE secrets (secret_id VARCHAR(36) PRIMARY KEY)")
    aside = prepare_sqlite_store(f"sqlite:///{db}")
    assert aside is not None and aside.name.startswith("mlflow.db.incomplete-") and aside.exists()
    assert experiments(db) == 1
    db.unlink()
    db.touch()  # the empty placeholder an older version created before MLflow opened it
    assert prepare_sqlite_store(f"sqlite:///{db}") is not None and experiments(db) == 1
    assert mlflow_client(f"sqlite:///{db}").create_experiment("works")


def test_a_database_in_use_is_never_touched(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    mlflow_client(uri).create_experiment("kept")
    before = db.read_bytes()
    assert prepare_sqlite_store(uri) is None
    assert db.read_bytes() == before and experiments(db) == 2
