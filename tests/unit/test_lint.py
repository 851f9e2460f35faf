"""The code style gates run with the test suite: ruff and mypy --strict."""

from __future__ import annotations

import subprocess
import sys

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
