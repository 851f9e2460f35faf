"""The operator's commands for real: doctor, install-service, status."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from daemon.commands.install import install_service
from tests.conftest import ROOT, require_tool
from tests.integration.daemon_harness import RETRAIND


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """The real HOME stays (rootless podman's store lives there); settings come from flags only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
    return subprocess.run([RETRAIND, *argv], capture_output=True, text=True, check=False, env=env)


def test_doctor_names_each_problem_with_its_fix_and_fails(tmp_path: Path) -> None:
    require_tool("podman")
    missing = tmp_path / "no-such-data"
    flags = ("--repo", str(ROOT), "--data-dir", str(missing), "--state-dir", str(tmp_path / "state"))
    result = run("doctor", "--json", *flags)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert result.returncode == 78
    assert checks["data directory"]["ok"] is False
    assert checks["data directory"]["fix"] == f"mkdir -p {missing}"
    assert checks["base image"]["ok"] is True and checks["podman storage driver"]["detail"] == "overlay"
    missing.mkdir()
    again = run("doctor", "--json", *flags)
    assert again.returncode == 0, again.stdout


def test_installed_unit_points_at_this_checkout_and_verifies(tmp_path: Path, runtime_dir: Path) -> None:
    require_tool("systemd-analyze")
    target, steps = install_service(ROOT, tmp_path)
    text = target.read_text()
    assert f"ExecStart={ROOT}/.venv/bin/retraind watch --json" in text and "%h/retraind" not in text
    assert steps[:2] == ["systemctl --user daemon-reload", "systemctl --user enable --now retraind"]
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir)}
    result = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(target)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_status_without_a_daemon_says_down(tmp_path: Path) -> None:
    result = run("status", "--json", "--state-dir", str(tmp_path / "state"))
    status = json.loads(result.stdout)
    assert result.returncode == 0
    assert status["daemon"] == {"up": False} and status["current"] is None and status["recent"] == []
