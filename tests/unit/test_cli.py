"""`retraind run` refuses bad set-ups with exit 78 and one structured line saying what to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon import cli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    code = cli.main(["run", "--json", *argv])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return code, lines[-1]


def test_not_a_git_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, line = run(capsys, "--repo", str(tmp_path), "--state-dir", str(tmp_path / "s"))
    assert code == 78
    assert line["event"] == "run_refused" and "not inside a git repository" in str(line["error"])


def test_bad_setting_names_itself(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("test_size = 2\n")
    code, line = run(capsys, "--config", str(cfg))
    assert code == 78 and "test_size" in str(line["error"])


def test_usage_error_is_2() -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["run", "--trigger", "cosmic"])
    assert info.value.code == 2
