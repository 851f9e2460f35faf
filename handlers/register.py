"""register, on the host: one MLflow run with params, metrics, provenance tags and artifacts;
register the model version, which the promotion gate makes champion or leaves challenger."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon import __version__
from daemon.core.cachekeys import stage_key
from daemon.core.environment import SHA256_TAG, environment_document, this_host
from daemon.core.errors import RetraindError, TrackingError
from daemon.core.records import (
    COMMIT_TAG,
    DIRTY_TAG,
    FAILURE_TAG,
    IDENTITY_TAGS,
    IMAGE_TAG,
    OUTCOME_TAG,
    RUN_ID_TAG,
    RunRecord,
)
from daemon.core.registration import KEY_TAG, registered
from daemon.core.stages import REGISTER, Ports, RunContext, StageResult
from handlers.base import blas_env

NAME = REGISTER
# train.py's identity.json keys -> the run tags that carry them (`retraind reproduce` compares these)


def provenance_tags(ctx: RunContext) -> dict[str, str]:
    """Everything needed to trace the model back to code, data, environment and trigger."""
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


def failure_record(ctx: RunContext, stage: str, error: RetraindError) -> RunRecord:
    """The MLflow run of a pipeline that stopped: FAILED, with the reason and the gate's reports."""
    tags = provenance_tags(ctx) | {
        OUTCOME_TAG: type(error).__name__,
        "retraind.failed_stage": stage,
        FAILURE_TAG: str(error)[:5000],
    }
    dirs = validation_dirs(ctx) | {"provenance": provenance_dir(ctx, stage)}
    return RunRecord(ctx.settings.experiment, ctx.run_id, "FAILED", stage_params(ctx), {}, tags, dirs)


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
            tags=provenance_tags(ctx) | {OUTCOME_TAG: "success", KEY_TAG: self.cache_key(ctx, ports)},
            artifact_dirs={"": train_dir / "artifacts", "provenance": provenance_dir(ctx)}
            | validation_dirs(ctx),
            model_dir=train_dir / "model",
            finished_ms=int(time.time() * 1000),
        )
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
