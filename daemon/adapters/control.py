"""The daemon's control socket: `retraind trigger` and `retraind status` talk to a running daemon.

A Unix stream socket in the state directory, mode 0600, and the peer's UID checked with
SO_PEERCRED: only the user running the daemon may ask. One JSON line in, one JSON line out.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.core.errors import InfrastructureError

Handler = Callable[[dict[str, Any], int], dict[str, Any]]  # (request, peer uid) -> reply
_MAX_REQUEST = 64 * 1024


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlServer:
    """Answers on its own thread, asleep in poll() until a client connects or stop() wakes it."""

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path, self.handler = path, handler
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake: tuple[int, int] | None = None  # a pipe: stop() writes, the serving thread returns

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a stale socket from a crash; we hold the daemon lock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(8)
        sock.setblocking(False)  # accept() after poll() never blocks, even if the client is gone
        self._sock, self._wake = sock, os.pipe()
        serve = (sock, self._wake[0])
        self._thread = threading.Thread(target=self._serve, args=serve, name="control", daemon=True)
        self._thread.start()

    def _serve(self, sock: socket.socket, wake: int) -> None:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(wake, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}  # no timeout: nothing to do until one of them
            if wake in ready:
                return
            try:
                conn, _ = sock.accept()
            except OSError:  # BlockingIOError: the client gave up between poll and accept
                continue
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        uid = peer_uid(conn)
        try:
            request = json.loads(conn.makefile("rb").readline(_MAX_REQUEST) or b"{}")
            if uid != os.geteuid():
                reply: dict[str, Any] = {"ok": False, "error": "only the daemon's own user may ask"}
            else:
                reply = self.handler(request, uid)
        except (ValueError, OSError) as e:
            reply = {"ok": False, "error": f"bad request: {e}"}
        with contextlib.suppress(OSError):  # the client went away: nothing to tell it
            conn.sendall(json.dumps(reply).encode() + b"\n")

    def stop(self) -> None:
        if self._wake is not None:
            os.write(self._wake[1], b"x")
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
        if self._wake is not None:
            for fd in self._wake:
                os.close(fd)
            self._wake = None
        self.path.unlink(missing_ok=True)


def request(path: Path, message: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
    """Ask the running daemon; InfrastructureError when none listens."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            sock.sendall(json.dumps(message).encode() + b"\n")
            reply: dict[str, Any] = json.loads(sock.makefile("rb").readline() or b"{}")
            return reply
    except (OSError, ValueError) as e:
        raise InfrastructureError(f"no retraind daemon answers on {path}: {e}") from e
