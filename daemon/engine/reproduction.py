"""`retraind reproduce RUN`: rebuild a registered run's model from its recorded provenance alone.

Export the run's commit, take the data from the run's own snapshot in the object store (or, if
retention collected it, from the data directory after checking it against the run's manifest),
rebuild the image, retrain sealed with the recorded params, and compare model hash, prediction hash
and every metric with what MLflow recorded. When the model bytes differ, the recorded model is
downloaded and both are compared by their parameters (daemon/core/modeldiff.py): the verdict is
`identical` (bytes equal), `equivalent` (predictions and metrics equal, parameters within
tolerance) or `different` (with what differs).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from daemon.adapters.manifest import manifest_diff
from daemon.adapters.registry import mlflow_boundary, mlflow_client
from daemon.adapters.snapshot import SNAPSHOT, object_store
from daemon.adapters.store import ObjectStore
from daemon.core.config import Settings
from daemon.core.environment import environment_diff
from daemon.core.errors import ReproduceRefusedError, TrackingError
from daemon.core.inputs import DataFile, GitReader, Manifest
from daemon.core.modeldiff import ModelDiff, Tolerance, compare_models
from daemon.core.modelfile import UNREADABLE, load_model
from daemon.core.outcome import PipelineOutcome, Recorder
from daemon.core.params import params_from_mlflow
from daemon.core.records import (
    COMMIT_TAG,
    DIRTY_TAG,
    IDENTITY_TAGS,
    IMAGE_TAG,
    OUTCOME_TAG,
    RUN_ID_TAG,
    Registration,
    RunRecord,
)
from daemon.core.stages import BUILD, PREPROCESS, TRAIN, Ports, RunContext
from daemon.engine.pipeline import run_stages
from handlers.build import input_hashes
from handlers.registry import STAGES

REBUILT = (BUILD, PREPROCESS, TRAIN)  # the gate already passed once; registering again is not wanted


@dataclass(frozen=True)
class RecordedRun:
    """What MLflow holds about one pipeline run."""

    mlflow_run_id: str
    retraind_run_id: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]
    tags: Mapping[str, str]
    manifest: Sequence[Mapping[str, Any]] | None  # provenance/manifest.json's files, None if absent
    environment: Mapping[str, Any] | None = None  # provenance/environment.json's image part, if logged


Kind = Literal["identical", "equivalent", "different"]


@dataclass(frozen=True)
class Verdict:
    """identical: model bytes equal; equivalent: predictions, metrics equal, parameters within tolerance."""

    kind: Kind
    differences: tuple[str, ...] = ()  # for `equivalent`, only the model bytes
    notes: tuple[str, ...] = field(default=())
    compared: tuple[str, ...] = ()  # what was found equal (or within tolerance), for the reader
    parameters: ModelDiff | None = None  # compared only when the model bytes differ

    @property
    def identical(self) -> bool:
        return self.kind == "identical"

    @property
    def reproduced(self) -> bool:
        """Exit 0: the same model, or one that predicts and scores the same."""
        return self.kind != "different"


class RunSource(Protocol):
    def recorded_run(self, ref: str) -> RecordedRun: ...


class ModelSource(Protocol):
    def download_model(self, mlflow_run_id: str, dest: Path) -> Path:
        """The run's `model` artifact (an MLflow model directory) under dest; TrackingError if absent."""
        ...


def provenance_problems(run: RecordedRun) -> list[str]:
    """Why the record alone cannot rebuild the run (empty: it can)."""
    problems = []
    if COMMIT_TAG not in run.tags:
        problems.append("it records no git commit (retraind.git.commit)")
    if run.tags.get(DIRTY_TAG) == "true":
        problems.append("it was trained from a worktree with uncommitted changes: its code is in no commit")
    if run.tags.get(OUTCOME_TAG) != "success":
        problems.append(f"it did not train a model (outcome {run.tags.get('retraind.outcome', '?')})")
    missing = [tag for tag in IDENTITY_TAGS.values() if tag not in run.tags]
    if missing:
        problems.append(f"it records no {', '.join(missing)} (registered before model hashes existed)")
    if run.manifest is None:
        problems.append("it has no provenance/manifest.json artifact (the data file by file)")
    return problems


def recorded_data(run: RecordedRun, current: Manifest) -> Manifest:
    """The recorded files as they are now; refuse, naming each file, unless they are the same bytes."""
    recorded = list(run.manifest or [])
    differences = manifest_diff(recorded, current)
    if differences:
        raise ReproduceRefusedError(
            run.retraind_run_id,
            ["the data changed since the run and its snapshot was collected", *differences],
        )
    wanted = {str(f["name"]) for f in recorded}
    return Manifest(tuple(f for f in current.files if f.name in wanted))


def stored_data(run: RecordedRun, store: ObjectStore) -> Manifest | None:
    """The run's own snapshot, if every object it names is still in the store."""
    files = tuple(DataFile(str(f["name"]), int(f["size"]), str(f["sha256"])) for f in (run.manifest or []))
    if not files or not all(store.has(f.sha256, f.size) for f in files):
        return None
    return Manifest(files)


