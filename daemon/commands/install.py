"""`retraind install-service`: the systemd user unit of this checkout under ~/.config/systemd/user."""

from __future__ import annotations

import argparse
import getpass
import json
from pathlib import Path
from typing import Any

from daemon.commands.common import command
from daemon.core.errors import EXIT_OK

UNIT = "retraind.service"


def render_unit(template: str, project: Path) -> str:
    """The shipped unit assumes ~/retraind; point it at this checkout instead."""
    return template.replace("%h/retraind", str(project))


def install_service(project: Path, home: Path) -> tuple[Path, list[str]]:
    """Write the unit; return its path and what the user should run next."""
    template = (project / "systemd" / UNIT).read_text(encoding="utf-8")
    target = home / ".config" / "systemd" / "user" / UNIT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_unit(template, project), encoding="utf-8")
    user = getpass.getuser()
    steps = ["systemctl --user daemon-reload", "systemctl --user enable --now retraind"]
    if not (Path("/var/lib/systemd/linger") / user).exists():
        steps.append(f"sudo loginctl enable-linger {user}   # keep it running without a login session")
    steps.append("journalctl --user -u retraind -f   # follow it")
    return target, steps


def add_parser(sub: Any) -> None:
    p = command(
        sub, "install-service", main, settings=False, help="install the systemd user unit for this checkout"
    )
    p.add_argument("--json", action="store_true", help="one JSON line even on a terminal")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    project = Path(__file__).resolve().parents[2]
    target, steps = install_service(project, Path.home())
    if json_lines:
        print(json.dumps({"event": "service_installed", "unit": str(target), "next": steps}))
    else:
        print(f"installed {target}\nnext:\n" + "\n".join(f"  {step}" for step in steps))
    return EXIT_OK
