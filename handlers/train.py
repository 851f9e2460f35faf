"""train: fit and evaluate in a sealed container (no network, inputs read-only); never talks to MLflow."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.cachekeys import stage_key
from daemon.errors import StageFailedError
from daemon.podman import Mount
from handlers.base import (
    SCRIPTS,
    Ports,
    RunContext,
    StageResult,
    container_job,
    read_json,
    run_checked,
)
from handlers.preprocess import OUTPUT

NAME = "train"


class Train:
    name = NAME

    def cache_key(self, ctx: RunContext, ports: Ports) -> str:
        """The image (train.py, the libraries), the processed data (by its stage key), the params."""
        inputs = {
            "image_id": ctx.output("build", "image_id"),
            "processed": ctx.results["preprocess"].cache_key,
            "params": ctx.params.as_mlflow(),
        }
        return stage_key(NAME, inputs)

    def reusable(self, outputs: Mapping[str, Any], ports: Ports) -> bool:
        return (Path(outputs["dir"]) / "model" / "MLmodel").is_file()

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        out = ctx.stage_dir(NAME)
        script = ("python", f"{SCRIPTS}/train.py", "--input", f"/in/{OUTPUT}", "--output", "/out")
        argv = (*script, *ctx.params.as_argv())
        processed = Path(ctx.output("preprocess", "dir"))
        mounts = (Mount(processed, "/in"), Mount(out, "/out", writable=True))
        result = run_checked(ports, container_job(ctx, NAME, argv, mounts), out / "train.log")
        metrics = read_json(out / "artifacts" / "metrics.json")
        if result.returncode != 0 or not metrics:
            raise StageFailedError(NAME, result.returncode, result.tail(10))
        params = read_json(out / "artifacts" / "params.json") or {}
        identity = read_json(out / "artifacts" / "identity.json") or {}
        f1 = metrics["f1_score_weighted"]
        model_hash = str(identity.get("model_sha256", ""))[:12]
        outputs = {"metrics": metrics, "params": params, "identity": identity, "dir": str(out)}
        return StageResult(NAME, f"weighted F1 {f1:.4f}, model {model_hash}", outputs)


STAGE = Train()
