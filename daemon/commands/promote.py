"""`retraind promote VERSION`: make a version champion by hand, past the gate, with a reason."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.commands.common import champion_changed, command, model_flags, person, registry_of, settings_of


def add_parser(sub: Any) -> None:
    p = command(sub, "promote", main, help="make VERSION champion, gate or not")
    p.add_argument("version", help="the model version to promote, e.g. 3 or v3")
    model_flags(p)
    p.add_argument("--reason", required=True, help="why, for the promotion history")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    settings = settings_of(args)
    version = args.version.removeprefix("v")
    entry = registry_of(settings).promote(
        settings.model_name, version, person(), args.reason, mirror_stages=settings.mirror_stages
    )
    return champion_changed(settings.model_name, entry.version, entry.previous, "promote", json_lines)
