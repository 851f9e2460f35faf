"""The Jest suite of scripts/ on the host's Node (the validate stage runs it again in the image)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import ROOT, require_tool


def test_jest_suite_passes_on_the_host(tmp_path: Path) -> None:
    require_tool("npm")
    # package.json's cache directory (/tmp/jest-cache) suits the container's private /tmp; on a
    # shared host it may belong to another user.
    result = subprocess.run(
        ["npm", "test", "--silent", "--", "--ci", "--json", f"--cacheDirectory={tmp_path}"],
        cwd=ROOT / "scripts",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["numFailedTests"] == 0 and report["numPassedTests"] >= 100
