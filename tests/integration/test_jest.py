"""The Jest suite of scripts/ on the host's Node (the validate stage runs it again in the image)."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import ROOT, require_tool


def test_jest_suite_passes_on_the_host() -> None:
    require_tool("npm")
    result = subprocess.run(
        ["npm", "test", "--silent", "--", "--ci", "--json"],
        cwd=ROOT / "scripts",
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["numFailedTests"] == 0 and report["numPassedTests"] >= 100
