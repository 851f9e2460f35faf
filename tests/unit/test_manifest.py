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
