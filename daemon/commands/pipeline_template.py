"""The pipeline template of `retraind init`: this repository's own pipeline files, listed once.

Standard library only: setup.py loads this file by its path to copy the same files into the wheel
(daemon/templates/pipeline/), so an installed retraind carries what a checkout reads in place.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# What the Containerfile COPYs and the stages run, relative to the checkout's root; a directory
# stands for every file under it except SKIPPED_DIRS, hidden names and SKIPPED_SUFFIXES.
PIPELINE = ("Containerfile", ".containerignore", "params.toml", "requirements.lock", "scripts")
SKIPPED_DIRS = frozenset({"node_modules", "__pycache__", "coverage"})
SKIPPED_SUFFIXES = (".pyc", ".pyo", ".log", ".tmp", "~")
# Where a wheel carries the pipeline files, under the daemon package (setup.py's build hook).
PACKAGED = "templates/pipeline"
# Files of init's own, daemon/templates/<name> -> <path in the new repository>.
OWN_FILES = {"README.md": "README.md", "gitignore": ".gitignore"}


def _kept(name: str) -> bool:
    return not name.startswith(".") and not name.endswith(SKIPPED_SUFFIXES)


def pipeline_files(root: Path) -> list[str]:
    """The template's files under root (a checkout, or a wheel's copy), sorted POSIX paths.

    FileNotFoundError names an entry of PIPELINE that root lacks.
    """
    found: list[str] = []
    for entry in PIPELINE:
        path = root / entry
        if path.is_file():
            found.append(entry)
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: the pipeline template has no {entry}")
        for top, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and _kept(d))
            here = Path(top).relative_to(root)
            found += [(here / f).as_posix() for f in files if _kept(f)]
    return sorted(found)


def git_mode(path: Path) -> int:
    """The mode git would record for a file: 0o755 when its owner may execute it, else 0o644 (the
    other bits of a checkout's files, or what pip makes of them, say nothing)."""
    return 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
