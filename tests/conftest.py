"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> None:
    """Skip on a laptop without the tool; under CI=true a missing tool is a failure."""
    if shutil.which(name) is None:
        if IN_CI:
            pytest.fail(f"{name} is required under CI=true but is not installed")
        pytest.skip(f"{name} not installed")


@pytest.fixture
def root() -> Path:
    return ROOT
