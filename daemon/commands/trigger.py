"""`retraind trigger`: ask the running daemon, over its control socket, for a run."""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from daemon.commands.common import command, settings_of
from daemon.core.errors import EXIT_CRASH, EXIT_OK


def add_parser(sub: Any) -> None:
    p = command(sub, "trigger", main, help="ask the running daemon for a run")
    p.add_argument("--force", action="store_true", help="run every stage, ignoring the stage cache")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.adapters.control import request

    settings = settings_of(args)
    asked = {"cmd": "trigger", "who": getpass.getuser(), "force": args.force}
    reply = request(settings.state_dir / "control.sock", asked)
    print(json.dumps(reply))
    return EXIT_OK if reply.get("ok") else EXIT_CRASH
