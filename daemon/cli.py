"""The `retraind` command line: parse flags, configure logging, run, map the outcome to an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from daemon import __version__
from daemon.errors import EXIT_CRASH, EXIT_INTERRUPTED, RetraindError

DESCRIPTION = "Deterministic retraining in rootless Podman, recorded in MLflow."

EXIT_CODES_HELP = """exit codes:
  0   success: model trained and registered
  2   usage error
  3   the gate rejected the run (a Jest test of scripts/ or a data check failed); nothing trained
  4   a stage's program failed (e.g. training raised); see the stage log in the run directory
  5   infrastructure failed (podman, git, MLflow, disk)
  78  bad configuration or a missing tool (podman, base image, data directory)
  130 interrupted (Ctrl-C)"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retraind",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_CODES_HELP,
    )
    p.add_argument("--version", action="version", version=f"retraind {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="run the whole pipeline once",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", type=Path, help="TOML settings file")
    run.add_argument("--repo", type=Path, help="git repository to build (default: current directory)")
    run.add_argument("--data-dir", type=Path, help="directory of CSV data files")
    run.add_argument("--state-dir", type=Path, help="run directories and the embedded MLflow store")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: embedded SQLite)")
    run.add_argument("--experiment", help="MLflow experiment name")
    run.add_argument("--model-name", help="registered model name")
    run.add_argument("--trigger", choices=["manual", "commit", "data", "schedule", "ci"])
    run.add_argument("--seed", type=int)
    run.add_argument(
        "--no-cache", action="store_true", default=None, help="build the image without podman's layer cache"
    )
    run.add_argument("--json", action="store_true", help="JSON log lines even on a terminal")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    json_lines = args.json or not sys.stdout.isatty()
    from daemon.logs import configure_logging

    configure_logging(json_lines=json_lines)
    log = structlog.get_logger()
    from daemon.app import new_run_id, remove_run_containers

    run_id = new_run_id()
    try:
        return _run(args, json_lines, run_id)
    except KeyboardInterrupt:
        removed = remove_run_containers(run_id)
        log.warning("run_interrupted", run_id=run_id, containers_removed=len(removed))
        return EXIT_INTERRUPTED
    except RetraindError as e:
        log.error("run_refused", error_kind=type(e).__name__, error=str(e), exit_code=e.exit_code)
        return e.exit_code
    except Exception:
        log.exception("run_crashed")
        return EXIT_CRASH


def _run(args: argparse.Namespace, json_lines: bool, run_id: str) -> int:
    from daemon.app import run_once
    from daemon.config import load_settings
    from daemon.progress import ConsoleReporter, LogReporter

    cli = {
        k: getattr(args, k)
        for k in (
            "repo",
            "data_dir",
            "state_dir",
            "tracking_uri",
            "experiment",
            "model_name",
            "trigger",
            "seed",
            "no_cache",
        )
    }
    settings = load_settings(cli, config_file=args.config)
    reporter = LogReporter() if json_lines else ConsoleReporter()
    return run_once(settings, reporter, run_id=run_id).exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
