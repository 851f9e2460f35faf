"""The promotion gate's decision, the history entries and the rollback target: pure, no MLflow."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from daemon.core.config import load_settings
from daemon.core.errors import ConfigError
from daemon.core.promotion import (
    Decision,
    HistoryEntry,
    VersionRow,
    decide,
    history_key,
    models_json,
    parse_history,
    render_models,
    rollback_target,
)


def test_the_first_version_above_the_floor_is_promoted() -> None:
    assert decide(0.31, None, 0.0, 0.0) == Decision(True, "no champion yet")


def test_a_version_not_above_the_floor_is_never_promoted() -> None:
    assert decide(0.31, None, 0.0, 0.5) == Decision(False, "weighted F1 0.3100 is not above the floor 0.5000")
    assert not decide(0.5, None, 0.0, 0.5).promote  # "above" is strict
    assert not decide(0.31, 0.2, 0.0, 0.5).promote  # even against a worse champion


def test_better_or_equal_replaces_the_champion() -> None:
    assert decide(0.741, 0.7403, 0.0, 0.0, "3") == Decision(
        True, "weighted F1 0.7410 >= champion v3's 0.7403 - tolerance 0.0000"
    )
    assert decide(0.7403, 0.7403, 0.0, 0.0, "3").promote


def test_worse_than_the_champion_stays_challenger() -> None:
    assert decide(0.7012, 0.7403, 0.0, 0.0, "3") == Decision(
        False, "weighted F1 0.7012 < champion v3's 0.7403 - tolerance 0.0000"
    )


def test_tolerance_lets_a_slightly_worse_candidate_win() -> None:
    assert decide(0.735, 0.74, 0.01, 0.0, "2").promote
    assert not decide(0.729, 0.74, 0.01, 0.0, "2").promote


def test_missing_figures_are_explicit() -> None:
    assert decide(math.nan, 0.7, 0.0, 0.0, "1") == Decision(False, "no weighted F1 recorded for this version")
    no_f1 = Decision(True, "champion v4 has no weighted F1 to compare with")
    assert decide(0.6, None, 0.0, 0.0, "4") == no_f1


def entry(version: str, previous: str | None, action: str = "gate") -> HistoryEntry:
    return HistoryEntry(version, previous, action, "2026-01-02T03:04:05+00:00", "run-1", "why", "abc")


def test_history_entry_round_trips_through_json() -> None:
    e = HistoryEntry("3", "2", "promote", "2026-01-02T03:04:05+00:00", "ada@lab", "hotfix", "f00")
    assert HistoryEntry.from_json(e.to_json()) == e
    assert HistoryEntry.from_json(entry("1", None).to_json()).previous is None


@pytest.mark.parametrize("text", ["[]", "{}", "not json", '{"version": "1"}'])
def test_history_entry_rejects_what_it_did_not_write(text: str) -> None:
    with pytest.raises(ValueError):
        HistoryEntry.from_json(text)


def test_history_entry_rejects_an_unknown_action() -> None:
    with pytest.raises(ValueError, match="action"):
        entry("1", None, "kept-challenger")


def test_parse_history_orders_by_sequence_and_reports_bad_tags() -> None:
    tags = {
        history_key(10, "aa"): entry("10", "9").to_json(),
        history_key(2, "bb"): entry("2", "1").to_json(),
        history_key(3, "cc"): "garbage",
        "retraind.other": "ignored",
    }
    entries, bad = parse_history(tags)
    assert [e.version for e in entries] == ["2", "10"]
    assert bad == [history_key(3, "cc")]


def test_rollback_target_is_the_champion_before_the_current_one() -> None:
    history = [entry("1", None), entry("2", "1"), entry("3", "2")]
    assert rollback_target(history, "3") == "2"
    assert rollback_target(history[:1], "1") is None
    assert rollback_target([], "1") is None


def test_rolling_back_twice_walks_back_instead_of_toggling() -> None:
    history = [entry("1", None), entry("2", "1"), entry("3", "2"), entry("2", "3", "rollback")]
    assert rollback_target(history, "2") == "1"
    assert rollback_target([*history, entry("1", "2", "rollback")], "1") is None


def test_a_champion_set_by_hand_counts_as_the_newest() -> None:
    history = [entry("1", None), entry("2", "1")]
    assert rollback_target(history, "5") == "2"
    assert rollback_target([*history, entry("1", "2", "promote")], "1") == "2"


def test_render_models_shows_versions_and_history_newest_first() -> None:
    at = "2026-01-02T04:00:00+00:00"
    rows = [
        VersionRow("2", ("challenger",), "None", 0.5, "b" * 32, "run-2", at, "worse"),
        VersionRow("1", ("champion",), "Production", 0.7, "a" * 32, "run-1", at, ""),
    ]
    history = [entry("1", None), HistoryEntry("1", None, "promote", "2026-01-03T00:00:00+00:00", "p@h", "x")]
    text = render_models("m", rows, history).splitlines()
    assert text[1].split()[:4] == ["version", "aliases", "stage", "F1"]
    assert text[2].split()[:4] == ["v2", "challenger", "None", "0.5000"]
    assert text[3].split()[:4] == ["v1", "champion", "Production", "0.7000"]
    assert "promote" in text[6] and "gate" in text[7]
    data = models_json("m", rows, history)
    assert [h["action"] for h in data["history"]] == ["promote", "gate"]
    assert data["versions"][0]["aliases"] == ["challenger"]
    assert render_models("m", [], []) == "m: no registered versions yet"


def test_settings_carry_the_gate_and_refuse_figures_outside_0_to_1(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "RETRAIND_PROMOTION_FLOOR": "0.6", "RETRAIND_MIRROR_STAGES": "false"}
    s = load_settings({"promotion_tolerance": "0.01"}, environ=environ)
    assert (s.promotion_tolerance, s.promotion_floor, s.mirror_stages) == (0.01, 0.6, False)
    assert load_settings(environ={"HOME": str(tmp_path)}).promotion_floor == 0.0
    with pytest.raises(ConfigError, match="promotion_floor"):
        load_settings({"promotion_floor": 1.5}, environ={"HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="promotion_tolerance"):
        load_settings({"promotion_tolerance": -0.1}, environ={"HOME": str(tmp_path)})
