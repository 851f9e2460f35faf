"""validate, the gate: the Jest suite of scripts/ inside the image, then checks of the data itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daemon.errors import GateRejectedError, StageFailedError
from daemon.podman import Mount
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

NAME = "validate"
MAX_REASONS = 10


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
    return [str(p.get("message", p)) for p in (report or {}).get("problems", [])]


class Validate:
    name = NAME

    def run(self, ctx: RunContext, ports: Ports) -> StageResult:
        if ctx.manifest.refused:  # before any container reads the drop
            reasons = [f"{name}: refused: {why}" for name, why in ctx.manifest.refused]
            raise GateRejectedError(NAME, reasons, kinds=("unsafe_file",))
        out = ctx.stage_dir(NAME)
        tests = self._jest(ctx, ports, out)
        checked = self._data(ctx, ports, out)
        rows = checked.get("rows", 0)
        summary = f"{tests} tests passed; {rows:,} rows passed the data checks"
        return StageResult(NAME, summary, {"tests_passed": tests, "data_report": checked})

    def _jest(self, ctx: RunContext, ports: Ports, out: Path) -> int:
        argv = ("npm", "test", "--", "--ci", "--json", "--outputFile=/out/jest.json")
        job = container_job(ctx, NAME, argv, (Mount(out, "/out", writable=True),), step="jest")
        result = run_checked(ports, job, out / "jest.log")
        report = read_json(out / "jest.json")
        if result.returncode != 0:
            reasons = failed_tests(report) or [f"jest exited {result.returncode}: {result.tail(5)}"]
            raise GateRejectedError(NAME, reasons[:MAX_REASONS], kinds=("jest",))
        return int((report or {}).get("numPassedTests", 0))

    def _data(self, ctx: RunContext, ports: Ports, out: Path) -> dict[str, Any]:
        s = ctx.settings
        argv = (
            "node",
            "check-data.js",
            "--report",
            "/out/data-check.json",
            "--labels",
            ",".join(s.labels),
            "--max-empty-share",
            str(s.max_empty_share),
            *data_paths(ctx),
        )
        job = container_job(ctx, NAME, argv, data_mounts(ctx, out), step="data")
        result = run_checked(ports, job, out / "data-check.log")
        report = read_json(out / "data-check.json")
        if result.returncode == 1:
            kinds = {str(p.get("check", "other")) for p in (report or {}).get("problems", [])}
            raise GateRejectedError(NAME, data_problems(report)[:MAX_REASONS] or [result.tail(5)], kinds)
        if result.returncode != 0:
            raise StageFailedError(NAME, result.returncode, result.tail(10))
        return dict(report or {})


STAGE = Validate()
