"""preprocess: the Node streaming cleaner turns the raw CSV files into the tokens the trainer reads."""

from __future__ import annotations

from daemon.errors import StageFailedError
from handlers.base import (
    Ports,
    RunContext,
    StageResult,
    container_job,
    data_mounts,
    data_paths,
    read_json,
    run_checked,
)

NAME = "preprocess"
OUTPUT = "processed.jsonl"


class Preprocess:
    name = NAME

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        out = ctx.stage_dir(NAME)
        argv = (
            "node",
            "preprocess.js",
            "--output",
            f"/out/{OUTPUT}",
            "--summary",
            "/out/summary.json",
            *data_paths(ctx),
        )
        job = container_job(ctx, NAME, argv, data_mounts(ctx, out))
        result = run_checked(ports, job, out / "preprocess.log")
        if result.returncode != 0:
            raise StageFailedError(NAME, result.returncode, result.tail(10))
        summary = read_json(out / "summary.json") or {}
        rows = summary.get("rows_out", 0)
        return StageResult(NAME, f"{rows:,} rows tokenized", {"summary": summary, "dir": str(out)})


STAGE = Preprocess()
