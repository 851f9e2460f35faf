"""`retraind run`: the whole pipeline once, in the foreground; its exit code says how it ended."""

from __future__ import annotations

import argparse
from typing import Any

import structlog

from daemon.commands.common import command, settings_of
from daemon.core.errors import EXIT_INFRA, EXIT_INTERRUPTED
from daemon.core.vocab import TRIGGERS


def add_parser(sub: Any) -> None:
    p = command(sub, "run", main, help="run the whole pipeline once")
    p.add_argument("--experiment", help="MLflow experiment name")
    p.add_argument("--model-name", help="registered model name")
    p.add_argument("--trigger", choices=[t for t in TRIGGERS if t != "rescan"])
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--no-cache", action="store_true", default=None, help="build the image without podman's layer cache"
    )
    p.add_argument(
        "--force", action="store_true", help="run every stage even when its inputs match an earlier success"
    )
    p.add_argument(
        "--worktree",
        action="store_true",
        default=None,
        help="build the worktree as it is, uncommitted changes included (tagged dirty; reproduce refuses it)",
    )


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from prometheus_client import CollectorRegistry

    from daemon.app import new_run_id, remove_run_containers, run_once
    from daemon.core.outcome import Fanout
    from daemon.engine.metrics import Metrics, export_oneshot
    from daemon.engine.progress import ConsoleRecorder, LogRecorder, MetricsRecorder
    from daemon.state.retention import tree_bytes

    settings = settings_of(args, inputs=True)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    shown = LogRecorder() if json_lines else ConsoleRecorder()
    run_id = new_run_id()
    log = structlog.get_logger()
    try:
        recorder = Fanout(shown, MetricsRecorder(metrics))
        outcome = run_once(settings, recorder, run_id=run_id, use_cache=not args.force)
    except KeyboardInterrupt:
        removed = remove_run_containers(settings, run_id)
        log.warning("run_interrupted", run_id=run_id, containers_removed=len(removed))
        return EXIT_INTERRUPTED
    metrics.state_bytes.set(tree_bytes(settings.state_dir))
    try:
        exported = export_oneshot(registry, settings.pushgateway_url, settings.textfile_dir)
        if exported:
            log.info("metrics_exported", run_id=run_id, to=exported)
    except OSError as e:  # metrics are not worth failing a run that trained
        log.warning("metrics_export_failed", run_id=run_id, error=str(e))
    if outcome.ok and outcome.queued:
        log.warning(
            "registration_deferred",
            run_id=run_id,
            advice="MLflow was unreachable: the model is trained and kept; the daemon or the next "
            "`retraind run` registers it",
        )
        return EXIT_INFRA
    return outcome.exit_code
