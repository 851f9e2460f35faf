"""`retraind install-service`: the systemd user unit under ~/.config/systemd/user, for this
checkout or, installed from a wheel, for this venv's retraind."""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
from pathlib import Path
from typing import Any

from daemon.commands.common import command
from daemon.core.errors import EXIT_OK

UNIT = "retraind.service"
PACKAGE = Path(__file__).resolve().parents[1]  # daemon/: a wheel carries the unit in templates/
SHIPPED = "%h/retraind"  # where the unit in systemd/ assumes a checkout with its .venv


def this_checkout() -> Path | None:
    """The checkout this retraind runs from (an editable install's too); None when installed."""
    root = PACKAGE.parent
    return root if (root / "systemd" / UNIT).is_file() and (root / "pyproject.toml").is_file() else None


def render_unit(template: str, project: Path | None, executable: Path) -> str:
    """The shipped unit, pointed at this retraind: ExecStart runs `executable`; the working
    directory is the checkout, or the home directory for an installed tool (which has no README
    of its own to name)."""
    unit = template.replace(f"{SHIPPED}/.venv/bin/retraind", str(executable))
    if project is None:
        unit = re.sub(r"(?m)^Documentation=.*\n", "", unit)
    return unit.replace(SHIPPED, str(project) if project is not None else "%h")


def install_service(
    project: Path | None, home: Path, executable: Path | None = None
) -> tuple[Path, list[str]]:
    """Write the unit (the checkout's systemd/ file, else the wheel's copy); return its path and
    what the user should run next. `executable`: this venv's retraind unless given."""
    source = project / "systemd" / UNIT if project is not None else PACKAGE / "templates" / UNIT
    template = source.read_text(encoding="utf-8")
    executable = executable or Path(sys.executable).parent / "retraind"
    target = home / ".config" / "systemd" / "user" / UNIT
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_unit(template, project, executable), encoding="utf-8")
    user = getpass.getuser()
    steps = ["systemctl --user daemon-reload", "systemctl --user enable --now retraind"]
    if not (Path("/var/lib/systemd/linger") / user).exists():
        steps.append(f"sudo loginctl enable-linger {user}   # keep it running without a login session")
    steps.append("journalctl --user -u retraind -f   # follow it")
    return target, steps


def add_parser(sub: Any) -> None:
    what = "install the systemd user unit for this checkout (or this installed retraind)"
    p = command(sub, "install-service", main, settings=False, help=what)
    p.add_argument("--json", action="store_true", help="one JSON line even on a terminal")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    target, steps = install_service(this_checkout(), Path.home())
    if json_lines:
        print(json.dumps({"event": "service_installed", "unit": str(target), "next": steps}))
    else:
        print(f"installed {target}\nnext:\n" + "\n".join(f"  {step}" for step in steps))
    return EXIT_OK
