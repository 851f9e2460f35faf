"""`retraind run` refuses bad set-ups with exit 78 and one structured line saying what to fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import cli
from tests.conftest import ROOT


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = cli.main(["run", "--json", *argv])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return code, lines[-1]


def test_not_a_git_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run(capsys, "--repo", str(tmp_path), "--state-dir", str(tmp_path / "s"))
    assert code == 78
    assert line["event"] == "run_refused" and "not inside a git repository" in str(line["error"])


def test_bad_setting_names_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("test_size = 2\n")
    code, line = run(capsys, "--config", str(cfg))
    assert code == 78 and "test_size" in str(line["error"])


def test_usage_error_is_2() -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--trigger", "cosmic"])
    assert info.value.code == 2


def test_install_service_as_typed_writes_the_unit_of_this_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`retraind install-service` used to crash (its parser had no --json) before writing anything."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.main(["install-service"]) == 0
    unit = tmp_path / ".config/systemd/user/retraind.service"
    text = unit.read_text()
    assert f"\nExecStart={ROOT}/.venv/bin/retraind watch --json\n" in text
    assert f"\nWorkingDirectory={ROOT}\n" in text and "%h/retraind" not in text
    (shown,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # stdout is no TTY
    assert shown["unit"] == str(unit) and shown["next"][0] == "systemctl --user daemon-reload"


def test_status_json_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """So that log lines and the answer can share stdout and still be read line by line."""
    config = tmp_path / "empty.toml"
    config.touch()
    monkeypatch.setenv("RETRAIND_CONFIG", str(config))
    assert cli.main(["status", "--json", "--state-dir", str(tmp_path / "state")]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["daemon"] == {"up": False}


ENTRY = """
import atexit, sys
atexit.register(lambda: print("teardown ran", flush=True))
sys.argv = ["retraind", *sys.argv[1:]]
from daemon.cli import entry
entry()
"""


@pytest.mark.parametrize(("command", "teardown"), [("run", False), ("status", True)])
def test_the_console_script_skips_the_teardown_after_run_only_with_every_line_out(
    tmp_path: Path, command: str, teardown: bool
) -> None:
    """After `run` the process leaves without the interpreter's teardown (atexit handlers are part
    of it), its exit code and every log line intact; other commands exit as usual."""
    argv = [command, "--json", "--state-dir", str(tmp_path / "s")]
    if command == "run":
        argv += ["--repo", str(tmp_path)]  # not a git repository: refused with 78, no podman needed
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    lines = done.stdout.splitlines()
    assert ("teardown ran" in lines) is teardown, done.stdout + done.stderr
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    if command == "run":
        assert done.returncode == 78 and logged[-1]["event"] == "run_refused", done.stdout + done.stderr
    else:
        assert done.returncode == 0 and logged, done.stdout + done.stderr
