"""The reproduce verdict from hand-made outcomes: identical, equivalent, different (never bare)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from daemon.adapters.gitinfo import Pygit2Reader
from daemon.core.errors import TrackingError
from daemon.core.jobs import CmdResult
from daemon.core.modeldiff import Difference, ModelDiff, Tolerance
from daemon.core.outcome import PipelineOutcome
from daemon.core.stages import StageResult
from daemon.engine.reproduction import RecordedRun, compare, model_parameters
from tests.unit.test_modeldiff import nudged, save_model_dir, serving_model

METRICS = {"f1_score_weighted": 0.7403, "accuracy": 0.75}
GOOD = "coef_ of class positive, feature 'good'"


def recorded(model: str = "a" * 64, predictions: str = "c" * 64) -> RecordedRun:
    tags = {
        "retraind.model.sha256": model,
        "retraind.predictions.sha256": predictions,
        "retraind.image.id": "i" * 64,
    }
    return RecordedRun("0" * 32, "20261201t090000-abcdef", {}, METRICS, tags, [])


def rebuilt(
    model: str = "a" * 64,
    predictions: str = "c" * 64,
    metrics: dict[str, float] | None = None,
    train_dir: str = "",
) -> PipelineOutcome:
    identity = {"model_sha256": model, "predictions_sha256": predictions}
    results = {
        "build": StageResult("build", "", {"image_id": "i" * 64}),
        "train": StageResult(
            "train", "", {"identity": identity, "metrics": metrics or METRICS, "dir": train_dir}
        ),
    }
    return PipelineOutcome("reproduce-1", results, {}, 0.0)


def within(by: float = 3e-13) -> ModelDiff:
    return ModelDiff(
        Tolerance(), (), 1200, 0, Difference(GOOD, 0.5, 0.5 + by), Difference(GOOD, 0.5, 0.5 + by)
    )


def outside() -> ModelDiff:
    worst = Difference(GOOD, 0.5, 0.501)
    return ModelDiff(Tolerance(), (), 1200, 1, worst, worst, worst)


def test_equal_model_bytes_are_identical() -> None:
    verdict = compare(recorded(), rebuilt())
    assert (verdict.kind, verdict.identical, verdict.reproduced, verdict.differences) == (
        "identical",
        True,
        True,
        (),
    )
    assert verdict.compared[0] == "model sha256 " + "a" * 64 and verdict.parameters is None


def test_other_bytes_with_the_same_predictions_metrics_and_close_parameters_are_equivalent() -> None:
    verdict = compare(recorded(), rebuilt(model="b" * 64), within())
    assert (verdict.kind, verdict.identical, verdict.reproduced) == ("equivalent", False, True)
    assert verdict.differences == (f"model sha256: recorded {'a' * 16}, now {'b' * 16} (the bytes differ)",)
    named = [line for line in verdict.compared if line.startswith("parameters:")]
    assert len(named) == 1 and GOOD in named[0] and "within tolerance" in named[0]
    assert "predictions sha256 " + "c" * 64 in verdict.compared


def test_a_parameter_outside_tolerance_is_different_with_its_largest_difference() -> None:
    verdict = compare(recorded(), rebuilt(model="b" * 64), outside())
    assert (verdict.kind, verdict.reproduced) == ("different", False)
    assert verdict.differences[1].startswith("parameters: 1 of 1200 parameters outside tolerance")
    assert GOOD in verdict.differences[1] and "difference 0.001" in verdict.differences[1]


def test_a_flipped_prediction_is_different_even_with_close_parameters() -> None:
    verdict = compare(recorded(), rebuilt(model="b" * 64, predictions="d" * 64), within())
    assert verdict.kind == "different"
    assert any(d.startswith("predictions sha256: recorded cccc") for d in verdict.differences)
    assert any(line.startswith("parameters:") for line in verdict.compared)  # still said, as found


def test_a_changed_metric_is_different_and_named_even_with_equal_bytes() -> None:
    verdict = compare(recorded(), rebuilt(metrics={**METRICS, "accuracy": 0.76}))
    assert verdict.kind == "different" and not verdict.identical
    assert [d.split(":")[0] for d in verdict.differences] == ["metric accuracy"]
    assert not any(line.startswith("all ") for line in verdict.compared)


def test_other_bytes_whose_parameters_were_not_compared_are_different_and_say_so() -> None:
    verdict = compare(recorded(), rebuilt(model="b" * 64), None)
    assert verdict.kind == "different" and verdict.differences[-1].startswith("parameters: not compared")
    unreadable = ModelDiff(Tolerance(), ("cannot read the recorded model (TrackingError: gone)",))
    assert compare(recorded(), rebuilt(model="b" * 64), unreadable).differences[-1] == (
        "parameters: cannot read the recorded model (TrackingError: gone)"
    )


@dataclass
class FakeModels:
    """A ModelSource: the recorded model directory, written where the reproduction asks."""

    model: Any = None
    asked: list[str] = field(default_factory=list)

    def download_model(self, mlflow_run_id: str, dest: Path) -> Path:
        self.asked.append(mlflow_run_id)
        if self.model is None:
            raise TrackingError(f"no model artifact in run {mlflow_run_id}")
        return save_model_dir(self.model, dest / "model")


def test_the_recorded_model_is_downloaded_only_when_the_bytes_differ(tmp_path: Path) -> None:
    models = FakeModels(serving_model())
    assert model_parameters(recorded(), rebuilt(), models, tmp_path, 1e-7) is None
    assert models.asked == []


def test_the_recorded_and_the_rebuilt_model_on_disk_are_compared_by_parameters(tmp_path: Path) -> None:
    model = serving_model()
    train_dir = tmp_path / "runs" / "reproduce-1" / "train"
    save_model_dir(nudged(model, "positive", "good", 1e-12), train_dir / "model")
    models = FakeModels(copy.deepcopy(model))
    diff = model_parameters(recorded(), rebuilt("b" * 64, train_dir=str(train_dir)), models, tmp_path, 1e-7)
    assert models.asked == ["0" * 32]
    assert diff is not None and diff.within and diff.largest_absolute is not None
    assert diff.largest_absolute.where == GOOD and str(diff.tolerance) == "atol 1e-09, rtol 1e-07"
    strict = model_parameters(
        recorded(), rebuilt("b" * 64, train_dir=str(train_dir)), models, tmp_path / "2", 1e-20
    )
    assert strict is not None and not strict.within  # the setting is what decides


def test_a_recorded_model_that_cannot_be_downloaded_is_a_named_problem(tmp_path: Path) -> None:
    train_dir = tmp_path / "train"
    save_model_dir(serving_model(), train_dir / "model")
    diff = model_parameters(
        recorded(), rebuilt("b" * 64, train_dir=str(train_dir)), FakeModels(), tmp_path, 1e-7
    )
    assert diff is not None and not diff.within
    assert diff.problems == (
        f"cannot read the recorded model (TrackingError: no model artifact in run {'0' * 32})",
    )


def committed_repo(root: Path) -> str:
    """A git repository with the build inputs reproduce checks; its commit."""
    import pygit2

    git = pygit2.init_repository(str(root))
    for name in ("Containerfile", "requirements.lock", "scripts/package-lock.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
        git.index.add(name)
    git.index.write()
    sig = pygit2.Signature("retraind tests", "tests@localhost")
    return str(git.create_commit("HEAD", sig, sig, "one", git.index.write_tree(), []))


def test_reproduce_run_compares_the_rebuilt_model_before_removing_its_directory(tmp_path: Path) -> None:
    from daemon.adapters.snapshot import object_store
    from daemon.core.config import load_settings
    from daemon.core.stages import Ports
    from daemon.engine.reproduction import reproduce_run
    from tests.fakes import FakeTracker, RecordingReporter
    from tests.unit.test_pipeline import containers

    settings = load_settings(
        {"repo": tmp_path / "repo", "data_dir": tmp_path / "data", "state_dir": tmp_path / "state"},
        environ={"HOME": str(tmp_path)},
    )
    commit = committed_repo(settings.repo)
    data, sha = b"sentiment,text\npositive,fine\n", "d" * 64
    store = object_store(settings)
    store.path(sha).parent.mkdir(parents=True)
    store.path(sha).write_bytes(data)
    model = serving_model()

    def train(job: Any) -> Any:  # the rebuilt model: other bytes, the same predictions and metrics
        out = next(m.host for m in job.mounts if m.container == "/out")
        save_model_dir(nudged(model, "positive", "good", 1e-12), out / "model")
        (out / "model" / "MLmodel").write_text("flavors: {}\n")
        for name, content in (
            ("metrics", METRICS),
            ("identity", {"model_sha256": "b" * 64, "predictions_sha256": "c" * 64}),
        ):
            (out / "artifacts").mkdir(exist_ok=True)
            (out / "artifacts" / f"{name}.json").write_text(json.dumps(content))
        return CmdResult(tuple(job.argv), 0, "", "")

    run = recorded()
    run = replace(
        run,
        tags={**run.tags, "retraind.git.commit": commit, "retraind.outcome": "success"},
        params={"seed": "42", "test_size": "0.2", "C": "1.0"},
        manifest=[{"name": "drop.csv", "size": len(data), "sha256": sha}],
    )
    models = FakeModels(model)
    verdict, _ = reproduce_run(
        settings,
        run,
        lambda s: pytest.fail("the snapshot is in the store"),
        Ports(containers(train=train), FakeTracker()),
        RecordingReporter(),
        "reproduce-1",
        models,
        Pygit2Reader(),
    )
    assert models.asked == ["0" * 32]
    assert verdict.kind == "equivalent", verdict
    assert verdict.parameters is not None and verdict.parameters.largest_absolute is not None
    assert verdict.parameters.largest_absolute.where == GOOD
    assert not (settings.state_dir / "reproduce" / "reproduce-1").exists()  # and then removed


def test_the_json_line_keeps_identical_and_adds_the_verdict_and_the_parameters() -> None:
    from daemon.commands.reproduce import render_verdict, verdict_fields

    run = replace(recorded(), tags={**recorded().tags, "retraind.git.commit": "e" * 40})
    fields = verdict_fields(run, compare(run, rebuilt(model="b" * 64), within()))
    assert json.loads(json.dumps(fields))["verdict"] == "equivalent" and fields["identical"] is False
    assert fields["parameters"]["within_tolerance"] is True
    assert fields["parameters"]["largest_absolute"]["where"] == GOOD
    shown = render_verdict(fields).splitlines()
    assert shown[0] == f"equivalent: run {run.retraind_run_id} rebuilt from commit {'e' * 12}"
    assert any(line.startswith("  parameters: all 1200 parameters within tolerance") for line in shown)
    different = verdict_fields(run, compare(run, rebuilt(model="b" * 64), outside()))
    assert (different["verdict"], different["identical"]) == ("different", False)
    assert render_verdict(different).startswith("different: ")
    same = verdict_fields(run, compare(run, rebuilt()))
    assert (same["verdict"], same["identical"], same["parameters"]) == ("identical", True, None)


def test_another_image_is_explained_package_by_package_from_the_environment_manifests() -> None:
    then = {
        "python": "3.11.2",
        "node": "18.20.4",
        "debian": [{"package": "libc6", "version": "2.36-9+deb12u7"}],
    }
    now = {**then, "debian": [{"package": "libc6", "version": "2.36-9+deb12u9"}]}
    run = replace(recorded(), environment=then)
    other = rebuilt()
    other.results["build"] = StageResult("build", "", {"image_id": "j" * 64, "environment": now})
    verdict = compare(run, other)
    assert verdict.kind == "identical"  # the model is what is judged; the image is explained
    assert verdict.notes[0].startswith(
        "image jjjjjjjjjjjj differs from the recorded iiiiiiiiiiii; inside it:"
    )
    assert verdict.notes[1] == "  Debian libc6 2.36-9+deb12u7 -> 2.36-9+deb12u9"
    same = rebuilt()
    same.results["build"] = StageResult("build", "", {"image_id": "j" * 64, "environment": then})
    assert "same packages and versions" in compare(run, same).notes[0]
    assert "no environment manifest" in compare(recorded(), other).notes[0]
