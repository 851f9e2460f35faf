"""The `retraind` command line: parse flags, configure logging, dispatch, map outcomes to exit codes."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import structlog

from daemon import __version__
from daemon.commands import base_command, model_commands
from daemon.core.errors import EXIT_CONFIG, EXIT_CRASH, EXIT_INFRA, EXIT_INTERRUPTED, EXIT_OK, RetraindError

DESCRIPTION = "Deterministic retraining in rootless Podman, recorded in MLflow."
EXIT_CODES_HELP = """exit codes:
  0   success (run: model trained and registered; watch: clean stop)
  1   crash (systemd restarts the daemon)
  2   usage error
  3   the gate rejected the run (a Jest test of scripts/ or a data check failed, or a data file was
      still being written); nothing trained
  4   a stage's program failed or ran past stage_timeout_s (its container is stopped and removed);
      see the stage log in the run directory
  5   infrastructure failed (podman, git, MLflow, disk), or no daemon answers (trigger)
  78  bad configuration or a missing tool (podman, base image, data directory)
  130 interrupted (Ctrl-C)"""
SETTING_FLAGS = (
    "repo",
    "data_dir",
    "state_dir",
    "tracking_uri",
    "experiment",
    "model_name",
    "trigger",
    "seed",
    "no_cache",
    "branch",
    "worktree",
)


def _settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML settings file")
    p.add_argument("--repo", type=Path, help="git repository to build (default: current directory)")
    p.add_argument("--data-dir", type=Path, help="directory of CSV data files")
    p.add_argument("--state-dir", type=Path, help="run directories, journal and embedded MLflow store")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: embedded SQLite)")
    p.add_argument("--json", action="store_true", help="JSON log lines even on a terminal")


def parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="retraind", description=DESCRIPTION, formatter_class=fmt, epilog=EXIT_CODES_HELP
    )
    p.add_argument("--version", action="version", version=f"retraind {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="run the whole pipeline once", epilog=EXIT_CODES_HELP, formatter_class=fmt
    )
    _settings_flags(run)
    run.add_argument("--experiment", help="MLflow experiment name")
    run.add_argument("--model-name", help="registered model name")
    run.add_argument("--trigger", choices=["manual", "commit", "data", "schedule", "ci"])
    run.add_argument("--seed", type=int)
    run.add_argument(
        "--no-cache", action="store_true", default=None, help="build the image without podman's layer cache"
    )
    run.add_argument(
        "--force", action="store_true", help="run every stage even when its inputs match an earlier success"
    )
    run.add_argument(
        "--worktree",
        action="store_true",
        default=None,
        help="build the worktree as it is, uncommitted changes included (tagged dirty; reproduce refuses it)",
    )
    watch = sub.add_parser(
        "watch",
        help="the daemon: watch the repository and data, run on changes",
        epilog=EXIT_CODES_HELP,
        formatter_class=fmt,
    )
    _settings_flags(watch)
    watch.add_argument("--branch", help="branch whose commits trigger runs (default: the checked-out one)")
    trigger = sub.add_parser("trigger", help="ask the running daemon for a run")
    _settings_flags(trigger)
    trigger.add_argument("--force", action="store_true", help="run every stage, ignoring the stage cache")
    status = sub.add_parser("status", help="the daemon, the current run, the last runs")
    _settings_flags(status)
    status.add_argument("-n", type=int, default=10, help="how many recent runs to show")
    doctor = sub.add_parser("doctor", help="check podman, inotify, linger, MLflow, disk; say how to fix")
    _settings_flags(doctor)
    gc = sub.add_parser(
        "gc",
        help="remove old run directories and data objects (keep_runs; champion, challenger and cache kept)",
    )
    _settings_flags(gc)
    gc.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    base_command.add_parser(sub, _settings_flags)
    model_commands.add_parsers(sub, fmt, _settings_flags, EXIT_CODES_HELP)
    install = sub.add_parser("install-service", help="install the systemd user unit for this checkout")
    install.add_argument("--json", action="store_true", help="one JSON line even on a terminal")
    return p


QUICK_EXIT = frozenset({"run"})  # one-shot commands that have closed everything they wrote on return


def entry() -> NoReturn:
    """The console script: main(), then, after `retraind run`, an exit without the interpreter's
    teardown. With MLflow, SQLAlchemy and pandas imported, that teardown took 0.52 s of a 7.2 s data
    drop; by the time main returns, the run has committed its journal rows, closed its files and
    exported its metrics, so only the standard streams and logging handlers are left to flush."""
    argv = sys.argv[1:]
    code = main(argv)
    if next((a for a in argv if not a.startswith("-")), None) in QUICK_EXIT:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    json_lines = args.json or not sys.stdout.isatty()
    from daemon.adapters.logs import configure_logging

    configure_logging(json_lines=json_lines)
    log = structlog.get_logger()
    try:
        commands: dict[str, Command] = {
            "run": _run,
            "watch": _watch,
            "trigger": _trigger,
            "status": _status,
            "doctor": _doctor,
            **{name: _with_settings(command) for name, command in model_commands.COMMANDS.items()},
            "install-service": _install_service,
            "gc": _gc,
            "base": lambda args, json_lines: base_command.run(_settings(args), args, json_lines),
        }
        return commands[args.command](args, json_lines)
    except KeyboardInterrupt:
        log.warning("command_interrupted", command=args.command)
        return EXIT_INTERRUPTED
    except RetraindError as e:
        log.error("run_refused", error_kind=type(e).__name__, error=str(e), exit_code=e.exit_code)
        return e.exit_code
    except Exception:
        log.exception("command_crashed", command=args.command)
        return EXIT_CRASH


def _settings(args: argparse.Namespace, *, inputs: bool = False) -> Any:
    """The settings, checked once: with inputs, the data directory and repository a pipeline reads.

    The state directory is made private here, before anything writes to it.
    """
    from daemon.adapters.statedir import secure_state
    from daemon.core.config import check_inputs, load_settings

    cli = {k: getattr(args, k, None) for k in SETTING_FLAGS}
    settings = load_settings(cli, config_file=args.config)
    if inputs:
        check_inputs(settings)
    for t in secure_state(settings.state_dir, settings.tracking_uri):
        structlog.get_logger().warning(
            "state_mode_tightened", path=str(t.path), mode_was=f"{t.mode_was:o}", mode=f"{t.mode:o}"
        )
    return settings


Command = Callable[[argparse.Namespace, bool], int]


def _with_settings(command: Callable[[Any, argparse.Namespace, bool], int]) -> Command:
    """A model command, given the settings the flags name."""

    def run(args: argparse.Namespace, json_lines: bool) -> int:
        return command(_settings(args), args, json_lines)

    return run


def _run(args: argparse.Namespace, json_lines: bool) -> int:
    from prometheus_client import CollectorRegistry

    from daemon.app import new_run_id, remove_run_containers, run_once
    from daemon.engine.metrics import Metrics, export_oneshot
    from daemon.engine.progress import ConsoleReporter, Fanout, LogReporter, MetricsReporter
    from daemon.state.retention import tree_bytes

    settings = _settings(args, inputs=True)
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    shown = LogReporter() if json_lines else ConsoleReporter()
    run_id = new_run_id()
    try:
        reporter = Fanout(shown, MetricsReporter(metrics, settings.trigger))
        outcome = run_once(settings, reporter, run_id=run_id, use_cache=not args.force)
    except KeyboardInterrupt:
        removed = remove_run_containers(run_id)
        structlog.get_logger().warning("run_interrupted", run_id=run_id, containers_removed=len(removed))
        return EXIT_INTERRUPTED
    metrics.state_bytes.set(tree_bytes(settings.state_dir))
    try:
        exported = export_oneshot(registry, settings.pushgateway_url, settings.textfile_dir)
        if exported:
            structlog.get_logger().info("metrics_exported", run_id=run_id, to=exported)
    except OSError as e:  # metrics are not worth failing a run that trained
        structlog.get_logger().warning("metrics_export_failed", run_id=run_id, error=str(e))
    if outcome.ok and not outcome.results["register"].final:  # waiting in the outbox
        structlog.get_logger().warning(
            "registration_deferred",
            run_id=run_id,
            advice="MLflow was unreachable: the model is trained and kept; the daemon or the next "
            "`retraind run` registers it",
        )
        return EXIT_INFRA
    return outcome.exit_code


def _watch(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.app import build_service, hold_daemon_lock

    settings = _settings(args, inputs=True)
    if settings.journal_stream and json_lines:
        from daemon.adapters.logs import configure_logging

        configure_logging(json_lines=True, syslog_prefix=True)
    lock = hold_daemon_lock(settings.state_dir)
    service = build_service(settings, reload=lambda: _settings(args, inputs=True))
    signal.signal(signal.SIGTERM, lambda *_: service.stop("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: service.stop("SIGINT"))
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload())
    try:
        return service.serve()
    finally:
        lock.close()


def _trigger(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.adapters.control import request

    settings = _settings(args)
    asked = {"cmd": "trigger", "who": getpass.getuser(), "force": args.force}
    reply = request(settings.state_dir / "control.sock", asked)
    print(json.dumps(reply))
    return EXIT_OK if reply.get("ok") else EXIT_CRASH


def _status(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.commands.status import collect_status, render_status

    status = collect_status(_settings(args), args.n)
    print(json.dumps(status) if json_lines else render_status(status))  # one line: jq and log lines mix
    return EXIT_OK


def _doctor(args: argparse.Namespace, json_lines: bool) -> int:
    from dataclasses import asdict

    from daemon.commands.doctor import diagnose, render

    checks = diagnose(_settings(args))
    print(json.dumps([asdict(c) for c in checks]) if json_lines else render(checks))
    return EXIT_OK if all(c.ok or c.warning_only for c in checks) else EXIT_CONFIG


def _gc(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.app import collect_garbage
    from daemon.state.journal import Journal

    settings = _settings(args)
    journal = Journal.open(settings.state_dir / "journal.db")
    try:
        done = collect_garbage(settings, journal, dry_run=args.dry_run)
    finally:
        journal.close()
    fields = {
        "dry_run": done.dry_run,
        "runs_removed": list(done.runs),
        "objects_removed": len(done.objects),
        "freed_bytes": done.freed_bytes,
        "pinned": list(done.pinned),
    }
    if json_lines:
        print(json.dumps(fields))
    else:
        verb = "would remove" if done.dry_run else "removed"
        print(
            f"{verb} {len(done.runs)} run directories and {len(done.objects)} data objects, "
            f"{done.freed_bytes / 1e6:,.1f} MB (keep_runs {settings.keep_runs}; "
            f"{len(done.pinned)} older runs kept for the champion, challenger or a pending registration)"
        )
    return EXIT_OK


def _install_service(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.commands.install import install_service

    project = Path(__file__).resolve().parent.parent
    target, steps = install_service(project, Path.home())
    if json_lines:
        print(json.dumps({"event": "service_installed", "unit": str(target), "next": steps}))
    else:
        print(f"installed {target}\nnext:\n" + "\n".join(f"  {step}" for step in steps))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
