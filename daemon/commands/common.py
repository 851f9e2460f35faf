"""What the commands share: the settings flags, the settings they name (checked once), the exit codes.

Every command module has `add_parser(sub)`, which registers its subcommand with `main` as the
handler, and `main(args, json_lines) -> int`, the exit code. Their heavy imports wait inside main:
`retraind --version` or `retraind trigger` load none of MLflow, pandas or the engine.
"""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from daemon.core.config import Settings
from daemon.core.errors import EXIT_OK

FORMAT = argparse.RawDescriptionHelpFormatter
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
# The flags that are settings (daemon/core/config.py), by their argparse names.
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
Main = Callable[[argparse.Namespace, bool], int]


def settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML settings file")
    p.add_argument("--repo", type=Path, help="git repository to build (default: current directory)")
    p.add_argument("--data-dir", type=Path, help="directory of CSV data files")
    p.add_argument("--state-dir", type=Path, help="run directories, journal and embedded MLflow store")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: embedded SQLite)")
    p.add_argument("--json", action="store_true", help="JSON log lines even on a terminal")


def command(
    sub: Any,
    name: str,
    main: Main,
    *,
    settings: bool = True,
    exit_codes: str = EXIT_CODES_HELP,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A subcommand whose handler is `main`, with the settings flags unless settings is False."""
    p: argparse.ArgumentParser = sub.add_parser(name, epilog=exit_codes, formatter_class=FORMAT, **kwargs)
    if settings:
        settings_flags(p)
    p.set_defaults(main=main)
    return p


def settings_of(args: argparse.Namespace, *, inputs: bool = False) -> Settings:
    """The settings the flags, the config file and the environment name, checked once: with
    inputs, also the data directory and repository a pipeline reads.

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


def registry_of(settings: Settings) -> Any:
    """The MLflow Model Registry the settings name (MLflow is imported here, not before)."""
    from daemon.adapters.registry import MlflowRegistry

    return MlflowRegistry(settings.tracking_uri, lock_uri=settings.promotion_lock_uri)


def person() -> str:
    """Who did it, for the promotion history: user@host."""
    import platform

    return f"{getpass.getuser()}@{platform.node()}"


def champion_changed(model: str, version: str, previous: str | None, action: str, json_lines: bool) -> int:
    """The log line and the sentence of a promote or rollback."""
    structlog.get_logger().info(
        "champion_changed", model=model, version=version, previous=previous, action=action, by=person()
    )
    if not json_lines:  # in JSON mode the log line above is the output
        print(f"{model} v{version} is now champion" + (f" (was v{previous})" if previous else ""))
    return EXIT_OK


def model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-name", help="registered model name")
