"""A local HTTP receiver for notification tests: a real server on 127.0.0.1 that records what it is
sent, and can be slow, fail, or be down (stopped, then started again on the same port)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from requests.structures import CaseInsensitiveDict


@dataclass(frozen=True)
class Received:
    path: str
    headers: CaseInsensitiveDict[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.hold = threading.Event()  # cleared: each request waits until it is set (a slow receiver)
        self.hold.set()
        self.waiting = 0  # requests being held right now
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = port
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.waiting += 1
                receiver.hold.wait(120)
                with receiver._lock:
                    receiver.waiting -= 1
                    status = receiver.status
                    if status < 300:
                        receiver.received.append(
                            Received(self.path, CaseInsensitiveDict(dict(self.headers)), body)
                        )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down: connections are refused until start() again (same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout: float = 120.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received) >= count:
                return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} requests, got {len(self.received)}: {self.received}")

    def wait_match(self, match: Callable[[Received], bool], timeout: float, what: str) -> Received:
        """The first request that matches, waiting for it (generous deadlines: CI machines are slow)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((r for r in list(self.received) if match(r)), None)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(
            f"no {what} after {timeout:.0f} s; got {[(r.path, r.json) for r in self.received]}"
        )
