"""A full disk as the daemon meets it (root: a real tmpfs as the state directory, real podman): the run
fails saying "no space left on device", the daemon stays up and says so (status, metrics, doctor),
and once space returns the next run trains, with every journal row in place.

Unprivileged (CI), mounting needs a user namespace, where podman cannot run: there the journal-level
test in test_disk_full.py runs on a real tmpfs, and tests/unit/test_service.py drives this loop."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import RETRAIND, Daemon
from tests.integration.test_daemon import drop

pytestmark = pytest.mark.podman
SPARE_BYTES = 150_000  # room for journal writes, not for the 357 KB sample's snapshot


@pytest.fixture
def tmpfs_state(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs beside real podman (see the module docstring)")
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(state)], check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill_but(directory: Path, spare: int) -> Path:
    """Fill the filesystem, then give back `spare` bytes."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - spare))
    return filler


def gauge(daemon: Daemon, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=10).read()
    return next(float(line.split()[1]) for line in text.decode().splitlines() if line.startswith(name + " "))


def test_a_full_disk_fails_the_run_not_the_daemon_which_recovers_when_space_returns(
    tmp_path: Path, tmpfs_state: Path, podman_ready: None
) -> None:
    repo = committed_copy(tmp_path / "repo")
    (tmp_path / "data").mkdir()
    daemon = Daemon(repo, tmp_path / "data", tmpfs_state, tmp_path, RETRAIND_RECONCILE_INTERVAL_S="3")
    daemon.start()
    try:
        filler = fill_but(tmpfs_state, SPARE_BYTES)
        drop(tmp_path / "data", "sample.csv")
        (failed,) = daemon.wait_idle(1)  # the half export is removed, so the failure itself is journalled
        assert failed.status == "failed" and "no space left on device" in (failed.error or ""), failed
        assert daemon.proc is not None and daemon.proc.poll() is None  # still up
        assert gauge(daemon, "retraind_state_no_space") == 1
        assert not (tmpfs_state / "runs" / failed.run_id).exists()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RETRAIND_", "MLFLOW_"))}
        doctor = subprocess.run(
            [RETRAIND, "doctor", "--json", "--repo", str(repo), "--data-dir", str(tmp_path / "data"),
             "--state-dir", str(tmpfs_state)],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        checks = {c["name"]: c for c in json.loads(doctor.stdout.splitlines()[-1])}
        assert doctor.returncode == 78 and not checks["disk space"]["ok"], checks

        filler.unlink()  # space returns: the periodic reconcile sees the drop was never trained
        runs = daemon.wait_idle(2)
        assert [r.status for r in runs] == ["failed", "succeeded"], runs
        assert gauge(daemon, "retraind_state_no_space") == 0
        assert not [e for e in daemon.lines if e.get("event") == "non_json"]
    finally:
        daemon.stop()
