"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

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


def train_module() -> ModuleType:
    """scripts/train.py as a module (it is a script in the image, not a package), loaded once."""
    if "retraind_train" in sys.modules:
        return sys.modules["retraind_train"]
    spec = importlib.util.spec_from_file_location("retraind_train", ROOT / "scripts/train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
