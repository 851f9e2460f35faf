"""train: fit and evaluate in a sealed container (no network, inputs read-only); never talks to MLflow."""

from __future__ import annotations

from pathlib import Path

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

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        s = ctx.settings
        out = ctx.stage_dir(NAME)
        argv = (
            "python",
            f"{SCRIPTS}/train.py",
            "--input",
            f"/in/{OUTPUT}",
            "--output",
            "/out",
            "--seed",
            str(s.seed),
            "--test-size",
            str(s.test_size),
            "--C",
            str(s.c),
        )
        processed = Path(ctx.output("preprocess", "dir"))
        mounts = (Mount(processed, "/in"), Mount(out, "/out", writable=True))
        result = run_checked(ports, container_job(ctx, NAME, argv, mounts), out / "train.log")
        metrics = read_json(out / "artifacts" / "metrics.json")
        if result.returncode != 0 or not metrics:
            raise StageFailedError(NAME, result.returncode, result.tail(10))
        params = read_json(out / "artifacts" / "params.json") or {}
        f1 = metrics["f1_score_weighted"]
        return StageResult(
            NAME, f"weighted F1 {f1:.4f}", {"metrics": metrics, "params": params, "dir": str(out)}
        )


STAGE = Train()
