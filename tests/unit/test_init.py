"""`retraind init`'s template: which files it is, where an installation finds them, what it refuses."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from daemon.commands.init import check_target, find_template
from daemon.commands.pipeline_template import PACKAGED, PIPELINE, git_mode, pipeline_files
from daemon.core.errors import ConfigError
from tests.conftest import ROOT


def _pipeline(root: Path) -> Path:
    """A minimal pipeline tree, with what a developer's scripts/ also holds."""
    for rel in ("Containerfile", ".containerignore", "params.toml", "requirements.lock", "scripts/a.js"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    for junk in ("node_modules/x/index.js", "__pycache__/t.cpython-311.pyc", ".jest-cache/c", "run.log"):
        (root / "scripts" / junk).parent.mkdir(parents=True, exist_ok=True)
        (root / "scripts" / junk).write_text("junk")
    return root


def test_the_template_is_every_file_git_tracks_in_the_pipeline_entries() -> None:
    tracked = {
        e.path
        for e in pygit2.Repository(str(ROOT)).index
        if e.path in PIPELINE or e.path.startswith(tuple(f"{p}/" for p in PIPELINE))
    }
    found = pipeline_files(ROOT)
    assert tracked <= set(found), tracked - set(found)
    assert {"Containerfile", "requirements.lock", "scripts/train.py", "scripts/package-lock.json"} <= tracked
    assert not [f for f in found if "node_modules" in f or "__pycache__" in f]


def test_the_walk_skips_dependencies_caches_and_logs(tmp_path: Path) -> None:
    assert pipeline_files(_pipeline(tmp_path)) == [
        ".containerignore",
        "Containerfile",
        "params.toml",
        "requirements.lock",
        "scripts/a.js",
    ]
    (tmp_path / "requirements.lock").unlink()
    with pytest.raises(FileNotFoundError, match=r"requirements\.lock"):
        pipeline_files(tmp_path)


def test_git_mode_is_the_owner_s_execute_bit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("")
    path.chmod(0o645)  # others may execute it: git would record 644, and so does init
    assert git_mode(path) == 0o644
    path.chmod(0o744)
    assert git_mode(path) == 0o755


def test_a_checkout_reads_its_own_files_and_a_wheel_its_packaged_copy(tmp_path: Path) -> None:
    checkout = _pipeline(tmp_path / "checkout")
    (checkout / "pyproject.toml").write_text("")
    (checkout / "daemon").mkdir()
    found = find_template(checkout / "daemon")
    assert (found.root, found.source) == (checkout, "checkout")

    site = tmp_path / "site-packages"  # no pyproject.toml next to the package
    _pipeline(site / "daemon" / PACKAGED)
    found = find_template(site / "daemon")
    assert (found.root, found.source, found.files[-1]) == (
        site / "daemon" / PACKAGED,
        "package",
        "scripts/a.js",
    )

    (tmp_path / "bare" / "daemon").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no pipeline template"):
        find_template(tmp_path / "bare" / "daemon")


def test_only_a_new_or_empty_directory_is_accepted(tmp_path: Path) -> None:
    check_target(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_target(tmp_path / "empty")
    (tmp_path / "empty" / ".git").mkdir()
    with pytest.raises(ConfigError, match=r"not empty \(1 entry: \.git\)"):
        check_target(tmp_path / "empty")
