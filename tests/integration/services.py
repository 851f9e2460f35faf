"""Real PostgreSQL, MLflow tracking server and Prometheus for integration tests, on 127.0.0.1.

The classes work outside pytest too (bench/services.py times them); the fixtures at the bottom are
registered by tests/integration/conftest.py through `pytest_plugins`. Each service gets a free port,
a private directory and a log file whose tail is shown when it fails to come up.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from tests.conftest import IN_CI

LOCALHOST = "127.0.0.1"
POLL_S = 0.2


class ServiceError(RuntimeError):
    """A service did not come up (or go down) in time; the message ends with its log's tail."""

    def __init__(self, what: str, problem: str, log: Path | None) -> None:
        tail = log_tail(log) if log is not None else ""
        super().__init__(f"{what} {problem}" + (f"\n--- last lines of {log} ---\n{tail}" if tail else ""))


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def missing(what: str) -> NoReturn:
    """Skip on a laptop without the tool; under CI=true a missing tool is a failure."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but is not installed")
    pytest.skip(f"{what} not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a long-running service in its own process group, output appended to log."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group. Zombies count as gone: where PID 1
    does not reap orphans (as on this kind of machine) they never leave, but hold no port."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def terminate(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM the service's process group (the mlflow CLI has uvicorn children) and wait until the
    whole group is gone, so the port is free again; SIGKILL what is left after timeout seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    # A pgid stays reserved while any member lives, so a group that has members is still ours.
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        threading.Event().wait(POLL_S)
    if _group_alive(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout)


def wait_ready(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float, what: str, log: Path
) -> float:
    """Poll ready() until it holds; fail at once if the process exits. Returns the seconds taken."""
    started = time.monotonic()
    while not ready():
        if time.monotonic() - started > timeout:
            raise ServiceError(what, f"not ready after {timeout:.0f} s", log)
        try:
            code = proc.wait(POLL_S)  # doubles as the poll interval
        except subprocess.TimeoutExpired:
            continue
        raise ServiceError(what, f"exited with status {code} before it was ready", log)
    return time.monotonic() - started


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def answers(url: str) -> bool:
    try:
        http_get(url, timeout=2.0)
    except (OSError, urllib.error.URLError):
        return False
    return True


# --- PostgreSQL ------------------------------------------------------------------------------


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are: on PATH (symlinks resolved), else Debian's newest
    /usr/lib/postgresql/N/bin (Debian puts only wrappers, not initdb, on PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


@dataclass(frozen=True)
class Postgres:
    """How to reach a running cluster: a password-authenticated superuser over TCP."""

    host: str
    port: int
    user: str
    password: str

    def dsn(self, db: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={db}"

    def sqlalchemy_uri(self, db: str) -> str:
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def connect(self, db: str = "postgres") -> Any:
        import psycopg2

        return psycopg2.connect(self.dsn(db))

    def create_database(self, name: str) -> None:
        """Create the database unless it exists."""
        from psycopg2 import sql

        conn = self.connect()
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()


class PostgresCluster:
    """A throw-away cluster made by initdb and run by pg_ctl. initdb refuses to run as root, so as
    root the cluster belongs to the `postgres` system user and every command runs through runuser."""

    def __init__(self, bindir: Path, port: int | None = None, user: str = "retraind") -> None:
        self.bindir = bindir
        self.port = port or free_port()
        # In /tmp, not under pytest's tmp_path: that is root's (0700) when root, and the socket path
        # must stay under 107 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="retraind-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self.info = Postgres(LOCALHOST, self.port, user, secrets.token_hex(16))
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            self._as_owner = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.base, "postgres", "postgres")

    def _run(self, *argv: str, timeout: float = 60.0) -> None:
        result = subprocess.run(
            [*self._as_owner, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise ServiceError(f"{Path(argv[0]).name}", f"failed: {result.stderr.strip()}", self.log)

    def start(self) -> Postgres:
        if not self.data.exists():
            pwfile = self.base / "password"
            pwfile.write_text(self.info.password + "\n")
            if self._as_owner:
                shutil.chown(pwfile, "postgres", "postgres")
            self._run(
                str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.info.user,
                f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                "--no-sync",
            )  # fmt: skip
            pwfile.unlink()
        # fsync off: a test cluster is thrown away, and it makes DDL (MLflow's migrations) faster.
        options = f"-c listen_addresses={LOCALHOST} -p {self.port} -k {self.base} -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "-o", options, "start")  # fmt: skip
        return self.info

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- MLflow tracking server ------------------------------------------------------------------


class LocalServer:
    """A server process of a test: argv, a readiness probe, started and stopped the same way."""

    what = "server"
    log: Path
    _proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def environ(self) -> dict[str, str] | None:
        return None

    def ready(self) -> bool:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> float:
        """Start and wait until ready; returns the seconds it took (0 when it already ran)."""
        if self._proc is not None and self._proc.poll() is None:
            return 0.0
        self._proc = spawn(self.argv(), self.log, self.environ())
        try:
            return wait_ready(self._proc, self.ready, timeout, self.what, self.log)
        except ServiceError:
            self.stop()
            raise

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None


class MlflowServer(LocalServer):
    """`mlflow server` from this interpreter's venv. stop() and start() keep port, database and
    artifacts, so a test can take the server away and bring it back."""

    def __init__(self, backend_uri: str, workdir: Path, port: int | None = None, workers: int = 1) -> None:
        self.backend_uri = backend_uri
        self.artifacts = workdir / "artifacts"
        self.log = workdir / "mlflow-server.log"
        self.port = port or free_port()
        self.workers = workers
        self.url = f"http://{LOCALHOST}:{self.port}"

    def argv(self) -> list[str]:
        return [
            str(Path(sys.executable).parent / "mlflow"), "server",
            "--artifacts-destination", str(self.artifacts),
            "--host", LOCALHOST, "--port", str(self.port), "--workers", str(self.workers),
            "--allowed-hosts", f"{LOCALHOST}:{self.port},localhost:{self.port}",
        ]  # fmt: skip

    def environ(self) -> dict[str, str] | None:
        """As tools/mlflow-server.sh: the database URI (and its password) out of argv, which ps shows
        to every user; no job runner (a dozen processes, 2.7 GB, for GenAI jobs retraind never uses)."""
        return {
            **os.environ,
            "MLFLOW_BACKEND_STORE_URI": self.backend_uri,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }

    what = "mlflow server"

    def ready(self) -> bool:
        return answers(f"{self.url}/health")

    def start(self, timeout: float = 120.0) -> float:
        """Start and wait for /health; returns the seconds it took."""
        if self._proc is None or self._proc.poll() is not None:
            self.artifacts.mkdir(parents=True, exist_ok=True)
            with self.log.open("a") as log:
                log.write(f"--- {' '.join(self.argv())}\n")
        return super().start(timeout)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """An outage: the server is down inside the block and back up (same port, DB) after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()


