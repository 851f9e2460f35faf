"""`retraind rollback`: the champion before the current one is champion again, with a reason."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.commands.common import champion_changed, command, model_flags, person, registry_of, settings_of


def add_parser(sub: Any) -> None:
    p = command(sub, "rollback", main, help="make the champion before the current one champion again")
    model_flags(p)
    p.add_argument("--reason", required=True, help="why, for the promotion history")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    settings = settings_of(args)
    registry = registry_of(settings)
    version = registry.rollback(settings.model_name, person(), args.reason, settings.mirror_stages)
    previous = registry.history(settings.model_name)[-1].previous
    return champion_changed(settings.model_name, version, previous, "rollback", json_lines)
