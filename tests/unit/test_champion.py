"""ChampionProbe: the champion's F1 from a child process, its answers and failures mapped to ours."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.adapters.champion import ChampionProbe
from daemon.core.errors import CommandTimeoutError, TrackingError
from daemon.core.jobs import CmdResult


def answering(returncode: int, stdout: str, stderr: str = "") -> Any:
    seen: list[tuple[str, ...]] = []

    def run(argv: tuple[str, ...], *, timeout: float) -> CmdResult:
        seen.append(argv)
        return CmdResult(argv, returncode, stdout, stderr)

    run.seen = seen  # type: ignore[attr-defined]
    return run


def test_the_child_is_asked_for_the_model_and_its_f1_is_the_answer() -> None:
    run = answering(0, 'some library chatter\n{"f1": 0.7403}\n')
    probe = ChampionProbe("sqlite:///m.db", python="/venv/bin/python", run=run)
    assert probe.champion_f1("nlp") == 0.7403
    assert run.seen == [("/venv/bin/python", "-m", "daemon.adapters.champion", "sqlite:///m.db", "nlp")]


def test_no_champion_is_none() -> None:
    assert ChampionProbe("u", run=answering(0, '{"f1": null}\n')).champion_f1("nlp") is None


@pytest.mark.parametrize(
    ("returncode", "stdout", "stderr", "match"),
    [
        (5, "", "MLflow registry at http://x failed: connection refused", "exited 5: .*connection refused"),
        (0, "", "", "answered ''"),
        (0, "not json\n", "", "answered 'not json"),
    ],
)
def test_a_child_that_fails_or_mumbles_is_a_tracking_error(
    returncode: int, stdout: str, stderr: str, match: str
) -> None:
    probe = ChampionProbe("u", run=answering(returncode, stdout, stderr))
    with pytest.raises(TrackingError, match=match):
        probe.champion_f1("nlp")


def test_a_child_past_its_timeout_is_a_tracking_error() -> None:
    def slow(argv: tuple[str, ...], *, timeout: float) -> CmdResult:
        raise CommandTimeoutError(argv[0], timeout)

    with pytest.raises(TrackingError, match="champion probe failed"):
        ChampionProbe("u", timeout_s=3, run=slow).champion_f1("nlp")
