"""The model commands of the CLI: `models`, `promote`, `rollback` (the registry) and `reproduce`."""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Callable
from typing import Any

import structlog

from daemon.config import Settings
from daemon.errors import EXIT_CRASH, EXIT_OK

REPRODUCE_EXIT_CODES = """exit codes:
  0   identical: same model hash, prediction hash and metrics
  1   rebuilt, but something differs (printed line by line)
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
        "hash, the prediction hash and every metric.",
        epilog=REPRODUCE_EXIT_CODES,
        formatter_class=fmt,
    )
    settings_flags(reproduce)
    reproduce.add_argument("run", help="retraind run ID (as in `retraind status`) or MLflow run ID")


def _registry(settings: Settings) -> Any:
    from daemon.registry import MlflowRegistry

    return MlflowRegistry(settings.tracking_uri)


def _person() -> str:
    import platform

    return f"{getpass.getuser()}@{platform.node()}"


def models(settings: Settings, args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.promotion import models_json, render_models

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
    from daemon.app import new_run_id, real_ports
    from daemon.progress import ConsoleReporter, LogReporter
    from daemon.reproduce import MlflowRunSource, reproduce_run
    from daemon.snapshot import scan

    run = MlflowRunSource(settings.tracking_uri).recorded_run(args.run)
    reporter = LogReporter() if json_lines else ConsoleReporter()
    run_id = "reproduce-" + new_run_id()
    verdict, _ = reproduce_run(
        settings, run, lambda store: scan(settings, store), real_ports(settings), reporter, run_id
    )
    fields: dict[str, Any] = {
        "run": run.retraind_run_id,
        "mlflow_run_id": run.mlflow_run_id,
        "commit": run.tags["retraind.git.commit"],
        "identical": verdict.identical,
        "differences": list(verdict.differences),
        "notes": list(verdict.notes),
        "equal": list(verdict.compared),
    }
    if json_lines:
        print(json.dumps(fields))
    else:
        head = "identical" if verdict.identical else "differs"
        print(f"{head}: run {run.retraind_run_id} rebuilt from commit {fields['commit'][:12]}")
        for line in (*verdict.compared, *verdict.differences, *(f"note: {n}" for n in verdict.notes)):
            print(f"  {line}")
    return EXIT_OK if verdict.identical else EXIT_CRASH


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace, bool], int]] = {
    "models": models,
    "promote": promote,
    "rollback": rollback,
    "reproduce": reproduce,
}