def compare(run: RecordedRun, outcome: PipelineOutcome, parameters: ModelDiff | None = None) -> Verdict:
    """Model hash, prediction hash, every metric and (bytes differing) the parameters: the verdict.

    `parameters` compares the recorded with the rebuilt model; None when it could not be made.
    """
    train = outcome.results["train"].outputs
    model_bytes, scored = _bytes_difference(run, train), _scored_differences(run, train)
    equal = [
        f"{key.replace('_sha256', '')} sha256 {run.tags[tag]}"
        for key, tag in IDENTITY_TAGS.items()
        if str(train["identity"].get(key, "")) == run.tags[tag]
    ]
    if not any(d.startswith("metric ") for d in scored):
        equal.append(
            f"all {len(run.metrics)} metrics, e.g. weighted F1 {run.metrics.get('f1_score_weighted')!r}"
        )
    notes = _image_notes(run, outcome)
    if not model_bytes and not scored:
        return Verdict("identical", (), notes, tuple(equal))
    differences = [*model_bytes, *scored]
    if model_bytes and parameters is None:
        differences.append("parameters: not compared (the recorded model could not be read)")
    elif model_bytes and parameters is not None:
        (equal if parameters.within else differences).append(f"parameters: {parameters.summary()}")
    kind: Kind = "equivalent" if len(differences) == len(model_bytes) else "different"
    return Verdict(kind, tuple(differences), notes, tuple(equal), parameters)


def _image_notes(run: RecordedRun, outcome: PipelineOutcome) -> tuple[str, ...]:
    """When the image differs: what differs inside it, package by package (environment.json)."""
    build = outcome.results["build"].outputs
    image = build["image_id"]
    if image == run.tags.get(IMAGE_TAG):
        return ()
    head = f"image {image[:12]} differs from the recorded {run.tags.get('retraind.image.id', '?')[:12]}"
    now = build.get("environment")
    if run.environment is None or not now:
        return (f"{head} (no environment manifest to compare; the model is what is compared)",)
    differences = environment_diff(run.environment, now)
    if not differences:
        return (f"{head}, with the same packages and versions inside (the base image's ID differs)",)
    return (f"{head}; inside it:", *(f"  {line}" for line in differences))


def _bytes_difference(run: RecordedRun, train: Mapping[str, Any]) -> list[str]:
    now, then = str(train["identity"].get("model_sha256", "")), run.tags[IDENTITY_TAGS["model_sha256"]]
    if now == then:
        return []
    return [f"model sha256: recorded {then[:16]}, now {now[:16]} (the bytes differ)"]


def _scored_differences(run: RecordedRun, train: Mapping[str, Any]) -> list[str]:
    """The predictions and each metric: what is not equal."""
    differences = []
    predictions_then = run.tags[IDENTITY_TAGS["predictions_sha256"]]
    predictions_now = str(train["identity"].get("predictions_sha256", ""))
    if predictions_now != predictions_then:
        differences.append(
            f"predictions sha256: recorded {predictions_then[:16]}, now {predictions_now[:16]}"
            " (some test rows are labelled differently)"
        )
    for name, then_value in sorted(run.metrics.items()):
        now_value = train["metrics"].get(name)
        if now_value is None:
            differences.append(f"metric {name}: recorded {then_value!r}, not produced now")
        elif float(now_value) != float(then_value):
            delta = float(now_value) - float(then_value)
            differences.append(f"metric {name}: recorded {then_value!r}, now {now_value!r} ({delta:+.6g})")
    return differences


class OfflineTracker:
    """A reproduction registers nothing: its result is compared, not recorded."""

    def record(self, run: RunRecord, model_name: str) -> Registration:
        return Registration("", None, False)

    def end_interrupted(self, retraind_run_id: str, reason: str) -> list[str]:
        return []


def reproduce_run(
    settings: Settings,
    run: RecordedRun,
    current: Callable[[ObjectStore], Manifest],
    ports: Ports,
    recorder: Recorder,
    run_id: str,
    models: ModelSource,
    git: GitReader,
) -> tuple[Verdict, PipelineOutcome]:
    """Rebuild and retrain `run` from an export of its commit; never touches the registry.

    `current` snapshots the data directory into the store; it is called only when the run's own
    objects were collected. `models` gives the recorded model, fetched only when the bytes differ.
    """
    problems = provenance_problems(run)
    if problems:
        raise ReproduceRefusedError(run.retraind_run_id, problems)
    store = object_store(settings)
    manifest = stored_data(run, store)
    source = "the run's snapshot"
    if manifest is None:
        manifest, source = recorded_data(run, current(store)), f"the data directory {settings.data_dir}"
    params = params_from_mlflow(run.params)
    commit = run.tags[COMMIT_TAG]
    run_dir = settings.state_dir / "reproduce" / run_id
    run_dir.mkdir(parents=True)
    parameters = None
    try:
        exported = git.export(settings.repo, commit, run_dir / "source")
        store.materialise(((f.name, f.sha256) for f in manifest.files), run_dir / SNAPSHOT)
        rebuilt = replace(settings, image=f"{settings.image}-reproduce", no_cache=False)
        ctx = RunContext(run_id, run_dir, rebuilt, exported, manifest, params)
        changed = _changed_build_inputs(ctx, run.tags)
        if changed:
            raise ReproduceRefusedError(run.retraind_run_id, changed)
        offline = replace(ports, tracker=OfflineTracker(), outbox=None, cache=None)
        outcome = run_stages(ctx, [STAGES[name] for name in REBUILT], offline, recorder, use_cache=False)
        if outcome.ok:  # the rebuilt model is in run_dir: compare before it is removed
            parameters = model_parameters(run, outcome, models, run_dir, settings.reproduce_tolerance)
    finally:
        _remove_tree(run_dir)
    if not outcome.ok:
        assert outcome.error is not None
        raise outcome.error
    verdict = compare(run, outcome, parameters)
    return replace(verdict, notes=(*verdict.notes, f"data from {source}")), outcome


