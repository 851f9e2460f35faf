"""The model commands of the CLI: `models`, `promote`, `rollback` (the registry) and `reproduce`."""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from daemon.core.config import Settings
from daemon.core.errors import EXIT_CRASH, EXIT_OK

if TYPE_CHECKING:
    from daemon.commands.reproduce import RecordedRun, Verdict

REPRODUCE_EXIT_CODES = """exit codes:
  0   identical: the same model bytes (hash), prediction hash and metrics; or
      equivalent: other model bytes, but the same predictions and metrics and every parameter
      within reproduce_tolerance (the largest difference printed)
  1   different: rebuilt, but predictions, a metric or a parameter differ (printed line by line)
  3   refused: the data changed since the run (each file named), or the run records too little
  4   a stage failed while rebuilding
  5   infrastructure failed (podman, git, MLflow)
  78  bad configuration or a missing tool"""


def add_parsers(
    sub: Any, fmt: type[argparse.HelpFormatter], settings_flags: Callable[[Any], None], exit_codes: str
) -> None:
    """models, promote, rollback and reproduce, with the settings flags every command takes."""
    models = sub.add_parser(
        "models",
        help="registered versions (aliases, stage, F1, gate reason) and the promotion history",
        epilog=exit_codes,
        formatter_class=fmt,
    )
    promote = sub.add_parser(
        "promote", help="make VERSION champion, gate or not", epilog=exit_codes, formatter_class=fmt
    )
    promote.add_argument("version", help="the model version to promote, e.g. 3 or v3")
    rollback = sub.add_parser(
        "rollback",
        help="make the champion before the current one champion again",
        epilog=exit_codes,
        formatter_class=fmt,
    )
    for p in (models, promote, rollback):
        settings_flags(p)
        p.add_argument("--model-name", help="registered model name")
    for p in (promote, rollback):
        p.add_argument("--reason", required=True, help="why, for the promotion history")
    reproduce = sub.add_parser(
        "reproduce",
        help="rebuild a recorded run's model from its provenance and compare",
        description="Export the run's commit, take its data from the run's snapshot (or, once that "
        "was collected, from the data directory, verified against the run's manifest), rebuild the "
        "image, retrain sealed with the recorded params, and compare the model "
        "hash, the prediction hash and every metric; when the model bytes differ, also the parameters "
        "(vocabulary, IDF weights, coefficients) within reproduce_tolerance.",
        epilog=REPRODUCE_EXIT_CODES,
        formatter_class=fmt,
    )
    settings_flags(reproduce)
    reproduce.add_argument("run", help="retraind run ID (as in `retraind status`) or MLflow run ID")


def _registry(settings: Settings) -> Any:
    from daemon.adapters.registry import MlflowRegistry

    return MlflowRegistry(settings.tracking_uri)


def _person() -> str:
    import platform

    return f"{getpass.getuser()}@{platform.node()}"


def models(settings: Settings, args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.core.promotion import models_json, render_models

    registry = _registry(settings)
    rows, history = registry.versions(settings.model_name), registry.history(settings.model_name)
    shown = models_json(settings.model_name, rows, history)
    print(json.dumps(shown) if json_lines else render_models(settings.model_name, rows, history))
    return EXIT_OK


def promote(settings: Settings, args: argparse.Namespace, json_lines: bool) -> int:
    version = args.version.removeprefix("v")
    entry = _registry(settings).promote(
        settings.model_name, version, _person(), args.reason, mirror_stages=settings.mirror_stages
    )
    return _champion_changed(settings.model_name, entry.version, entry.previous, "promote", json_lines)


def rollback(settings: Settings, args: argparse.Namespace, json_lines: bool) -> int:
    registry = _registry(settings)
    version = registry.rollback(settings.model_name, _person(), args.reason, settings.mirror_stages)
    previous = registry.history(settings.model_name)[-1].previous
    return _champion_changed(settings.model_name, version, previous, "rollback", json_lines)


def _champion_changed(model: str, version: str, previous: str | None, action: str, json_lines: bool) -> int:
    structlog.get_logger().info(
        "champion_changed", model=model, version=version, previous=previous, action=action, by=_person()
    )
    if not json_lines:  # in JSON mode the log line above is the output
        print(f"{model} v{version} is now champion" + (f" (was v{previous})" if previous else ""))
    return EXIT_OK


def reproduce(settings: Settings, args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.adapters.snapshot import scan
    from daemon.app import new_run_id, real_ports
    from daemon.commands.reproduce import MlflowRunSource, reproduce_run
    from daemon.engine.progress import ConsoleReporter, LogReporter

    source = MlflowRunSource(settings.tracking_uri)
    run = source.recorded_run(args.run)
    reporter = LogReporter() if json_lines else ConsoleReporter()
    run_id = "reproduce-" + new_run_id()
    verdict, _ = reproduce_run(
        settings, run, lambda store: scan(settings, store), real_ports(settings), reporter, run_id, source
    )
    fields = verdict_fields(run, verdict)
    print(json.dumps(fields) if json_lines else render_verdict(fields))
    return EXIT_OK if verdict.reproduced else EXIT_CRASH


def verdict_fields(run: RecordedRun, verdict: Verdict) -> dict[str, Any]:
    """The JSON line `reproduce` prints; `identical` stays for scripts written before `verdict`."""
    return {
        "run": run.retraind_run_id,
        "mlflow_run_id": run.mlflow_run_id,
        "commit": run.tags["retraind.git.commit"],
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


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace, bool], int]] = {
    "models": models,
    "promote": promote,
    "rollback": rollback,
    "reproduce": reproduce,
}
