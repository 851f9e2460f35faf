"""The promotion gate, promote and rollback against a real embedded MLflow, with a really trained model."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from daemon.adapters.registry import CHALLENGER, CHAMPION, MlflowRegistry
from daemon.adapters.tracking import MlflowTracker
from daemon.cli import main
from daemon.core.errors import EXIT_OK, EXIT_USAGE, RegistryError
from daemon.core.promotion import GatePolicy
from daemon.core.records import Registration
from tests.integration.test_tracking import record, trained  # noqa: F401  (trained is a fixture)

MODEL = "test-sentiment"


def send(tracker: MlflowTracker, model_out: Path, run_id: str, f1: float) -> Registration:
    """One pipeline run of the trained model, with the F1 the gate should see."""
    base = record(model_out, run_id)
    run = dataclasses.replace(
        base,
        metrics={**base.metrics, "f1_score_weighted": f1},
        tags={**base.tags, "retraind.run_id": run_id},
    )
    return tracker.record(run, MODEL)


def aliases(uri: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    return {k: str(v) for k, v in MlflowClient(uri, uri).get_registered_model(MODEL).aliases.items()}


def stages(uri: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    found = MlflowClient(uri, uri).search_model_versions(f"name = '{MODEL}'")
    return {str(mv.version): str(mv.current_stage) for mv in found}


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/mlflow.db"


@pytest.fixture
def three_versions(trained: Path, tmp_path: Path, uri: str) -> list[Registration]:  # noqa: F811
    """v1 (0.70) champion by the gate, v2 (0.72) replaces it, v3 (0.60) stays challenger."""
    tracker = MlflowTracker(uri, tmp_path / "artifacts", policy=GatePolicy())
    return [send(tracker, trained, f"run-{n}", f1) for n, f1 in ((1, 0.70), (2, 0.72), (3, 0.60))]


def test_the_gate_crowns_better_versions_and_keeps_worse_ones_as_challenger(
    three_versions: list[Registration], uri: str
) -> None:
    first, second, third = three_versions
    assert (first.model_version, first.champion, first.promoted_reason) == ("1", True, "no champion yet")
    assert (second.model_version, second.champion) == ("2", True)
    assert second.promoted_reason == "weighted F1 0.7200 >= champion v1's 0.7000 - tolerance 0.0000"
    assert (third.model_version, third.champion) == ("3", False)
    assert third.promoted_reason == "weighted F1 0.6000 < champion v2's 0.7200 - tolerance 0.0000"

    assert aliases(uri) == {CHAMPION: "2", CHALLENGER: "3"}
    assert stages(uri) == {"1": "Archived", "2": "Production", "3": "None"}
    rows = {r.version: r for r in MlflowRegistry(uri).versions(MODEL)}
    assert rows["3"].promotion_reason == third.promoted_reason  # the reason tag on the version
    assert (rows["2"].f1, rows["2"].retraind_run_id, rows["2"].aliases) == (0.72, "run-2", (CHAMPION,))
    history = MlflowRegistry(uri).history(MODEL)
    assert [(h.version, h.previous, h.action, h.by) for h in history] == [
        ("1", None, "gate", "run-1"),
        ("2", "1", "gate", "run-2"),
    ]
    assert history[1].mlflow_run_id == second.run_id


def test_sending_a_run_again_reports_its_registration_without_gating_twice(
    three_versions: list[Registration],
    trained: Path,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    uri: str,
) -> None:
    tracker = MlflowTracker(uri, tmp_path / "artifacts", policy=GatePolicy())
    assert send(tracker, trained, "run-3", 0.60) == three_versions[2]
    again = send(tracker, trained, "run-2", 0.72)
    assert (again.model_version, again.champion) == ("2", True)
    assert len(MlflowRegistry(uri).history(MODEL)) == 2


def test_a_version_under_the_floor_is_registered_but_never_champion(
    trained: Path,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    uri: str,
) -> None:
    tracker = MlflowTracker(uri, tmp_path / "artifacts", policy=GatePolicy(floor=0.9))
    reg = send(tracker, trained, "run-1", 0.70)
    assert (reg.model_version, reg.champion) == ("1", False)
    assert reg.promoted_reason == "weighted F1 0.7000 is not above the floor 0.9000"
    assert aliases(uri) == {CHALLENGER: "1"}
    assert MlflowRegistry(uri).history(MODEL) == []


def test_promote_and_rollback_move_the_alias_and_the_stages_and_are_in_the_history(
    three_versions: list[Registration], uri: str
) -> None:
    registry = MlflowRegistry(uri)
    assert registry.champion_f1(MODEL) == 0.72
    entry = registry.promote(MODEL, "3", "ada@lab", "v2 mislabels sarcasm")
    assert registry.champion_f1(MODEL) == 0.60  # what the daemon's champion gauge then shows
    assert (entry.version, entry.previous, entry.action) == ("3", "2", "promote")
    assert aliases(uri) == {CHAMPION: "3"}  # the challenger alias went with the promotion
    assert stages(uri) == {"1": "Archived", "2": "Archived", "3": "Production"}
    assert registry.versions(MODEL)[0].promotion_reason == "promote by ada@lab: v2 mislabels sarcasm"

    assert registry.rollback(MODEL, "bob@lab", "v3 is worse in production") == "2"
    assert registry.rollback(MODEL, "bob@lab", "v2 too") == "1"  # walks back, does not toggle
    assert aliases(uri) == {CHAMPION: "1"}
    assert stages(uri) == {"1": "Production", "2": "Archived", "3": "Archived"}
    last = registry.history(MODEL)[-3:]
    assert [(h.version, h.previous, h.action, h.by, h.reason) for h in last] == [
        ("3", "2", "promote", "ada@lab", "v2 mislabels sarcasm"),
        ("2", "3", "rollback", "bob@lab", "v3 is worse in production"),
        ("1", "2", "rollback", "bob@lab", "v2 too"),
    ]
    with pytest.raises(RegistryError, match="no champion before v1"):
        registry.rollback(MODEL, "bob@lab", "once more")


def test_refusals_name_what_exists(trained: Path, tmp_path: Path, uri: str) -> None:  # noqa: F811
    registry = MlflowRegistry(uri)
    assert registry.champion_f1(MODEL) is None
    with pytest.raises(RegistryError, match="no registered model"):
        registry.promote(MODEL, "1", "ada@lab", "x")
    send(MlflowTracker(uri, tmp_path / "artifacts", policy=GatePolicy()), trained, "run-1", 0.7)
    with pytest.raises(RegistryError, match=r"no champion before v1 to roll back to"):
        registry.rollback(MODEL, "ada@lab", "x")
    with pytest.raises(RegistryError, match=r"has no version '7'; it has: v1$"):
        registry.promote(MODEL, "7", "ada@lab", "x")
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote(MODEL, "1", "ada@lab", "x")
    assert RegistryError("x").exit_code == EXIT_USAGE


def test_without_stage_mirroring_only_the_aliases_move(
    trained: Path,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    uri: str,
) -> None:
    tracker = MlflowTracker(uri, tmp_path / "artifacts", policy=GatePolicy(mirror_stages=False))
    send(tracker, trained, "run-1", 0.7)
    send(tracker, trained, "run-2", 0.8)
    assert aliases(uri) == {CHAMPION: "2"}
    assert stages(uri) == {"1": "None", "2": "None"}


def cli(tmp_path: Path, uri: str, *args: str) -> int:
    flags = ["--tracking-uri", uri, "--state-dir", str(tmp_path / "state"), "--model-name", MODEL]
    return main([*args, *flags])


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user configuration file or RETRAIND_* variable may leak into the CLI's settings."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "RETRAIND_CONFIG", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)


def test_cli_models_promote_rollback(
    three_versions: list[Registration],
    isolated_env: None,
    tmp_path: Path,
    uri: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def json_out(*args: str) -> Any:
        capsys.readouterr()
        assert cli(tmp_path, uri, *args) == EXIT_OK
        return json.loads(capsys.readouterr().out)

    def changed(*args: str) -> dict[str, Any]:
        capsys.readouterr()
        assert cli(tmp_path, uri, *args) == EXIT_OK
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        [event] = [e for e in lines if e["event"] == "champion_changed"]
        return dict(event)

    shown = json_out("models")  # stdout is not a terminal under pytest: JSON, as `status` does
    assert [(v["version"], v["aliases"]) for v in shown["versions"]] == [
        ("3", [CHALLENGER]),
        ("2", [CHAMPION]),
        ("1", []),
    ]
    assert [h["version"] for h in shown["history"]] == ["2", "1"]  # newest first

    assert changed("promote", "v3", "--reason", "sarcasm")["version"] == "3"
    assert changed("rollback", "--reason", "worse")["version"] == "2"
    newest = json_out("models")["history"][0]
    assert (newest["action"], newest["reason"], newest["previous"]) == ("rollback", "worse", "3")
    assert "@" in newest["by"]  # user@host

    assert cli(tmp_path, uri, "promote", "9", "--reason", "x") == EXIT_USAGE
    with pytest.raises(SystemExit) as usage:
        cli(tmp_path, uri, "promote", "3")  # --reason is required
    assert usage.value.code == EXIT_USAGE
