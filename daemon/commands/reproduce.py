"""`retraind reproduce RUN`: rebuild a recorded run's model from its provenance alone and compare
(daemon/engine/reproduction.py does the work)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from daemon.commands.common import command, settings_of
from daemon.core.errors import EXIT_CRASH, EXIT_OK
from daemon.core.records import COMMIT_TAG

if TYPE_CHECKING:
    from daemon.engine.reproduction import RecordedRun, Verdict

REPRODUCE_EXIT_CODES = """exit codes:
  0   identical: the same model bytes (hash), prediction hash and metrics; or
      equivalent: other model bytes, but the same predictions and metrics and every parameter
      within reproduce_tolerance (the largest difference printed)
  1   different: rebuilt, but predictions, a metric or a parameter differ (printed line by line)
  3   refused: the data changed since the run (each file named), or the run records too little
  4   a stage failed while rebuilding
  5   infrastructure failed (podman, git, MLflow)
  78  bad configuration or a missing tool"""


def add_parser(sub: Any) -> None:
    p = command(
        sub,
        "reproduce",
        main,
        exit_codes=REPRODUCE_EXIT_CODES,
        help="rebuild a recorded run's model from its provenance and compare",
        description="Export the run's commit, take its data from the run's snapshot (or, once that "
        "was collected, from the data directory, verified against the run's manifest), rebuild the "
        "image, retrain sealed with the recorded params, and compare the model "
        "hash, the prediction hash and every metric; when the model bytes differ, also the parameters "
        "(vocabulary, IDF weights, coefficients) within reproduce_tolerance.",
    )
    p.add_argument("run", help="retraind run ID (as in `retraind status`) or MLflow run ID")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.adapters.snapshot import scan
    from daemon.app import GIT, new_run_id, real_ports
    from daemon.engine.progress import ConsoleRecorder, LogRecorder
    from daemon.engine.reproduction import MlflowRunSource, reproduce_run

    settings = settings_of(args)
    source = MlflowRunSource(settings.tracking_uri)
    run = source.recorded_run(args.run)
    recorder = LogRecorder() if json_lines else ConsoleRecorder()
    run_id = "reproduce-" + new_run_id()
    current = lambda store: scan(settings, store)  # noqa: E731
    verdict, _ = reproduce_run(settings, run, current, real_ports(settings), recorder, run_id, source, GIT)
    fields = verdict_fields(run, verdict)
    print(json.dumps(fields) if json_lines else render_verdict(fields))
    return EXIT_OK if verdict.reproduced else EXIT_CRASH


def verdict_fields(run: RecordedRun, verdict: Verdict) -> dict[str, Any]:
    """The JSON line `reproduce` prints; `identical` stays for scripts written before `verdict`."""
    return {
        "run": run.retraind_run_id,
        "mlflow_run_id": run.mlflow_run_id,
        "commit": run.tags[COMMIT_TAG],
        "verdict": verdict.kind,
        "identical": verdict.identical,
        "differences": list(verdict.differences),
        "notes": list(verdict.notes),
        "equal": list(verdict.compared),
        "parameters": verdict.parameters.as_json() if verdict.parameters else None,
    }


def render_verdict(fields: Mapping[str, Any]) -> str:
    """The verdict, then what was equal, what differs and the notes, one per indented line."""
    lines = [f"{fields['verdict']}: run {fields['run']} rebuilt from commit {fields['commit'][:12]}"]
    shown = (*fields["equal"], *fields["differences"], *(f"note: {n}" for n in fields["notes"]))
    return "\n".join([*lines, *(f"  {line}" for line in shown)])
