"""preprocess: the Node streaming cleaner turns the raw CSV files into the tokens the trainer reads,
and the Python port of the cleaner (what the model serves with) must agree with it on every row.

Three ways to the same files, fastest first:
- validate ran in this run and its container already preprocessed the drop (scripts/gate.js): the
  files are taken over (hard links), no container starts;
- an image with gate.js otherwise (a reproduction, or validate answered from the stage cache): one
  container, preprocess.js feeding the parity check through a pipe as it writes;
- an older image: preprocess.js, then parity.py over its output, in two containers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.core.cachekeys import stage_key
from daemon.core.errors import GateRejectedError, StageFailedError
from daemon.core.jobs import Mount
from daemon.core.stages import PREPROCESS, Ports, RunContext, StageResult
from handlers.base import (
    GATE_CONTRACT,
    SCRIPTS,
    container_job,
    data_mounts,
    data_paths,
    read_json,
    run_checked,
)

NAME = PREPROCESS
OUTPUT = "processed.jsonl"
EXIT_PARITY = 3  # preprocess.js and gate.js with --parity: written, but the Python port differs
FILES = (OUTPUT, "summary.json", "parity.json")  # what it writes, wherever it runs
# Where preprocess.js (and gate.js, in validate's container) write them, and the parity check's
# report (images before stage contract 2 have no --parity).
OUTPUT_ARGS = ("--output", f"/out/{OUTPUT}", "--summary", "/out/summary.json")
PARITY_ARGS = ("--parity", "/out/parity.json")


class Preprocess:
    name = NAME

    def cache_key(self, ctx: RunContext, ports: Ports) -> str:
        """The image (preprocess.js, the Python port) and the data."""
        return stage_key(NAME, {"image_id": ctx.output("build", "image_id"), "data": ctx.manifest.sha256})

    def reusable(self, outputs: Mapping[str, Any], ports: Ports) -> bool:
        return (Path(outputs["dir"]) / OUTPUT).is_file()

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        out = ctx.stage_dir(NAME)
        prepared = self._prepared(ctx)
        if prepared is not None:
            returncode, where = self._take(prepared, out), " (in validate's container)"
        elif ctx.speaks(GATE_CONTRACT):
            returncode, where = self._preprocess(ctx, ports, out, (*OUTPUT_ARGS, *PARITY_ARGS)), ""
        else:
            self._preprocess(ctx, ports, out, OUTPUT_ARGS)
            returncode, where = self._parity(ctx, ports, out), ""
        parity = self._verdict(read_json(out / "parity.json") or {}, returncode)
        summary = read_json(out / "summary.json") or {}
        rows = summary.get("rows_out", 0)
        text = f"{rows:,} rows tokenized{where}; Python port agrees on {parity['rows']:,}"
        return StageResult(NAME, text, {"summary": summary, "parity": parity, "dir": str(out)})

    @staticmethod
    def _prepared(ctx: RunContext) -> Mapping[str, Any] | None:
        """What this run's validate container preprocessed, if it did: never a cached validate's
        files, which belong to another run (and that run's preprocess would be cached too)."""
        validate = ctx.results.get("validate")
        if validate is None or validate.cached_from:
            return None
        prepared = validate.outputs.get("prepared")
        return prepared if isinstance(prepared, Mapping) else None

    @staticmethod
    def _take(prepared: Mapping[str, Any], out: Path) -> int:
        """Hard links to the files validate's container wrote (a copy where links cannot be made)."""
        source = Path(str(prepared["dir"]))
        for name in FILES:
            target = out / name
            target.unlink(missing_ok=True)
            try:
                os.link(source / name, target)
            except FileNotFoundError as e:
                raise StageFailedError(NAME, 1, f"validate's container wrote no {name}: {e}") from e
            except OSError:
                shutil.copyfile(source / name, target)
        return int(prepared.get("returncode", 0))

    def _preprocess(self, ctx: RunContext, ports: Ports, out: Path, outputs: tuple[str, ...]) -> int:
        argv = ("node", "preprocess.js", *outputs, *data_paths(ctx))
        result = run_checked(
            ports, container_job(ctx, NAME, argv, data_mounts(ctx, out)), out / "preprocess.log"
        )
        parity = "--parity" in outputs
        if result.returncode not in (0, EXIT_PARITY) or (result.returncode == EXIT_PARITY and not parity):
            raise StageFailedError(NAME, result.returncode, result.tail(10))
        return result.returncode

    def _parity(self, ctx: RunContext, ports: Ports, out: Path) -> int:
        """parity.py over the written file, in a container of its own (images before gate.js)."""
        argv = ("python", f"{SCRIPTS}/parity.py", "--input", f"/out/{OUTPUT}", "--report", "/out/parity.json")
        job = container_job(ctx, NAME, argv, (Mount(out, "/out", writable=True),), step="parity")
        result = run_checked(ports, job, out / "parity.log")
        if result.returncode not in (0, 1):
            raise StageFailedError(NAME, result.returncode, result.tail(10))
        return EXIT_PARITY if result.returncode == 1 else 0

    @staticmethod
    def _verdict(report: dict[str, Any], returncode: int) -> dict[str, Any]:
        """The gate's last check: the served cleaning must equal the trained one on every row."""
        if returncode == EXIT_PARITY:
            mismatches, rows = report.get("mismatches", 0), report.get("rows", 0)
            reasons = [f"Python port differs from Node on {mismatches:,} of {rows:,} rows"]
            reasons += [
                f"{e['file']}:{e['line']}: {e['text']!r}: node {e['node']!r} != python {e['python']!r}"
                for e in report.get("examples", [])[:5]
            ]
            raise GateRejectedError(NAME, reasons, kinds=("parity",))
        if "rows" not in report:
            raise StageFailedError(NAME, returncode, "the parity check wrote no report")
        return report


STAGE = Preprocess()
