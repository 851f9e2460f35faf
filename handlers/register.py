"""register, on the host: one MLflow run with params, metrics, provenance tags and artifacts;
register the model version, which the promotion gate makes champion or leaves challenger."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.core.cachekeys import stage_key
from daemon.core.environment import SHA256_TAG, environment_document, this_host
from daemon.core.errors import RetraindError, TrackingError
from daemon.core.promotion import F1_METRIC
from daemon.core.records import (
    COMMIT_TAG,
    DIRTY_TAG,
    FAILURE_TAG,
    IDENTITY_TAGS,
    IMAGE_TAG,
    OUTCOME_TAG,
    RUN_ID_TAG,
    SLURM_JOBS_TAG,
    RunRecord,
)
from daemon.core.registration import KEY_TAG, registered
from daemon.core.report import PREDICTIONS
from daemon.core.stages import REGISTER, Ports, RunContext, StageResult
from handlers.base import blas_env

NAME = REGISTER
AGREE = 1e-9  # recomputed and recorded figures agree within this
WEIGHTED = ("precision_weighted", "recall_weighted", F1_METRIC)  # train.py's metric names
# train.py's identity.json keys -> the run tags that carry them (`retraind reproduce` compares these)


def provenance_tags(ctx: RunContext, placements: Mapping[str, str] | None = None) -> dict[str, str]:
    """Everything needed to trace the model back to code, data, environment and trigger; with the
    Slurm executor, the job of each stage container (`placements`: container name -> job ID)."""
    tags = {
        "mlflow.source.git.commit": ctx.git.commit,
        RUN_ID_TAG: ctx.run_id,
        COMMIT_TAG: ctx.git.commit,
        "retraind.git.branch": ctx.git.branch,
        DIRTY_TAG: str(ctx.git.dirty).lower(),
        "retraind.data.sha256": ctx.manifest.sha256,
        "retraind.data.files": ",".join(ctx.manifest.names),
        "retraind.trigger": ctx.trigger,
        "retraind.daemon.version": __version__,
        "retraind.host": platform.node(),
        "retraind.blas": " ".join(f"{k}={v}" for k, v in sorted(blas_env(ctx.settings).items())) or "by CPU",
    }
    if "build" in ctx.results:
        build = ctx.results["build"].outputs
        tags[IMAGE_TAG] = build["image_id"]
        tags["retraind.base_image.id"] = build["base_image_id"]
        tags.update({f"retraind.sha256.{k}": v for k, v in build["hashes"].items()})
        tags.update({f"retraind.version.{k}": v for k, v in build["versions"].items()})
        if build.get("environment_sha256"):
            tags[SHA256_TAG] = build["environment_sha256"]
    if "train" in ctx.results:
        identity = ctx.results["train"].outputs.get("identity", {})
        tags.update({IDENTITY_TAGS[k]: v for k, v in identity.items() if k in IDENTITY_TAGS})
    tags.update({f"retraind.cache_key.{k}": r.cache_key for k, r in ctx.results.items() if r.cache_key})
    tags["retraind.executor"] = ctx.settings.executor
    if placements:
        prefix = f"retraind-{ctx.run_id}-"
        jobs = (f"{name.removeprefix(prefix)}={job}" for name, job in sorted(placements.items()))
        tags[SLURM_JOBS_TAG] = ",".join(jobs)
    return tags


def provenance_dir(ctx: RunContext, running: str = NAME) -> Path:
    """What `retraind reproduce` reads back: the data manifest file by file, the params, and the
    environment (the image's packages, the hosts that ran the stages) once the build finished."""
    out = ctx.stage_dir("provenance")
    manifest = {"sha256": ctx.manifest.sha256, "files": ctx.manifest.to_json()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (out / "params.json").write_text(json.dumps(ctx.params.as_mlflow(), indent=2), encoding="utf-8")
    environment = environment_document(ctx.results, this_host(), running)
    if environment is not None:
        (out / "environment.json").write_text(json.dumps(environment, indent=2), encoding="utf-8")
    return out


def stage_params(ctx: RunContext) -> dict[str, str]:
    s = ctx.settings
    return ctx.params.as_mlflow() | {"labels": ",".join(s.labels), "max_empty_share": str(s.max_empty_share)}


def validation_dirs(ctx: RunContext) -> dict[str, Path]:
    """The gate's reports: this run's, or the run's whose validation the stage cache reused."""
    found = ctx.results["validate"].outputs.get("dir") if "validate" in ctx.results else None
    validate_dir = Path(found) if found else ctx.run_dir / "validate"
    return {"validation": validate_dir} if validate_dir.is_dir() else {}


def failure_record(
    ctx: RunContext, stage: str, error: RetraindError, placements: Mapping[str, str] | None = None
) -> RunRecord:
    """The MLflow run of a pipeline that stopped: FAILED, with the reason and the gate's reports."""
    tags = provenance_tags(ctx, placements) | {
        OUTCOME_TAG: type(error).__name__,
        "retraind.failed_stage": stage,
        FAILURE_TAG: str(error)[:5000],
    }
    dirs = validation_dirs(ctx) | {"provenance": provenance_dir(ctx, stage)}
    return RunRecord(ctx.settings.experiment, ctx.run_id, "FAILED", stage_params(ctx), {}, tags, dirs)


def class_figures(predictions: Path, labels: Sequence[str], metrics: Mapping[str, float]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, and the confusion matrix (rows the true label,
    columns the predicted one), recomputed on the host from the test split train.py recorded, with
    the weighted figures and the accuracy checked against those of the recorded metrics it has.
    Empty when it recorded none, or none that can be read (`problem` says why): the version is
    registered either way."""
    none: dict[str, Any] = {"per_class": [], "confusion_matrix": [], "test_rows": None, "recomputed": None}
    if not predictions.is_file():
        return none | {"problem": f"the run recorded no {PREDICTIONS}"}
    try:
        truth, predicted = _recorded_split(predictions)
        return _scored(truth, predicted, list(labels), metrics)
    except (ValueError, KeyError, TypeError) as e:  # not as train.py writes it: JSON, the two columns
        return none | {"problem": f"{PREDICTIONS} cannot be scored: {type(e).__name__}: {e}"[:500]}


def _recorded_split(predictions: Path) -> tuple[list[str], list[str]]:
    """The true and the predicted label of each test row. Split on "\n" alone: pandas writes
    U+2028, U+0085 and the like unescaped inside a text."""
    lines = predictions.read_text(encoding="utf-8").split("\n")
    rows = [json.loads(line) for line in lines if line.strip()]
    return [str(r["sentiment"]) for r in rows], [str(r["predicted"]) for r in rows]


def _scored(
    truth: list[str], predicted: list[str], labels: list[str], metrics: Mapping[str, float]
) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=labels, zero_division=0
    )
    per_class = [
        {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for label, p, r, f, n in zip(labels, precision, recall, f1, support, strict=True)
    ]
    weighted = precision_recall_fscore_support(
        truth, predicted, labels=labels, average="weighted", zero_division=0
    )
    recomputed = dict(zip(WEIGHTED, map(float, weighted[:3]), strict=True))
    recomputed["accuracy"] = float(accuracy_score(truth, predicted))
    agrees = F1_METRIC in metrics and all(
        abs(metrics[k] - v) <= AGREE for k, v in recomputed.items() if k in metrics
    )
    return {
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(truth, predicted, labels=labels).tolist(),
        "test_rows": len(truth),
        "recomputed": recomputed | {"agrees": agrees},
        "problem": None,
    }


def data_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """What the data gate saw of the drop (scripts/check-data.js's report), and its warnings."""
    drift = report.get("drift") or {}
    figures = ("rows", "empty_after_cleaning", "latin1_rows", "duplicate_rows", "conflicting_rows")
    return {k: report.get(k) for k in figures} | {
        "files": [str(name) for name in report.get("files", [])],
        "label_counts": dict(report.get("label_counts", {})),
        "label_psi": drift.get("label_psi"),
        "length_psi": drift.get("length_psi"),
    }


def report_figures(ctx: RunContext, train_dir: Path, record: RunRecord) -> dict[str, Any]:
    """The report's figures that need no champion; the tracker adds the comparison (core/report.py)."""
    validate = ctx.results["validate"].outputs if "validate" in ctx.results else {}
    data_report: Mapping[str, Any] = validate.get("data_report") or {}
    labels = list(ctx.settings.labels)
    return {
        "run": {
            "retraind_run_id": ctx.run_id,
            "experiment": record.experiment,
            "trigger": ctx.trigger,
            "commit": ctx.git.commit,
            "subject": ctx.git.subject,
        },
        "metrics": dict(record.metrics),
        "labels": labels,
        **class_figures(train_dir / "artifacts" / PREDICTIONS, labels, record.metrics),
        "data": data_summary(data_report),
        "warnings": [str(w.get("message", w)) for w in data_report.get("warnings", [])],
        "provenance": {"tags": dict(record.tags), "params": dict(record.params)},
    }


class Register:
    name = NAME

    def cache_key(self, ctx: RunContext, ports: Ports) -> str:
        """The model (by train's key) and where it goes: the same model is registered once per place."""
        s = ctx.settings
        inputs = {
            "model": ctx.results["train"].cache_key,
            "tracking_uri": s.tracking_uri,
            "experiment": s.experiment,
            "model_name": s.model_name,
        }
        return stage_key(NAME, inputs)

    def reusable(self, outputs: Mapping[str, Any], ports: Ports) -> bool:
        return outputs.get("model_version") is not None

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        train: dict[str, Any] = dict(ctx.results["train"].outputs)
        train_dir = Path(train["dir"])
        params = stage_params(ctx) | {k: str(v) for k, v in train["params"].items()}
        record = RunRecord(
            experiment=ctx.settings.experiment,
            run_name=ctx.run_id,
            status="FINISHED",
            params=params,
            metrics=train["metrics"],
            tags=provenance_tags(ctx, ports.containers.placements(ctx.run_id))
            | {OUTCOME_TAG: "success", KEY_TAG: self.cache_key(ctx, ports)},
            artifact_dirs={"": train_dir / "artifacts", "provenance": provenance_dir(ctx)}
            | validation_dirs(ctx),
            model_dir=train_dir / "model",
            finished_ms=int(time.time() * 1000),
        )
        record = replace(record, report=report_figures(ctx, train_dir, record))  # of what it records
        try:
            reg = ports.tracker.record(record, ctx.settings.model_name)
        except TrackingError as e:
            if ports.outbox is None:
                raise
            ports.outbox.put(ctx.run_id, record, ctx.settings.model_name, str(e))
            summary = f"MLflow unreachable: waiting in the outbox ({ports.outbox.backlog()} in all)"
            outputs = {"mlflow_run_id": None, "model_version": None, "champion": False, "queued": True}
            return StageResult(NAME, summary, outputs, final=False)  # the outbox caches it when sent
        return registered(reg, ctx.settings.model_name)


STAGE = Register()
