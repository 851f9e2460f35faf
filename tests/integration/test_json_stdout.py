"""`retraind run --json` as journald sees it: every line on stdout (and stderr) is one JSON object,
with MLflow on an http server too (which prints "View run ... at: URL" unless told not to)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.services import MlflowServer

RETRAIND = str(Path(sys.executable).parent / "retraind")


def clean_env(home: Path) -> dict[str, str]:
    """The real HOME stays (rootless podman's store is under it); retraind's settings are ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
    config = home / "retraind.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.touch()
    return {**env, "RETRAIND_CONFIG": str(config)}


def parse_lines(text: str, stream: str) -> list[dict[str, Any]]:
    parsed = []
    for line in text.splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line on {stream}: {line!r}")
    return parsed


def test_recording_on_an_mlflow_server_prints_only_json(tmp_path: Path, mlflow_server: MlflowServer) -> None:
    script = (
        "import structlog\n"
        "from daemon.adapters.logs import configure_logging\n"
        "configure_logging(json_lines=True)\n"
        "from daemon.adapters.tracking import MlflowTracker\n"
        "from daemon.core.records import RunRecord\n"
        "record = RunRecord('json-stdout', 'r1', 'FINISHED', {'seed': '1'},\n"
        "                   {'f1_score_weighted': 0.5},\n"
        f"                   {{'retraind.run_id': 'json-{secrets.token_hex(4)}'}})\n"
        f"registration = MlflowTracker({mlflow_server.url!r}).record(record, 'json-stdout-model')\n"
        "structlog.get_logger().info('run_recorded', mlflow_run_id=registration.run_id)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "View run" not in done.stdout
    lines = parse_lines(done.stdout, "stdout")
    assert [e["event"] for e in lines][-1] == "run_recorded"
    parse_lines(done.stderr, "stderr")


@pytest.mark.podman
@pytest.mark.slow
def test_retraind_run_json_writes_only_json_lines(
    tmp_path: Path, podman_ready: None, mlflow_server: MlflowServer
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(ROOT / "data/sample.csv", data / "sample.csv")
    argv = [RETRAIND, "run", "--json", "--repo", str(ROOT), "--data-dir", str(data)]
    argv += ["--state-dir", str(tmp_path / "state"), "--tracking-uri", mlflow_server.url]
    argv += ["--experiment", f"json-stdout-{secrets.token_hex(4)}", "--model-name", "json-stdout-model"]
    done = subprocess.run(
        argv, env=clean_env(tmp_path / "home"), capture_output=True, text=True, timeout=900, check=False
    )
    assert "View run" not in done.stdout
    lines = parse_lines(done.stdout, "stdout")
    finished = [e for e in lines if e.get("event") == "run_finished"]
    assert done.returncode == 0 and len(finished) == 1, (done.stdout[-3000:], done.stderr[-3000:])
    assert finished[0]["model_version"]  # it went through MLflow registration
    parse_lines(done.stderr, "stderr")  # journald files stderr in the same journal
