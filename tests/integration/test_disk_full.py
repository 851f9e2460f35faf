"""A real full filesystem (a 2 MB tmpfs as the state directory, root only): SQLite's own error is
recognised as "no space", the journal's writes wait in memory, and they all land once space returns."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.errors import InfrastructureError
from daemon.heldwrites import HeldWrites
from daemon.journal import Journal
from daemon.nospace import is_no_space


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs unprivileged; the unit tests cover the logic)")
    state = tmp_path / "state"
    state.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
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


def test_an_unprivileged_user_runs_these_in_a_user_namespace_of_its_own() -> None:
    """CI runs the suite unprivileged: there the tests above run again under `unshare --user
    --map-root-user --mount`, root in a namespace of their own, where mounting a tmpfs is allowed."""
    if os.geteuid() == 0:
        pytest.skip("root ran the tests above directly")
    others = [name for name in globals() if name.startswith("test_") and "namespace" not in name]
    ids = [f"{__file__}::{name}" for name in others]
    argv = ["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-m", "pytest", "-q", "-rs"]
    done = subprocess.run(
        [*argv, "-p", "no:cacheprovider", *ids], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{len(others)} passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-3000:]
