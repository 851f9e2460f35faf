from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.adapters.manifest import build_manifest
from daemon.adapters.snapshot import SNAPSHOT, read_manifest, take_snapshot
from daemon.adapters.store import UNREADABLE, UNSTABLE, ObjectStore
from daemon.core.config import Settings, load_settings
from daemon.core.errors import GateRejectedError, InfrastructureError


def settings(tmp: Path) -> Settings:
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    return load_settings(
        {"repo": tmp, "data_dir": data, "state_dir": tmp / "state"}, environ={"HOME": str(tmp)}
    )


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_ingest_stores_the_bytes_it_hashed_read_only(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_bytes(b"sentiment,text\npositive,hi\n" * 1000)
    store = ObjectStore(tmp_path / "objects")
    digest = store.ingest(str(src), os.stat(src))
    assert digest == sha(src.read_bytes())
    obj = store.path(digest)
    assert obj.read_bytes() == src.read_bytes()
    assert stat.S_IMODE(obj.stat().st_mode) == 0o444
    assert store.has(digest, src.stat().st_size) and not store.has(digest, 1)


def test_a_file_that_changed_since_the_scan_is_not_stored(tmp_path: Path) -> None:
    src = tmp_path / "a.csv"
    src.write_bytes(b"first chunk\n")
    scanned = os.stat(src)
    with src.open("ab") as fh:
        fh.write(b"second chunk\n")
    store = ObjectStore(tmp_path / "objects")
    assert store.ingest(str(src), scanned) == UNSTABLE
    assert store.all_objects() == {}
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []  # no half copy left behind


def test_snapshot_links_the_manifest_files_into_the_run_and_records_them(tmp_path: Path) -> None:
    s = settings(tmp_path)
    (s.data_dir / "b.csv").write_bytes(b"b")
    (s.data_dir / "a.csv").write_bytes(b"a")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    manifest = take_snapshot(s, run_dir)
    snapshot = run_dir / SNAPSHOT
    assert sorted(p.name for p in snapshot.iterdir()) == ["a.csv", "b.csv"]
    assert (snapshot / "a.csv").stat().st_ino == ObjectStore(s.state_dir / "objects").path(
        sha(b"a")
    ).stat().st_ino
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o555
    assert read_manifest(run_dir) == manifest.to_json()
    # The live directory moves on; the snapshot does not.
    (s.data_dir / "a.csv").write_bytes(b"changed")
    assert (snapshot / "a.csv").read_bytes() == b"a"


def test_unchanged_files_are_neither_read_nor_copied_again(tmp_path: Path) -> None:
    s = settings(tmp_path)
    (s.data_dir / "a.csv").write_bytes(b"a" * 10)
    later = lambda: time.time_ns() + 10**10  # noqa: E731  (hashed well after the last change: not racy)
    first = take_snapshot(s, tmp_path / "r1", now_ns=later)
    read: list[str] = []

    @dataclass(frozen=True)
    class Counting(ObjectStore):
        def ingest(self, source: str, expected: os.stat_result) -> str:
            read.append(source)
            return super().ingest(source, expected)

    again = take_snapshot(s, tmp_path / "r2", store=Counting(s.state_dir / "objects"), now_ns=later)
    assert again.sha256 == first.sha256 and read == []
    # A collected object is copied again, even though the stat cache knows the hash.
    obj = ObjectStore(s.state_dir / "objects").path(first.files[0].sha256)
    obj.unlink()
    take_snapshot(s, tmp_path / "r3", store=Counting(s.state_dir / "objects"), now_ns=later)
    assert len(read) == 1 and obj.is_file()


def test_a_file_still_being_written_is_retried_after_a_quiet_window_then_refused(tmp_path: Path) -> None:
    s = settings(tmp_path)
    growing = s.data_dir / "growing.csv"
    growing.write_bytes(b"sentiment,text\n")
    waits: list[float] = []

    @dataclass(frozen=True)
    class WriterBetweenScanAndCopy(ObjectStore):
        def ingest(self, source: str, expected: os.stat_result) -> str:
            with open(source, "ab") as fh:
                fh.write(b"positive,more\n")
            return super().ingest(source, expected)

    store = WriterBetweenScanAndCopy(s.state_dir / "objects")
    with pytest.raises(GateRejectedError, match=r"growing.csv.*kept changing") as caught:
        take_snapshot(s, tmp_path / "run", wait=waits.append, store=store)
    assert caught.value.kinds == {"unstable_file"} and waits == [s.quiet_s, s.quiet_s]
    assert not (tmp_path / "run" / SNAPSHOT).exists()

    calls: list[str] = []

    @dataclass(frozen=True)
    class WriterOnce(ObjectStore):
        def ingest(self, source: str, expected: os.stat_result) -> str:
            if not calls:
                with open(source, "ab") as fh:
                    fh.write(b"negative,last\n")
            calls.append(source)
            return super().ingest(source, expected)

    manifest = take_snapshot(
        s, tmp_path / "run2", wait=waits.append, store=WriterOnce(s.state_dir / "objects")
    )
    assert manifest.files[0].sha256 == sha(growing.read_bytes()) and len(calls) == 2


def test_special_files_and_link_loops_are_refused_not_read(tmp_path: Path) -> None:
    s = settings(tmp_path)
    (s.data_dir / "good.csv").write_bytes(b"x")
    os.mkfifo(s.data_dir / "pipe.csv")  # opening it would block: it must never be opened
    (s.data_dir / "loop.csv").symlink_to(s.data_dir / "loop2.csv")
    (s.data_dir / "loop2.csv").symlink_to(s.data_dir / "loop.csv")
    manifest = take_snapshot(s, tmp_path / "run")
    assert manifest.names == ("good.csv",)
    assert dict(manifest.refused) == {
        "loop.csv": "a symlink loop",
        "loop2.csv": "a symlink loop",
        "pipe.csv": "not a regular file (a named pipe)",
    }


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-0 file; CI runs this as a normal user")
def test_a_file_this_user_cannot_read_is_refused_not_a_crash(tmp_path: Path) -> None:
    s = settings(tmp_path)
    (s.data_dir / "good.csv").write_bytes(b"x")
    (s.data_dir / "secret.csv").write_bytes(b"y")
    (s.data_dir / "secret.csv").chmod(0)
    manifest = build_manifest(s.data_dir, "*.csv", store=ObjectStore(s.state_dir / "objects"))
    assert manifest.names == ("good.csv",)
    assert dict(manifest.refused) == {"secret.csv": "cannot be read by this user (permission denied)"}


def test_a_store_that_cannot_be_written_is_an_infrastructure_error_naming_the_place(tmp_path: Path) -> None:
    s = settings(tmp_path)
    (s.data_dir / "a.csv").write_bytes(b"a")
    s.state_dir.mkdir()
    (s.state_dir / "objects").write_text("not a directory")
    with pytest.raises(InfrastructureError, match="objects"):
        take_snapshot(s, tmp_path / "run")


def test_an_unreadable_file_is_refused_and_kept_out_of_the_stat_cache(tmp_path: Path) -> None:
    """The store says UNREADABLE (as it does for EACCES): refused by name, the others cached as usual."""
    s = settings(tmp_path)
    (s.data_dir / "good.csv").write_bytes(b"x")
    (s.data_dir / "secret.csv").write_bytes(b"y")

    @dataclass(frozen=True)
    class Denying(ObjectStore):
        def ingest(self, source: str, expected: os.stat_result) -> str:
            return UNREADABLE if source.endswith("secret.csv") else super().ingest(source, expected)

    manifest = take_snapshot(s, tmp_path / "run", store=Denying(s.state_dir / "objects"))
    assert manifest.names == ("good.csv",)
    assert dict(manifest.refused) == {"secret.csv": "cannot be read by this user (permission denied)"}
    cached = (s.state_dir / "manifest-cache.json").read_text()
    assert "good.csv" in cached and "secret.csv" not in cached
