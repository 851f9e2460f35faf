from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from daemon.adapters.manifest import RACY_WINDOW_NS, build_manifest, extra_files, manifest_diff, refusal
from daemon.core.errors import ConfigError
from daemon.core.inputs import DataFile, Manifest, file_sha256


def test_manifest_lists_matching_files_in_order_with_hashes(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_bytes(b"bbb")
    (tmp_path / "a.csv").write_bytes(b"a")
    (tmp_path / ".hidden.csv").write_bytes(b"h")
    (tmp_path / "notes.txt").write_bytes(b"n")
    m = build_manifest(tmp_path, "*.csv")
    assert m.names == ("a.csv", "b.csv")
    assert m.files[1].sha256 == hashlib.sha256(b"bbb").hexdigest()
    first = m.sha256
    (tmp_path / "a.csv").write_bytes(b"A")
    assert build_manifest(tmp_path, "*.csv").sha256 != first


def test_missing_or_empty_data_dir_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fetch-corpus"):
        build_manifest(tmp_path / "nope", "*.csv")
    with pytest.raises(ConfigError, match="no data files"):
        build_manifest(tmp_path, "*.csv")


def test_unsafe_entries_are_listed_for_the_gate_not_read(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "secret.csv"
    data.mkdir()
    outside.write_text("sentiment,text\npositive,x\n")
    (data / "good.csv").write_text("sentiment,text\npositive,fine\n")
    (data / "inside.csv").symlink_to(data / "good.csv")
    (data / "leak.csv").symlink_to(outside)
    (data / "folder.csv").mkdir()
    (data / "huge.csv").write_bytes(b"x" * 2048)
    m = build_manifest(data, "*.csv", max_file_bytes=1024)
    assert m.names == ("good.csv", "inside.csv")
    reasons = dict(m.refused)
    assert set(reasons) == {"leak.csv", "folder.csv", "huge.csv"}
    assert "outside the data directory" in reasons["leak.csv"] and str(outside) in reasons["leak.csv"]
    assert "directory" in reasons["folder.csv"] and "over the cap" in reasons["huge.csv"]


def test_a_drop_of_only_refused_entries_still_reaches_the_gate(tmp_path: Path) -> None:
    (tmp_path / "x.csv").mkdir()
    assert build_manifest(tmp_path, "*.csv").refused == (("x.csv", "a directory with a data file's name"),)


# -- the stat cache ------------------------------------------------------------------------------


def later() -> int:
    """A clock an hour ahead: whatever the test wrote has settled, outside the racy window."""
    return time.time_ns() + 3600 * 10**9


class CountingHash:
    """file_sha256, remembering which files it read."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def __call__(self, path: Path) -> str:
        self.read.append(path.name)
        return file_sha256(path)


def drop(tmp_path: Path, **files: bytes) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for name, content in files.items():
        (data / f"{name}.csv").write_bytes(content)
    return data


def test_a_cache_hit_reads_no_file_and_leaves_the_cache_file_alone(tmp_path: Path) -> None:
    data, cache = drop(tmp_path, a=b"x,1\n", b=b"y,2\n"), tmp_path / "state" / "manifest-cache.json"
    first, second = CountingHash(), CountingHash()
    built = build_manifest(data, "*.csv", cache_path=cache, hash_file=first, now_ns=later)
    written = cache.stat()
    again = build_manifest(data, "*.csv", cache_path=cache, hash_file=second, now_ns=later)
    assert sorted(first.read) == ["a.csv", "b.csv"] and second.read == []
    assert again == built == build_manifest(data, "*.csv")
    assert (cache.stat().st_ino, cache.stat().st_mtime_ns) == (written.st_ino, written.st_mtime_ns)


def test_a_file_replaced_with_the_same_size_and_mtime_is_rehashed(tmp_path: Path) -> None:
    data, cache = drop(tmp_path, a=b"old,1\n"), tmp_path / "cache.json"
    build_manifest(data, "*.csv", cache_path=cache, now_ns=later)
    before, replacement = (data / "a.csv").stat(), data / ".a.csv.new"
    replacement.write_bytes(b"new,2\n")
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(replacement, data / "a.csv")
    after = (data / "a.csv").stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    counting = CountingHash()
    m = build_manifest(data, "*.csv", cache_path=cache, hash_file=counting, now_ns=later)
    assert counting.read == ["a.csv"] and m.files[0].sha256 == hashlib.sha256(b"new,2\n").hexdigest()


@pytest.mark.parametrize("mtime_set_back", [False, True])
def test_a_record_made_soon_after_the_last_change_is_not_trusted(
    tmp_path: Path, mtime_set_back: bool
) -> None:
    data, cache = drop(tmp_path, a=b"x,1\n"), tmp_path / "cache.json"
    if mtime_set_back:  # an old mtime (touch -d, rsync -t) does not hide a fresh change: ctime counts
        os.utime(data / "a.csv", ns=(0, time.time_ns() - 3600 * 10**9))
    st = (data / "a.csv").stat()
    changed = max(st.st_mtime_ns, st.st_ctime_ns)
    soon, settled = changed + RACY_WINDOW_NS - 1, changed + RACY_WINDOW_NS
    counting = CountingHash()
    for _ in range(2):
        build_manifest(data, "*.csv", cache_path=cache, hash_file=counting, now_ns=lambda: soon)
    assert counting.read == ["a.csv", "a.csv"]  # racy: hashed again every time
    for _ in range(2):  # a hash started RACY_WINDOW_NS after the change is trusted from then on
        build_manifest(data, "*.csv", cache_path=cache, hash_file=counting, now_ns=lambda: settled)
    assert counting.read == ["a.csv"] * 3


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'{"version": 99, "files": {}}',
        b'{"version": 1, "files": []}',
    ],
)
def test_a_corrupt_cache_file_is_ignored_and_replaced(tmp_path: Path, content: bytes) -> None:
    data, cache = drop(tmp_path, a=b"x,1\n"), tmp_path / "cache.json"
    cache.write_bytes(content)
    counting = CountingHash()
    m = build_manifest(data, "*.csv", cache_path=cache, hash_file=counting, now_ns=later)
    assert counting.read == ["a.csv"] and m == build_manifest(data, "*.csv")
    assert list(json.loads(cache.read_text())["files"]) == [str((data / "a.csv").resolve())]
    build_manifest(data, "*.csv", cache_path=cache, hash_file=counting, now_ns=later)
    assert counting.read == ["a.csv"]


def test_a_damaged_record_is_rehashed(tmp_path: Path) -> None:
    data, cache = drop(tmp_path, a=b"x,1\n", b=b"y,2\n"), tmp_path / "cache.json"
    build_manifest(data, "*.csv", cache_path=cache, now_ns=later)
    stored = json.loads(cache.read_text())
    a, b = (str((data / f"{n}.csv").resolve()) for n in "ab")
    stored["files"] |= {a: stored["files"][a][:-10], b: 42}  # a truncated hash; not a string
    cache.write_text(json.dumps(stored))
    counting = CountingHash()
    m = build_manifest(data, "*.csv", cache_path=cache, hash_file=counting, now_ns=later)
    assert sorted(counting.read) == ["a.csv", "b.csv"] and m == build_manifest(data, "*.csv")


def test_records_of_files_that_no_longer_exist_are_dropped(tmp_path: Path) -> None:
    data, cache = drop(tmp_path, a=b"x,1\n", b=b"y,2\n"), tmp_path / "cache.json"
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.csv").write_bytes(b"z,3\n")
    build_manifest(other, "*.csv", cache_path=cache, now_ns=later)
    build_manifest(data, "*.csv", cache_path=cache, now_ns=later)
    (data / "b.csv").unlink()
    build_manifest(data, "*.csv", cache_path=cache, now_ns=later)
    kept = set(json.loads(cache.read_text())["files"])
    assert kept == {str((data / "a.csv").resolve()), str((other / "c.csv").resolve())}


def test_a_drop_without_a_cache_path_writes_no_cache(tmp_path: Path) -> None:
    data = drop(tmp_path, a=b"x,1\n")
    build_manifest(data, "*.csv")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.csv", "data"]


# -- parallel hashing ----------------------------------------------------------------------------


def test_parallel_hashing_keeps_name_order(tmp_path: Path) -> None:
    contents = {name: name.encode() * 3 for name in "abcd"}
    data = drop(tmp_path, **contents)
    finished: list[str] = []
    others_done = threading.Event()

    def first_finishes_last(path: Path) -> str:
        if path.name == "a.csv":
            assert others_done.wait(10), "the other files were not hashed meanwhile"
        sha = file_sha256(path)
        finished.append(path.name)
        if len(finished) == 3:
            others_done.set()
        return sha

    m = build_manifest(data, "*.csv", hash_file=first_finishes_last, workers=2)
    assert finished[-1] == "a.csv" and m.names == ("a.csv", "b.csv", "c.csv", "d.csv")
    assert [f.sha256 for f in m.files] == [hashlib.sha256(c).hexdigest() for c in contents.values()]


def test_a_failing_read_fails_the_manifest(tmp_path: Path) -> None:
    data = drop(tmp_path, a=b"1", b=b"2", c=b"3")

    def unreadable_b(path: Path) -> str:
        if path.name == "b.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return file_sha256(path)

    with pytest.raises(PermissionError):
        build_manifest(data, "*.csv", hash_file=unreadable_b, workers=2)


def test_refusal_judges_one_entry_like_the_manifest_does(tmp_path: Path) -> None:
    data = drop(tmp_path, good=b"x,1\n")
    (data / "dangling.csv").symlink_to(data / "gone.csv")
    (data / "to_dir.csv").symlink_to(data, target_is_directory=True)
    root = data.resolve()
    assert refusal(data / "good.csv", root, 1024) is None
    assert refusal(data / "dangling.csv", root, 1024) == "a dangling symlink (No such file or directory)"
    assert refusal(data / "to_dir.csv", root, 1024) == "a directory with a data file's name"
    assert refusal(data / "good.csv", root, 2) == "4 bytes, over the cap of 2 (max_file_bytes)"
    assert dict(build_manifest(data, "*.csv").refused) == {
        "dangling.csv": "a dangling symlink (No such file or directory)",
        "to_dir.csv": "a directory with a data file's name",
    }
    assert build_manifest(data, "good.csv").names == ("good.csv",)  # a plain name, not a wildcard


# -- comparing with a recorded manifest ----------------------------------------------------------


def test_manifest_diff_names_each_difference_and_extra_files_the_rest() -> None:
    recorded = [
        {"name": "a.csv", "size": 1204, "sha256": "1a2b3c4d5e6f" + "0" * 52},
        {"name": "b.csv", "size": 4096, "sha256": "ab" * 32},
        {"name": "c.csv", "size": 10, "sha256": "cd" * 32},
        {"name": "d.csv", "size": 10, "sha256": "ef" * 32},
        {"name": "same.csv", "size": 7, "sha256": "12" * 32},
    ]
    current = Manifest(
        (
            DataFile("a.csv", 1311, "9f8e7d6c5b4a" + "1" * 52),
            DataFile("d.csv", 10, "fe" * 32),
            DataFile("new.csv", 5, "34" * 32),
            DataFile("same.csv", 7, "12" * 32),
        ),
        (("c.csv", "not a regular file"), ("odd.csv", "a directory with a data file's name")),
    )
    assert manifest_diff(recorded, current) == [
        "changed: a.csv (sha256 1a2b3c4d5e6f recorded, 9f8e7d6c5b4a now; 1,204 -> 1,311 bytes)",
        "missing: b.csv (recorded sha256 abababababab, 4,096 bytes)",
        "refused now: c.csv (not a regular file)",
        "changed: d.csv (sha256 efefefefefef recorded, fefefefefefe now; same size, 10 bytes)",
    ]
    assert extra_files(recorded, current) == ["new.csv", "odd.csv"]


def test_a_manifest_recorded_as_json_matches_itself(tmp_path: Path) -> None:
    data = drop(tmp_path, a=b"x,1\n", b=b"y,2\n")
    m = build_manifest(data, "*.csv")
    recorded = json.loads(json.dumps(m.to_json()))
    assert recorded[0] == {"name": "a.csv", "size": 4, "sha256": hashlib.sha256(b"x,1\n").hexdigest()}
    assert manifest_diff(recorded, m) == [] and extra_files(recorded, m) == []
    assert extra_files(recorded[:1], m) == ["b.csv"] and manifest_diff(recorded[:1], m) == []
    with pytest.raises(ValueError, match="lacks a name, size or sha256"):
        manifest_diff([{"name": "a.csv"}], m)