def model_parameters(
    run: RecordedRun, outcome: PipelineOutcome, models: ModelSource, work: Path, rtol: float
) -> ModelDiff | None:
    """The recorded and the rebuilt model compared by parameters; None when the bytes are equal."""
    train = outcome.results["train"].outputs
    if not _bytes_difference(run, train):
        return None
    tolerance = Tolerance.relative(rtol)
    try:
        recorded = load_model(models.download_model(run.mlflow_run_id, work / "recorded-model"))
    except (TrackingError, *UNREADABLE) as e:
        return ModelDiff(tolerance, (f"cannot read the recorded model ({type(e).__name__}: {e})",))
    try:
        rebuilt = load_model(Path(train["dir"]) / "model")
    except UNREADABLE as e:
        return ModelDiff(tolerance, (f"cannot read the rebuilt model ({type(e).__name__}: {e})",))
    return compare_models(recorded, rebuilt, tolerance)


def _remove_tree(path: Path) -> None:
    """A reproduction keeps nothing; the snapshot directory is read-only, so make it writable first."""
    snapshot = path / SNAPSHOT
    if snapshot.is_dir():
        snapshot.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)


def _changed_build_inputs(ctx: RunContext, tags: Mapping[str, str]) -> list[str]:
    """The commit's Containerfile and lockfiles must hash as recorded (unless history was rewritten)."""
    changed = []
    for key, now in input_hashes(ctx).items():
        then = tags.get(f"retraind.sha256.{key}")
        if then is not None and then != now:
            changed.append(
                f"{key} at commit {ctx.git.commit[:12]} hashes {now[:12]}, the run recorded {then[:12]}"
            )
    return changed


class MlflowRunSource:
    """The real `RunSource`: a run by MLflow run ID or by retraind run ID, with its manifest artifact."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def recorded_run(self, ref: str) -> RecordedRun:
        with mlflow_boundary(self.tracking_uri):
            return self._recorded_run(ref)

    def _recorded_run(self, ref: str) -> RecordedRun:
        client = mlflow_client(self.tracking_uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        found = client.search_runs(experiments, filter_string=f"tags.`{RUN_ID_TAG}` = '{ref}'")
        if not found and len(ref) == 32 and all(c in "0123456789abcdef" for c in ref):
            found = client.search_runs(experiments, filter_string=f"attributes.run_id = '{ref}'")
        finished = [r for r in found if r.info.status == "FINISHED"]
        if not finished:
            raise ReproduceRefusedError(ref, [f"no finished run {ref!r} in MLflow at {self.tracking_uri}"])
        r = finished[0]
        return RecordedRun(
            str(r.info.run_id),
            str(r.data.tags.get(RUN_ID_TAG, ref)),
            dict(r.data.params),
            {k: float(v) for k, v in r.data.metrics.items()},
            dict(r.data.tags),
            self._manifest(client, str(r.info.run_id)),
            self._environment(client, str(r.info.run_id)),
        )

    def download_model(self, mlflow_run_id: str, dest: Path) -> Path:
        from mlflow.exceptions import MlflowException

        dest.mkdir(parents=True, exist_ok=True)
        try:
            return Path(
                mlflow_client(self.tracking_uri).download_artifacts(mlflow_run_id, "model", str(dest))
            )
        except (MlflowException, OSError) as e:
            raise TrackingError(f"cannot download the model of MLflow run {mlflow_run_id}: {e}") from e

    def _manifest(self, client: Any, run_id: str) -> list[dict[str, Any]] | None:
        document = _artifact_json(client, run_id, "provenance/manifest.json")
        return None if document is None else list(document["files"])

    def _environment(self, client: Any, run_id: str) -> dict[str, Any] | None:
        document = _artifact_json(client, run_id, "provenance/environment.json")
        image = document.get("image") if isinstance(document, dict) else None
        return image if isinstance(image, dict) else None


def _artifact_json(client: Any, run_id: str, path: str) -> Any:
    """A JSON artifact of the run, or None when it was never logged."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, path, tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(local).read_text(encoding="utf-8"))
