"""preprocess: the Node streaming cleaner turns the raw CSV files into the tokens the trainer reads."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.cachekeys import stage_key
from daemon.errors import GateRejectedError, StageFailedError
from daemon.podman import Mount
from handlers.base import (
    SCRIPTS,
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

    def cache_key(self, ctx: RunContext, ports: Ports) -> str:
        """The image (preprocess.js, the Python port) and the data."""
        return stage_key(NAME, {"image_id": ctx.output("build", "image_id"), "data": ctx.manifest.sha256})

    def reusable(self, outputs: Mapping[str, Any], ports: Ports) -> bool:
        return (Path(outputs["dir"]) / OUTPUT).is_file()

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
        parity = self._parity(ctx, ports, out)
        rows = summary.get("rows_out", 0)
        text = f"{rows:,} rows tokenized; Python port agrees on {parity['rows']:,}"
        return StageResult(NAME, text, {"summary": summary, "parity": parity, "dir": str(out)})

    def _parity(self, ctx: RunContext, ports: Ports, out: Path) -> dict[str, Any]:
        """The gate's last check: the served cleaning must equal the trained one on every row."""
        argv = ("python", f"{SCRIPTS}/parity.py", "--input", f"/out/{OUTPUT}", "--report", "/out/parity.json")
        job = container_job(ctx, NAME, argv, (Mount(out, "/out", writable=True),), step="parity")
        result = run_checked(ports, job, out / "parity.log")
        report: dict[str, Any] = read_json(out / "parity.json") or {}
        if result.returncode == 1:
            reasons = [
                f"Python port differs from Node on {report['mismatches']:,} of {report['rows']:,} rows"
            ]
            reasons += [
                f"{e['file']}:{e['line']}: {e['text']!r}: node {e['node']!r} != python {e['python']!r}"
                for e in report.get("examples", [])[:5]
            ]
            raise GateRejectedError(NAME, reasons, kinds=("parity",))
        if result.returncode != 0:
            raise StageFailedError(NAME, result.returncode, result.tail(10))
        return report


STAGE = Preprocess()
