"""A real full filesystem (a tmpfs as the state directory; mounting needs root).

- The journal: SQLite's own error is recognised as "no space", writes wait in memory and all land
  once space returns; a reader still opens the journal on the full disk.
- The daemon as a user meets it (real podman): the run fails saying "no space left on device", the
  daemon stays up and says so (metrics, doctor), and once space returns the next run trains.

CI runs the suite unprivileged: the journal test then runs again in a user namespace of its own
(`unshare --user --map-root-user --mount`), where mounting is allowed but podman cannot run, so the
daemon test is root's (developers, lab servers); tests/unit/test_service.py drives that loop in CI.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from daemon.adapters.heldwrites import HeldWrites
from daemon.core.errors import InfrastructureError
from daemon.core.nospace import is_no_space
from daemon.state.journal import Journal
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import RETRAIND, Daemon
from tests.integration.test_daemon import drop

IN_A_NAMESPACE = ("test_journal_writes_on_a_full_disk_are_held_and_land_once_space_returns",)
SPARE_BYTES = 150_000  # room for journal writes, not for the commit's export or the sample's snapshot


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (see the module docstring)")
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "state", "2m") as state:
        yield state


@pytest.fixture
def tmpfs_state(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "state", "64m") as state:
        yield state


def fill(directory: Path, spare: int = 0) -> Path:
    """Fill the filesystem, then give back `spare` bytes."""
    filler = directory / "filler"
    # Unbuffered: a buffered writer keeps the tail of the last short write and raises ENOSPC again
    # when it is closed (whenever the free space was not a multiple of the chunk).
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)  # a short write returns less; the next one raises
        except OSError as e:
            assert e.errno == errno.ENOSPC
    os.truncate(filler, max(0, filler.stat().st_size - spare))
    return filler


def test_journal_writes_on_a_full_disk_are_held_and_land_once_space_returns(small_state: Path) -> None:
    journal = Journal.open(small_state / "journal.db")
    held = HeldWrites()
    filler = fill(small_state)
    detail = "x" * 200_000  # bigger than any slack SQLite's pages may still have
    with pytest.raises(InfrastructureError) as caught:
        journal.record_event([("data", detail)])
    assert is_no_space(caught.value), str(caught.value)
    assert not held.write(
        "start_run", lambda at: journal.start_run("r1", "data", [("data", detail)], "c", "d", at=at)
    )
    assert held.count == 1 and journal.get_run("r1") is None
    reader = Journal.open(
        small_state / "journal.db"
    )  # `retraind status` on a full disk: opening writes nothing
    assert reader.get_run("r1") is None
    reader.close()
    filler.unlink()
    assert held.flush() and held.count == 0
    assert journal.get_run("r1") is not None
    journal.close()


def test_an_unprivileged_user_runs_the_journal_test_in_a_user_namespace_of_its_own() -> None:
    if os.geteuid() == 0:
        pytest.skip("root ran it directly")
    ids = [f"{__file__}::{name}" for name in IN_A_NAMESPACE]
    argv = ["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-m", "pytest", "-q", "-rs"]
    done = subprocess.run(
        [*argv, "-n", "0", "-p", "no:cacheprovider", *ids], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{len(ids)} passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-3000:]


def gauge(daemon: Daemon, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=10).read()
    return next(float(line.split()[1]) for line in text.decode().splitlines() if line.startswith(name + " "))


@pytest.mark.podman
def test_a_full_disk_fails_the_run_not_the_daemon_which_recovers_when_space_returns(
    tmp_path: Path, tmpfs_state: Path, podman_ready: None
) -> None:
    repo = committed_copy(tmp_path / "repo")
    (tmp_path / "data").mkdir()
    daemon = Daemon(repo, tmp_path / "data", tmpfs_state, tmp_path, RETRAIND_RECONCILE_INTERVAL_S="3")
    daemon.start()
    try:
        filler = fill(tmpfs_state, SPARE_BYTES)
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
