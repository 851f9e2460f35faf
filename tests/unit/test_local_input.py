"""Bad local input, through the real `retraind` entry point: exit 78 and one line saying what to do.

Each case is what a user or a systemd unit meets: a data directory that is missing or a file, a
repository that is not one, a damaged journal, an unreadable configuration, relative paths. Exit 78
matters: the unit has `RestartPreventExitStatus=78`, anything else is restarted forever.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
import pytest

RETRAIND = str(Path(sys.executable).parent / "retraind")


@dataclass
class Sandbox:
    """Its own HOME and an empty settings file: only the flags each test passes count."""

    root: Path
    repo: Path
    data: Path
    env: dict[str, str]

    def retraind(self, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RETRAIND, *argv],
            capture_output=True,
            text=True,
            check=False,
            env=self.env,
            cwd=cwd or self.root,
            timeout=60,  # a daemon that starts anyway instead of refusing fails here
        )

    def flags(self, **paths: Path) -> list[str]:
        values = {"repo": self.repo, "data_dir": self.data, "state_dir": self.root / "state", **paths}
        return [x for name, path in values.items() for x in (f"--{name.replace('_', '-')}", str(path))]


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "retraind.toml"
    config.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_", "XDG_"))}
    env.update(HOME=str(home), RETRAIND_CONFIG=str(config), RETRAIND_METRICS_PORT="0")
    repo = tmp_path / "repo"
    git = pygit2.init_repository(str(repo))
    (repo / "README").write_text("a project\n")
    git.index.add("README")
    git.index.write()
    sig = pygit2.Signature("retraind tests", "tests@localhost")
    git.create_commit("HEAD", sig, sig, "one", git.index.write_tree(), [])
    data = tmp_path / "data"
    data.mkdir()
    (data / "drop.csv").write_text("sentiment,text\npositive,fine\nnegative,bad\n")
    return Sandbox(tmp_path, repo, data, env)


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """Exit 78, no traceback, JSON lines only, exactly one error line; its message."""
    output = result.stdout + result.stderr
    assert result.returncode == 78, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    lines: list[dict[str, Any]] = [json.loads(line) for line in result.stdout.splitlines()]
    errors = [line for line in lines if line.get("level") == "error"]
    assert len(errors) == 1 and errors[0]["error_kind"] == "ConfigError", lines
    return str(errors[0]["error"])


@pytest.mark.parametrize("command", ["run", "watch"])
def test_a_data_directory_that_does_not_exist_is_refused_at_start(sandbox: Sandbox, command: str) -> None:
    missing = sandbox.root / "no-such-data"
    error = refusal(sandbox.retraind(command, "--json", *sandbox.flags(data_dir=missing)))
    assert error.startswith(f"data directory {missing} does not exist: create it")
    assert "--data-dir" in error


@pytest.mark.parametrize("command", ["run", "watch"])
def test_a_data_path_that_is_a_regular_file_is_refused(sandbox: Sandbox, command: str) -> None:
    """Before: `run` said it did not exist, the daemon warned and then watched nothing."""
    error = refusal(sandbox.retraind(command, "--json", *sandbox.flags(data_dir=sandbox.data / "drop.csv")))
    assert error == (
        f"data directory {sandbox.data / 'drop.csv'} is a file, not a directory: "
        "pass the directory with --data-dir"
    )


@pytest.mark.parametrize("command", ["run", "watch"])
def test_a_repository_that_is_not_git_is_refused(sandbox: Sandbox, command: str) -> None:
    plain = sandbox.root / "plain"
    plain.mkdir()
    error = refusal(sandbox.retraind(command, "--json", *sandbox.flags(repo=plain)))
    assert error == f"{plain} is not inside a git repository: run `git init` there, or pass --repo"


@pytest.mark.parametrize("command", ["status", "watch"])
def test_a_damaged_journal_names_the_file_and_says_to_move_it(sandbox: Sandbox, command: str) -> None:
    """Before: exit 5 (infrastructure), which systemd restarts every 5 s for ever."""
    state = sandbox.root / "state"
    state.mkdir(mode=0o700)
    (state / "journal.db").write_bytes(b"this is no SQLite file " * 200)
    error = refusal(sandbox.retraind(command, "--json", *sandbox.flags()))
    journal = state / "journal.db"
    assert error.startswith(f"state journal {journal} is not a usable SQLite database (file is not a")
    assert f"move it away (mv {journal} {journal}.broken)" in error


def test_an_unreadable_configuration_file_is_refused(sandbox: Sandbox) -> None:
    config = sandbox.root / "config-dir"
    config.mkdir()  # readable by root too, unlike a mode-0 file
    error = refusal(sandbox.retraind("status", "--json", "--config", str(config)))
    assert error.startswith(f"cannot read configuration {config}: Is a directory; make it a file you can")


def test_relative_paths_are_taken_from_the_current_directory(sandbox: Sandbox) -> None:
    """podman reads a relative `--volume` source as a named volume; every path is absolute at load."""
    result = sandbox.retraind(
        "run", "--json", "--repo", "repo", "--data-dir", "./gone/../missing", "--state-dir", "state"
    )
    assert refusal(result).startswith(f"data directory {sandbox.root / 'missing'} does not exist")


def modes(*paths: Path) -> list[str]:
    return [oct(stat.S_IMODE(p.stat().st_mode)) for p in paths]


def test_state_is_created_private_to_its_owner(sandbox: Sandbox) -> None:
    state = sandbox.root / "fresh" / "state"
    result = sandbox.retraind("status", "--json", "--state-dir", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["recent"] == []
    assert modes(state, state / "runs", state / "journal.db") == ["0o700", "0o700", "0o600"]
    # no empty placeholder: the first MLflow use makes it, whole and 0600 (integration/test_mlflow_db.py)
    assert not (state / "mlflow.db").exists()


def test_a_state_directory_readable_by_others_is_tightened_and_logged(sandbox: Sandbox) -> None:
    state = sandbox.root / "state"
    state.mkdir()
    state.chmod(0o755)
    result = sandbox.retraind("status", "--json", "--state-dir", str(state))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    tightened = [line for line in lines if line.get("event") == "state_mode_tightened"]
    assert [(t["path"], t["mode_was"], t["mode"]) for t in tightened] == [(str(state), "755", "700")]
    assert modes(state) == ["0o700"]


def test_a_state_directory_that_is_a_file_is_refused(sandbox: Sandbox) -> None:
    state = sandbox.root / "state-file"
    state.write_text("")
    error = refusal(sandbox.retraind("status", "--json", "--state-dir", str(state)))
    assert error == f"state directory {state} is not a directory: move that file away, or pass --state-dir"
