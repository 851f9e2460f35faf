"""`retraind install-service`: the systemd user unit of this checkout under ~/.config/systemd/user."""

from __future__ import annotations

import getpass
from pathlib import Path

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
