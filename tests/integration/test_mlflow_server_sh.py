"""tools/mlflow-server.sh: the private cluster, its role and database, and `serve`, for real."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.services import (
    LOCALHOST,
    answers,
    free_port,
    missing,
    pg_bindir,
    spawn,
    terminate,
    wait_ready,
)

IS_ROOT = os.geteuid() == 0


@dataclass(frozen=True)
class Script:
    """tools/mlflow-server.sh copied into a fresh home, run with a clean environment and free ports;
    as root, run as the postgres user (initdb refuses root)."""

    home: Path
    env: dict[str, str]

    @property
    def path(self) -> Path:
        return self.home / "tools/mlflow-server.sh"

    def run(self, *args: str, as_root: bool = False) -> subprocess.CompletedProcess[str]:
        as_user = ["runuser", "-u", "postgres", "--"] if IS_ROOT and not as_root else []
        argv = [*as_user, "env", "-i", *(f"{k}={v}" for k, v in self.env.items()), "bash", str(self.path)]
        return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=180, check=False)

    def uris(self) -> dict[str, str]:
        result = self.run("url")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert all(line.startswith("export ") for line in lines), lines  # eval "$(... url)" exports them
        return dict(line.removeprefix("export ").split("=", 1) for line in lines)


@pytest.fixture
def script() -> Iterator[Script]:
    bindir = pg_bindir()
    if bindir is None:
        missing("PostgreSQL (initdb, pg_ctl)")
    home = Path(tempfile.mkdtemp(prefix="retraind-mls-", dir="/tmp"))
    (home / "tools").mkdir()
    shutil.copy(ROOT / "tools/mlflow-server.sh", home / "tools")
    if IS_ROOT:
        for path in (home, home / "tools", home / "tools/mlflow-server.sh"):
            shutil.chown(path, "postgres", "postgres")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "share"),
        "PG_BINDIR": str(bindir),
        "RETRAIND_PG_PORT": str(free_port()),
        "RETRAIND_MLFLOW_PORT": str(free_port()),
    }
    script = Script(home, env)
    yield script
    script.run("stop-db")
    shutil.rmtree(home, ignore_errors=True)


def can_connect(db_uri: str) -> bool:
    import psycopg2

    try:
        with contextlib.closing(psycopg2.connect(db_uri.replace("+psycopg2", ""), connect_timeout=5)):
            return True
    except psycopg2.OperationalError:
        return False


def test_start_db_is_idempotent_and_the_role_owns_its_database(script: Script) -> None:
    import psycopg2

    assert script.run("url").returncode == 78  # no database yet
    assert [script.run("start-db").returncode for _ in range(2)] == [0, 0]
    found = script.uris()
    env = script.env
    assert found["MLFLOW_TRACKING_URI"] == f"http://{LOCALHOST}:{env['RETRAIND_MLFLOW_PORT']}"
    db_uri = found["MLFLOW_BACKEND_STORE_URI"]
    assert db_uri.startswith("postgresql+psycopg2://mlflow:") and db_uri.endswith(
        f"@{LOCALHOST}:{env['RETRAIND_PG_PORT']}/mlflow"
    )
    assert (script.home / "share/retraind/postgres/mlflow.password").stat().st_mode & 0o777 == 0o600
    # MLflow migrates its own schema: the role must be able to create tables.
    with contextlib.closing(psycopg2.connect(db_uri.replace("+psycopg2", ""))) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE probe (x int)")
        conn.commit()

    assert script.run("stop-db").returncode == 0
    assert not can_connect(db_uri)
    assert script.run("start-db").returncode == 0
    assert script.uris()["MLFLOW_BACKEND_STORE_URI"] == db_uri
    assert can_connect(db_uri)


@pytest.mark.skipif(not IS_ROOT, reason="only root is refused")
def test_root_is_refused_with_a_configuration_error(script: Script) -> None:
    result = script.run("start-db", as_root=True)
    assert result.returncode == 78 and "not root" in result.stderr


@pytest.mark.skipif(
    IS_ROOT, reason="serve needs a venv of the user the script runs as (CI runs unprivileged)"
)
def test_serve_runs_mlflow_on_the_database(script: Script) -> None:
    (script.home / ".venv").symlink_to(sys.prefix)  # the copy's repository is the home
    env = script.env
    log = script.home / "serve.log"
    proc = spawn(["bash", str(script.path), "serve"], log, env)
    url = f"http://{LOCALHOST}:{env['RETRAIND_MLFLOW_PORT']}"
    try:
        wait_ready(proc, lambda: answers(f"{url}/health"), 120, "mlflow-server.sh serve", log)
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert answers(search)
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(
                urllib.request.Request(search, headers={"Host": "evil.example"}), timeout=5
            )
        password = (script.home / "share/retraind/postgres/mlflow.password").read_text()
        assert not [pid for pid, argv in group_argv(proc.pid).items() if password in argv]
    finally:
        terminate(proc)


def group_argv(pgid: int) -> dict[int, str]:
    """The command lines of the live processes of a process group."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, IndexError):
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                found[int(proc.name)] = (proc / "cmdline").read_text().replace("\0", " ")
    assert found
    return found
