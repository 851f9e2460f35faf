from __future__ import annotations

import socket
from pathlib import Path

from daemon.adapters.notify import Notifier


def test_messages_reach_a_listening_datagram_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        n = Notifier(path)
        assert n.ready("watching 2 paths")
        assert n.watchdog()
        assert listener.recv(256) == b"READY=1\nSTATUS=watching 2 paths"
        assert listener.recv(256) == b"WATCHDOG=1"


def test_without_a_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert Notifier(None).ready("x") is False
    assert Notifier(str(tmp_path / "absent.sock")).status("x") is False
