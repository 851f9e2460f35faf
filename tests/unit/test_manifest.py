from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.manifest import build_manifest


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
