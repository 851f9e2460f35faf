"""Drive a real `retraind watch` process: its JSON log lines, its journal, its signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pygit2

from daemon.adapters.control import request
from daemon.core.errors import InfrastructureError
from daemon.state.journal import Journal, RunRow
from tests.integration.services import free_port

RETRAIND = str(Path(sys.executable).parent / "retraind")
# Deadlines are generous: under load (CI, other work on the CPUs) a run takes several times longer;
# a test waits on observable state, so a fast machine still finishes fast.
RUN_DEADLINE_S = 600.0


def run_cli(*argv: str, env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]], str]:
    """`retraind ARGV` as typed, outside any RETRAIND_/MLFLOW_ setting of ours: its exit code, its
    stdout's JSON lines (every line is one), and stdout + stderr for assertion messages."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
    done = subprocess.run(
        [RETRAIND, *argv], capture_output=True, text=True, env={**base, **(env or {})}, timeout=1800
    )
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stdout + done.stderr


class JsonLines:
    """A process of ours whose stdout is JSON lines (retraind --json), read in a thread as it writes."""

    what = "process"

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.proc: subprocess.Popen[str] | None = None

    def follow(self, argv: list[str], env: dict[str, str]) -> None:
        """Start argv (stderr into stdout) and read its lines from now on."""
        out, err = subprocess.PIPE, subprocess.STDOUT
        self.proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True, env=env)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                self.lines.append({"event": "non_json", "text": line.rstrip()})

    def wait_log(
        self, match: Callable[[dict[str, Any]], bool], timeout: float, since: int = 0
    ) -> dict[str, Any]:
        """The first line that matches, from line `since` on (len(lines) before an action: its effect)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((e for e in list(self.lines)[since:] if match(e)), None)
            if found is not None:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.what} exited {self.proc.returncode}: {self.lines[-5:]}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s; last lines: {self.lines[-8:]}")


class Daemon(JsonLines):
    what = "daemon"

    def __init__(self, repo: Path, data: Path, state: Path, home: Path, **env: str) -> None:
        super().__init__()
        self.repo, self.data, self.state, self.home, self.extra_env = repo, data, state, home, env
        self.metrics_port = free_port()

    def start(self) -> Daemon:
        # The real HOME: rootless podman keeps its image store and configuration under it.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
        config = self.home / "retraind.toml"  # empty: only the flags below count
        config.touch()
        env.update(
            RETRAIND_CONFIG=str(config), RETRAIND_METRICS_PORT=str(self.metrics_port), **self.extra_env
        )
        argv = [RETRAIND, "watch", "--json", "--repo", str(self.repo)]
        argv += ["--data-dir", str(self.data), "--state-dir", str(self.state)]
        self.follow(argv, env)
        self.wait_log(lambda e: e.get("event") == "watch_started", 300)
        return self

    def runs(self) -> list[RunRow]:
        journal = Journal.open(self.state / "journal.db")
        try:
            return list(reversed(journal.recent_runs(100)))  # oldest first
        finally:
            journal.close()

    def wait_runs(self, count: int, timeout: float) -> list[RunRow]:
        """Wait until `count` runs have finished and nothing runs; return all runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs()
            finished = [r for r in runs if r.finished_at is not None]
            if len(finished) >= count and all(r.finished_at is not None for r in runs):
                return runs
            time.sleep(0.25)
        raise AssertionError(f"expected {count} finished runs, got {self.runs()}")

    def status(self) -> dict[str, Any] | None:
        """The daemon's own view over its control socket (`retraind status`), None while none answers."""
        try:
            reply = request(self.state / "control.sock", {"cmd": "status"}, timeout_s=30)
        except InfrastructureError:
            return None
        return reply if reply.get("ok") else None

    def idle(self) -> bool:
        """Nothing running, queued, waiting in the debouncer or held back for the journal."""
        s = self.status()
        return (
            s is not None
            and s.get("running") is None
            and s.get("queue_depth") == 0
            and not s.get("pending_changes")
            and not s.get("held_events")
        )

    def wait_idle(self, runs: int = 0, timeout: float = RUN_DEADLINE_S) -> list[RunRow]:
        """Wait until at least `runs` runs have finished and the daemon is idle; return all runs.

        Idle is the daemon's word (the control socket's status), not a quiet period: once it is idle
        with nothing pending, no further run starts without a new event, so "exactly one run" can be
        asserted right away, with no sleep.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.lines[-5:]}")
            if self.idle():
                found = self.runs()
                if len(found) >= runs and all(r.finished_at is not None for r in found):
                    return found
            time.sleep(0.25)
        raise AssertionError(
            f"not idle with {runs} finished runs after {timeout} s: {self.status()}, {self.runs()}"
        )

    def wait_container(self, run_id: str, timeout: float = RUN_DEADLINE_S) -> str:
        """Wait until a container of the run is up (podman ps); return its ID."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ps = subprocess.run(
                ["podman", "ps", "-q", f"--filter=label=io.retraind.run={run_id}"],
                capture_output=True,
                text=True,
                check=True,
            )
            if ps.stdout.strip():
                return ps.stdout.split()[0]
            time.sleep(0.25)
        raise AssertionError(f"no container of run {run_id} came up within {timeout} s")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def commit_file(repo_path: Path, name: str, content: str, message: str) -> str:
    repo = pygit2.Repository(str(repo_path))
    (repo_path / name).write_text(content)
    repo.index.add(name)
    repo.index.write()
    sig = pygit2.Signature("retraind tests", "tests@localhost")
    oid = repo.create_commit("HEAD", sig, sig, message, repo.index.write_tree(), [repo.head.target])
    return str(oid)


def commit_hanging_training(repo_path: Path) -> str:
    """A commit whose scripts/train.py sleeps for an hour before it trains: a stage that is surely
    still running when a test stops or times it out (every stage takes a second on the sample)."""
    train = (repo_path / "scripts/train.py").read_text()
    main = 'if __name__ == "__main__":\n'
    assert main in train
    hanging = train.replace(main, main + "    import time\n\n    time.sleep(3600)\n")
    return commit_file(repo_path, "scripts/train.py", hanging, "hang")
