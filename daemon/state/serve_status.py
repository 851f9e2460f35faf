"""What `retraind serve` last said about itself (state_dir/serve/status.json), for `retraind status`."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

STATUS = Path("serve") / "status.json"


@dataclass(frozen=True)
class ServeStatus:
    serving: str | None  # the version answering now
    address: str
    pid: int
    last_failure: str | None = None  # why the last version it tried was not switched to
    failed_version: str | None = None
    shadow: str | None = None  # the challenger scoring copies (serve_shadow)
    updated_at: float = 0.0


def write_status(state_dir: Path, status: ServeStatus) -> None:
    path = state_dir / STATUS
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(status) | {"updated_at": time.time()}))
    tmp.replace(path)


def read_status(state_dir: Path) -> dict[str, Any] | None:
    """The last status written, with `up`: whether its process still runs. None: never served here."""
    try:
        found: dict[str, Any] = json.loads((state_dir / STATUS).read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(found.get("pid", 0)), 0)
        found["up"] = bool(found.get("pid"))
    except (OSError, ValueError):
        found["up"] = False
    return found
