"""validate, the gate: checks of the data itself, and the outcome of the Jest suite of scripts/.

The suite depends on the image alone, so the Containerfile runs it once per image, at build time,
and the build stage hands its outcome here: a data drop never reruns it. An image that did not run
it (a pipeline repository's own Containerfile) gets it run here, after the data checks, so that
a broken drop is refused before anything slow.

When the suite ran at build and the image has gate.js, the container that checks the drop goes on,
once the checks passed, to preprocess it with the parity check alongside (scripts/gate.js): one
container start and one Node start instead of three, and the parity check on the other core. The
files are the preprocess stage's to take (`prepared` in the outputs); a rejected drop is never
preprocessed.
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from daemon.core.cachekeys import stage_key
from daemon.core.config import Settings
from daemon.core.errors import GateRejectedError, StageFailedError
from daemon.core.jobs import Mount
from daemon.core.stages import VALIDATE, Ports, RunContext, StageResult
from handlers.base import GATE_CONTRACT, container_job, data_mounts, data_paths, read_json, run_checked
from handlers.preprocess import EXIT_PARITY, OUTPUT_ARGS, PARITY_ARGS

NAME = VALIDATE
REFERENCE = "drift-reference.json"
MAX_REASONS = 10


def _escaped(c: str) -> str:
    if unicodedata.category(c)[0] != "C" and c not in "\u2028\u2029":
        return c
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\u{{{ord(c):x}}}"


def printable(text: str) -> str:
    """Text from a drop (a file name) safe for a one-line message: control, format and separator
    characters escaped as \\uXXXX, as check-data.js's printable() does (Unicode C, Zl, Zp), so a name
    cannot split a log line or fake another one."""
    return "".join(map(_escaped, text))


def capped(reasons: list[str], limit: int = MAX_REASONS) -> list[str]:
    """The first `limit` reasons, and how many more there are (the report has them all)."""
    if len(reasons) <= limit:
        return reasons
    return [*reasons[: limit - 1], f"and {len(reasons) - limit + 1} more problems (see data-check.json)"]


def failed_tests(report: Any) -> list[str]:
    """Names and first message lines of failing Jest tests (and suites that failed to load)."""
    reasons: list[str] = []
    for suite in (report or {}).get("testResults", []):
        suite_name = Path(suite.get("name", "?")).name
        failing = [a for a in suite.get("assertionResults", []) if a.get("status") == "failed"]
        for a in failing:
            first = next(iter(a.get("failureMessages") or [""])).strip().splitlines()
            reasons.append(f"jest {suite_name}: {a.get('fullName', '?')}: {first[0] if first else ''}")
        if suite.get("status") == "failed" and not failing:
            message = (suite.get("message") or "").strip().splitlines()
            reasons.append(f"jest {suite_name}: suite failed: {message[0] if message else ''}")
    return reasons


def data_problems(report: Any) -> list[str]:
    return [printable(str(p.get("message", p))) for p in (report or {}).get("problems", [])]


class Validate:
    name = NAME

    def cache_key(self, ctx: RunContext, ports: Ports) -> str:
        """The image (its scripts and Jest suite), the data and the thresholds.

        Not the drift reference: a drop that passed once passed against the reference in force
        then, and accepting it made it the reference, so re-checking it would compare it with itself.
        """
        inputs = {
            "image_id": ctx.output("build", "image_id"),
            "data": ctx.manifest.sha256,
            "options": list(gate_options(ctx.settings)),
        }
        return stage_key(NAME, inputs)

    def reusable(self, outputs: Mapping[str, Any], ports: Ports) -> bool:
        return True

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        if ctx.manifest.refused:  # before any container reads the drop
            reasons = [f"{printable(name)}: refused: {printable(why)}" for name, why in ctx.manifest.refused]
            raise GateRejectedError(NAME, reasons, kinds=("unsafe_file",))
        out = ctx.stage_dir(NAME)
        built = ctx.results["build"].outputs.get("tests") if "build" in ctx.results else None
        if built is not None:  # the image ran the suite when it was built: its outcome, not a rerun
            tests, where = self._reported(built, out), "at build"
        prepare = built is not None and ctx.speaks(GATE_CONTRACT)
        checked, returncode = self._data(ctx, ports, out, prepare)
        if built is None:
            tests, where = self._jest(ctx, ports, out), "in validate"
        rows = checked.get("rows", 0)
        summary = f"{tests} tests passed ({where}); {rows:,} rows passed the data checks"
        outputs: dict[str, Any] = {
            "tests_passed": tests,
            "tests_ran": where,
            "data_report": checked,
            "dir": str(out),
        }
        if prepare:  # preprocessed in this container: the preprocess stage takes the files
            outputs["prepared"] = {"dir": str(out), "returncode": returncode}
            summary += ", then were preprocessed"
        if (out / REFERENCE).is_file():  # becomes the drift reference once the whole run succeeded
            outputs["reference"] = str(out / REFERENCE)
        return StageResult(NAME, summary, outputs)

    def _reported(self, report: Mapping[str, Any], out: Path) -> int:
        """The outcome the build recorded, kept with this run's reports; a failure rejects the run."""
        (out / "jest.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        return self._outcome(report, int(report.get("exitCode", 1)), "the build's Jest run failed")

    def _jest(self, ctx: RunContext, ports: Ports, out: Path) -> int:
        argv = ("npm", "test", "--", "--ci", "--json", "--outputFile=/out/jest.json")
        job = container_job(ctx, NAME, argv, (Mount(out, "/out", writable=True),), step="jest")
        result = run_checked(ports, job, out / "jest.log")
        return self._outcome(read_json(out / "jest.json"), result.returncode, result.tail(5))

    @staticmethod
    def _outcome(report: Any, returncode: int, otherwise: str) -> int:
        if returncode != 0 or not (report or {}).get("success", returncode == 0):
            reasons = failed_tests(report) or [f"jest exited {returncode}: {otherwise}"]
            raise GateRejectedError(NAME, reasons[:MAX_REASONS], kinds=("jest",))
        return int((report or {}).get("numPassedTests", 0))

    def _data(self, ctx: RunContext, ports: Ports, out: Path, prepare: bool) -> tuple[dict[str, Any], int]:
        """The data checks' report and the container's exit code; with `prepare`, gate.js goes on to
        preprocess a drop that passed (exit 0, or EXIT_PARITY when the Python port differs)."""
        s = ctx.settings
        reference = s.state_dir / REFERENCE
        argv = (
            "node",
            "gate.js" if prepare else "check-data.js",
            "--report",
            "/out/data-check.json",
            *gate_options(s),
            "--write-reference",
            f"/out/{REFERENCE}",
        )
        if prepare:  # the preprocess stage's files, in this stage's directory (it takes them)
            argv += (*OUTPUT_ARGS, *PARITY_ARGS)
        mounts = data_mounts(ctx, out)
        if reference.is_file():  # drift against the last accepted drop
            argv += ("--reference", f"/ref/{REFERENCE}")
            mounts += (Mount(reference, f"/ref/{REFERENCE}"),)
        job = container_job(ctx, NAME, (*argv, *data_paths(ctx)), mounts, step="data")
        result = run_checked(ports, job, out / "data-check.log")
        report = read_json(out / "data-check.json")
        if result.returncode == 1 and not (prepare and (report or {}).get("passed")):
            kinds = {str(p.get("check", "other")) for p in (report or {}).get("problems", [])}
            raise GateRejectedError(NAME, capped(data_problems(report)) or [printable(result.tail(5))], kinds)
        if result.returncode != 0 and not (prepare and result.returncode == EXIT_PARITY):
            raise StageFailedError(NAME, result.returncode, printable(result.tail(10)))
        return dict(report or {}), result.returncode


def advance_reference(state_dir: Path, results: Mapping[str, StageResult]) -> Path | None:
    """After a run succeeded (register included): its drop becomes the drift reference for the next.

    Called by whoever ran the whole pipeline (the daemon's worker, `retraind run`), never by validate
    itself: a drop rejected later (parity in preprocess, a failed training) must not become the
    reference. A validate answered from the stage cache names the earlier run's candidate; when that
    run directory is gone, the reference stays as it is. Returns the file copied, or None.
    """
    validate = results.get(NAME)
    candidate = Path(str(validate.outputs.get("reference", ""))) if validate is not None else None
    if candidate is None or not candidate.is_file():
        return None
    target = state_dir / REFERENCE
    tmp = target.with_suffix(".tmp")
    shutil.copyfile(candidate, tmp)
    tmp.replace(target)
    return candidate


def gate_options(s: Settings) -> tuple[str, ...]:
    """The configured thresholds, as check-data.js options."""
    options = {
        "labels": ",".join(s.labels), "max-empty-share": s.max_empty_share,
        "max-latin1-share": s.max_latin1_share, "max-duplicate-share": s.max_duplicate_share,
        "max-conflict-share": s.max_conflict_share, "min-rows-per-class": s.min_rows_per_class,
        "max-text-length": s.max_text_length, "max-label-psi": s.max_label_psi,
        "max-length-psi": s.max_length_psi,
    }  # fmt: skip
    return tuple(part for k, v in options.items() for part in (f"--{k}", str(v)))


STAGE = Validate()
