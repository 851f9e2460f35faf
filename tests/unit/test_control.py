from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from daemon.control import ControlServer, request
from daemon.errors import InfrastructureError


def test_trigger_round_trip_and_socket_is_private(tmp_path: Path) -> None:
    seen: list[tuple[dict[str, Any], int]] = []

    def handler(req: dict[str, Any], uid: int) -> dict[str, Any]:
        seen.append((req, uid))
        return {"ok": True, "queued": True}

    server = ControlServer(tmp_path / "control.sock", handler)
    server.start()
    try:
        assert (tmp_path / "control.sock").stat().st_mode & 0o777 == 0o600
        assert request(tmp_path / "control.sock", {"cmd": "trigger", "who": "alice"}) == {
            "ok": True,
            "queued": True,
        }
        assert seen == [({"cmd": "trigger", "who": "alice"}, os.geteuid())]
    finally:
        server.stop()
    assert not (tmp_path / "control.sock").exists()


def test_no_daemon_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match="no retraind daemon"):
        request(tmp_path / "absent.sock", {"cmd": "status"})
