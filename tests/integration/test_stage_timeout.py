"""A stage past its timeout, on real podman: its container stopped and removed, its log kept."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import pytest

from daemon.adapters.podman import PodmanCli
from daemon.core.errors import EXIT_STAGE, StageTimeoutError
from daemon.core.jobs import BuildJob, ContainerJob
from tests.integration.conftest import BASE_IMAGE

pytestmark = pytest.mark.podman


def _labelled(run_id: str) -> list[str]:
    found = subprocess.run(
        ["podman", "ps", "-aq", f"--filter=label=io.retraind.run={run_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return found.stdout.split()


def test_a_timed_out_container_is_stopped_and_removed_and_its_log_kept(
    tmp_path: Path, podman_ready: None
) -> None:
    run_id = f"timeout-{secrets.token_hex(4)}"
    job = ContainerJob(
        name=f"retraind-{run_id}-train",
        image=BASE_IMAGE,
        argv=("sh", "-c", "echo started; sleep 600"),
        labels={"io.retraind.run": run_id, "io.retraind.stage": "train"},
        timeout_s=3,
    )
    log = tmp_path / "train" / "log"
    t0 = time.monotonic()
    try:
        with pytest.raises(StageTimeoutError) as caught:
            PodmanCli(stop_timeout_s=2).run(job, log)
        elapsed = time.monotonic() - t0
        assert elapsed < 90, f"took {elapsed:.0f} s to stop a 3 s stage"
        assert "stage train timed out after 3 s" in str(caught.value)
        assert caught.value.exit_code == EXIT_STAGE
        text = log.read_text(encoding="utf-8")
        assert "started" in text and "[timed out after 3 s]" in text
        assert _labelled(run_id) == []
    finally:
        subprocess.run(["podman", "rm", "-f", "--ignore", job.name], capture_output=True, check=False)


def test_a_timed_out_build_is_stopped_with_sigterm(tmp_path: Path, podman_ready: None) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text(f"FROM {BASE_IMAGE}\nRUN echo building; sleep 600\n")
    tag = f"localhost/retraind-timeout-{secrets.token_hex(4)}"
    job = BuildJob(context, context / "Containerfile", tag, timeout_s=15)
    log = tmp_path / "build" / "log"
    try:
        with pytest.raises(StageTimeoutError) as caught:
            PodmanCli().build(job, log)
        assert "stage build timed out after 15 s" in str(caught.value)
        assert "SIGTERM" in str(caught.value)
        assert "building" in log.read_text(encoding="utf-8")
        leftover = subprocess.run(
            ["podman", "ps", "-a", "--external", "--format={{.Image}} {{.Command}}"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert "sleep 600" not in leftover.stdout  # podman build removed its build container
    finally:
        subprocess.run(["podman", "rmi", "-f", "--ignore", tag], capture_output=True, check=False)
