"""The Jest suite of scripts/ runs once per image, in its build: a data drop never reruns it, a change
to the suite always does, and a failing test still rejects the run by name. All through
`retraind run` as typed, against one repository and one state directory."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import committed_copy
from tests.integration.daemon_harness import commit_file, run_cli
from tests.integration.test_daemon import HEADER, ROWS

pytestmark = pytest.mark.podman

EXTRA_TEST = """'use strict';
test('one more test, added by the acceptance test ({token})', () => {
  expect(1 + 1).toBe(2);
});
"""
FAILING_TEST = """'use strict';
test('a test that fails on purpose', () => {
  expect(1 + 1).toBe(3);
});
"""


def run(repo: Path, data: Path, state: Path) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Exit code, the run_finished event and each stage's one-line summary."""
    flags = ["--repo", str(repo), "--data-dir", str(data), "--state-dir", str(state)]
    code, lines, output = run_cli("run", "--json", *flags)
    finished = next((e for e in lines if e.get("event") == "run_finished"), None)
    assert finished is not None, output[-6000:]
    summaries = {e["stage"]: e["summary"] for e in lines if e.get("event") == "stage_finished"}
    return code, finished, summaries


def suite_size(summary: str) -> int:
    found = re.match(r"(\d+) tests passed \(at build\)", summary.removeprefix("up to date: "))
    assert found, summary
    return int(found.group(1))


def test_a_data_drop_reads_the_suite_s_outcome_and_a_change_to_the_suite_reruns_it(
    tmp_path: Path, podman_ready: None
) -> None:
    repo, state, data = committed_copy(tmp_path / "repo"), tmp_path / "state", tmp_path / "data"
    data.mkdir()
    (data / "sample.csv").write_bytes((ROOT / "data/sample.csv").read_bytes())
    code, first, stages = run(repo, data, state)
    assert code == 0, first
    suite = suite_size(stages["validate"])
    assert suite > 100

    # A data drop: the image is the one built, and nothing runs the suite again.
    (data / "sample.csv").write_bytes(HEADER + b"".join(ROWS[::2]))
    code, second, stages = run(repo, data, state)
    assert code == 0, second["error"]
    assert stages["build"].startswith("up to date:") and second["image_id"] == first["image_id"]
    assert not stages["validate"].startswith("up to date:")  # the data checks did run, on the new drop
    assert suite_size(stages["validate"]) == suite
    validate_dir = state / "runs" / second["run_id"] / "validate"
    assert not (validate_dir / "jest.log").exists()  # no Jest container
    assert json.loads((validate_dir / "jest.json").read_text())["numPassedTests"] == suite

    # A new test in scripts/__tests__: a new image, whose build ran the suite with the new test in it.
    # Its name is new in every test run, or podman's layer cache would answer for an earlier run's.
    extra = EXTRA_TEST.replace("{token}", secrets.token_hex(8))
    commit_file(repo, "scripts/__tests__/extra.test.js", extra, "one more Jest test")
    code, third, stages = run(repo, data, state)
    assert code == 0, third
    assert third["image_id"] != first["image_id"]
    assert suite_size(stages["validate"]) == suite + 1
    build_log = (state / "runs" / third["run_id"] / "build" / "build.log").read_text()
    assert f"Tests:       {suite + 1} passed, {suite + 1} total" in build_log

    # A failing test: the image builds, the gate rejects the run naming the test, nothing trains.
    commit_file(repo, "scripts/__tests__/failing.test.js", FAILING_TEST, "a failing Jest test")
    code, fourth, stages = run(repo, data, state)
    assert code == 3, fourth
    assert fourth["failed_stage"] == "validate" and "a test that fails on purpose" in fourth["error"], fourth
    assert "train" not in stages and "preprocess" not in stages
