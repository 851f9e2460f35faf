"""The code style gates run with the test suite: ruff, mypy --strict, and the import-linter contracts
of pyproject.toml (the layers of daemon/ and handlers/, one direction of dependency)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PATHS = [
    "daemon",
    "handlers",
    "tests",
    "bench",
    "tools",
    "scripts/train.py",
    "scripts/textclean.py",
    "scripts/image_versions.py",
]


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *PATHS], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_mypy_strict_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_the_layers_import_only_downwards() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout  # both contracts were read and checked
