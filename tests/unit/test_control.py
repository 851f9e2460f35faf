from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from daemon.adapters.control import ControlServer, request
from daemon.core.errors import InfrastructureError
from tests.threadwait import needs_proc_syscall, sleeps_until_woken


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


@needs_proc_syscall
def test_the_control_thread_sleeps_until_a_client_connects(tmp_path: Path) -> None:
    """It woke twice a second (accept with a 0.5 s timeout); now it waits in poll() with none, and
    still answers, and stop() still ends it at once."""
    server = ControlServer(tmp_path / "control.sock", lambda req, uid: {"ok": True})
    server.start()
    try:
        assert server._thread is not None
        assert sleeps_until_woken(server._thread)
        assert request(tmp_path / "control.sock", {"cmd": "status"}) == {"ok": True}
        assert sleeps_until_woken(server._thread)
    finally:
        server.stop()
    server._thread.join(5)
    assert not server._thread.is_alive()
