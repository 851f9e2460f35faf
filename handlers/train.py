"""train: fit and evaluate in a sealed container (no network, inputs read-only); never talks to MLflow."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.core.cachekeys import stage_key
from daemon.core.config import Settings
from daemon.core.environment import this_host
from daemon.core.errors import ConfigError, StageFailedError
from daemon.core.jobs import Mount
from daemon.core.stages import TRAIN, Ports, RunContext, StageResult
from handlers.base import SCRIPTS, blas_env, container_job, read_json, run_checked
from handlers.preprocess import OUTPUT

NAME = TRAIN


HASWELL_NEEDS = ("avx2", "fma")  # the CPU flags OpenBLAS's Haswell kernels use


def check_blas(settings: Settings, host: Mapping[str, Any]) -> None:
    """A pinned Haswell kernel on a CPU without AVX2 would die of an illegal instruction: refuse first."""
    missing = [f for f in HASWELL_NEEDS if f not in host.get("cpu_flags", ())]
    x86 = host.get("machine") in ("x86_64", "AMD64")
    if settings.blas_coretype == "Haswell" and x86 and missing:
        raise ConfigError(
            f"blas_coretype Haswell needs CPU flags {', '.join(missing)}, which this CPU lacks: set "
            'blas_coretype = "Sandybridge" (or "" to let OpenBLAS choose) on every machine that must '
            "train the same bytes"
        )


class Train:
    name = NAME

    def cache_key(self, ctx: RunContext, ports: Ports) -> str:
        """The image (train.py, the libraries), the processed data (by its stage key), the params."""
        inputs = {
            "image_id": ctx.output("build", "image_id"),
            "processed": ctx.results["preprocess"].cache_key,
            "params": ctx.params.as_mlflow(),
            "blas": blas_env(ctx.settings),  # changes the model's last bits
        }
        return stage_key(NAME, inputs)

    def reusable(self, outputs: Mapping[str, Any], ports: Ports) -> bool:
        return (Path(outputs["dir"]) / "model" / "MLmodel").is_file()

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        check_blas(ctx.settings, this_host())
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