# --- Prometheus ------------------------------------------------------------------------------


ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the alertmanager binary


class AlertmanagerServer(LocalServer):
    """Debian's Alertmanager on `config` (written to workdir), on a free port, clustering off."""

    what = "alertmanager"

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.workdir = workdir
        self.config = workdir / "alertmanager.yml"
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = workdir / "alertmanager.log"

    def argv(self) -> list[str]:
        return [
            ALERTMANAGER, f"--config.file={self.config}", f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={LOCALHOST}:{self.port}", "--cluster.listen-address=",
        ]  # fmt: skip

    def ready(self) -> bool:
        return answers(f"{self.url}/-/ready")

    def alerts(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(http_get(f"{self.url}/api/v2/alerts"))
        return found


class PrometheusServer(LocalServer):
    """The real prometheus binary scraping the given jobs every second."""

    def __init__(
        self,
        scrape_configs: list[dict[str, Any]],
        workdir: Path,
        port: int | None = None,
        rule_files: tuple[Path, ...] = (),
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOCALHOST}:{self.port}"
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        self.log = workdir / "prometheus.log"
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "scrape_configs": scrape_configs, "rule_files": [str(p) for p in rule_files]}  # fmt: skip
        self.config.write_text(json.dumps(config, indent=2))  # JSON is YAML

    def argv(self) -> list[str]:
        return [
            "prometheus", f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address={LOCALHOST}:{self.port}",
        ]  # fmt: skip

    what = "prometheus"

    def ready(self) -> bool:
        return answers(f"{self.url}/-/ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query; returns data.result (one dict per series: metric labels and value)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        doc = json.loads(http_get(url))
        if doc.get("status") != "success":
            raise ServiceError("prometheus", f"rejected {promql!r}: {doc}", self.log)
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result

    def wait_for(self, promql: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Query until the result is not empty; fails after timeout seconds."""
        assert self._proc is not None, "prometheus is not running"
        found: list[dict[str, Any]] = []

        def has_result() -> bool:
            nonlocal found
            found = self.query(promql)
            return bool(found)

        wait_ready(self._proc, has_result, timeout, f"prometheus query {promql!r}", self.log)
        return found


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A private PostgreSQL cluster for the whole session; create databases with create_database."""
    bindir = pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        missing("PostgreSQL (initdb, pg_ctl)")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or not _user_exists("postgres")):
        missing("runuser and the postgres user (initdb refuses root: as root the cluster is postgres's)")
    cluster = PostgresCluster(bindir)
    try:
        yield cluster.start()
    finally:
        cluster.remove()


@pytest.fixture(scope="session")
def mlflow_server(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """An MLflow tracking server on the `mlflow` database of the session's cluster."""
    postgres.create_database("mlflow")
    server = MlflowServer(postgres.sqlalchemy_uri("mlflow"), tmp_path_factory.mktemp("mlflow-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


StartPrometheus = Callable[..., PrometheusServer]


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartPrometheus]:
    """A factory: prometheus(scrape_configs) starts a server; all of them stop after the test."""
    if shutil.which("prometheus") is None:
        missing("prometheus")
    started: list[PrometheusServer] = []

    def start(scrape_configs: list[dict[str, Any]], rule_files: tuple[Path, ...] = ()) -> PrometheusServer:
        server = PrometheusServer(
            scrape_configs, tmp_path_factory.mktemp("prometheus"), rule_files=rule_files
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
