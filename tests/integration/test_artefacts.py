"""Deployable artefacts are checked by their own tools: systemd units, Grafana provisioning."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from tests.conftest import ROOT, require_tool


def test_systemd_units_verify_clean(tmp_path: Path, runtime_dir: Path) -> None:
    """systemd-analyze prints unknown keys only as warnings, so any output at all is a failure."""
    require_tool("systemd-analyze")
    for name in (".venv/bin/retraind", "tools/mlflow-server.sh"):  # what the units' Exec* lines run
        exe = tmp_path / "home/retraind" / name
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    units = sorted(str(p) for p in (ROOT / "systemd").iterdir() if p.suffix in (".service", ".timer"))
    assert units
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(runtime_dir)}
    result = subprocess.run(
        ["systemd-analyze", "verify", "--user", *units], env=env, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_units_run_executables_of_this_checkout() -> None:
    """Exec lines run %h/retraind/PATH directly: each PATH in the repository must be executable
    (the .venv is made by tools/setup.sh)."""
    paths = {
        word.split("%h/retraind/", 1)[1]
        for unit in (ROOT / "systemd").iterdir()
        for line in unit.read_text().splitlines()
        if line.startswith("Exec")
        for word in line.split("=", 1)[1].split()
        if word.startswith("%h/retraind/")
    }
    assert "tools/mlflow-server.sh" in paths
    for path in sorted(paths - {".venv/bin/retraind"}):
        assert os.access(ROOT / path, os.X_OK), path


def test_grafana_datasources_have_fixed_uids() -> None:
    doc = yaml.safe_load((ROOT / "grafana/provisioning/datasources/retraind.yaml").read_text())
    uids = {d["uid"]: d["type"] for d in doc["datasources"]}
    assert uids == {
        "retraind-mlflow-pg": "grafana-postgresql-datasource",
        "retraind-prometheus": "prometheus",
    }
