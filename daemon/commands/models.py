"""`retraind models`: the registered versions (aliases, stage, F1, gate reason) and the promotion history."""

from __future__ import annotations

import argparse
import json
from typing import Any

from daemon.commands.common import command, model_flags, registry_of, settings_of
from daemon.core.errors import EXIT_OK


def add_parser(sub: Any) -> None:
    p = command(
        sub,
        "models",
        main,
        help="registered versions (aliases, stage, F1, gate reason) and the promotion history",
    )
    model_flags(p)


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.core.promotion import models_json, render_models

    settings = settings_of(args)
    registry = registry_of(settings)
    rows, history = registry.versions(settings.model_name), registry.history(settings.model_name)
    shown = models_json(settings.model_name, rows, history)
    print(json.dumps(shown) if json_lines else render_models(settings.model_name, rows, history))
    return EXIT_OK
