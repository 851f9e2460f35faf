"""systemd's notify protocol (READY=1, STATUS=, WATCHDOG=1, STOPPING=1): one datagram per message."""

from __future__ import annotations

import socket


class Notifier:
    """Sends to $NOTIFY_SOCKET when systemd gave us one (the config layer passes it in); else no-op."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        if address and address.startswith("@"):  # abstract namespace socket
            self.address = "\0" + address[1:]

    def send(self, **fields: str) -> bool:
        if not self.address:
            return False
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(message, self.address)
            except OSError:
                return False  # systemd gone or socket not ours: never fatal
        return True

    def ready(self, status: str) -> bool:
        return self.send(ready="1", status=status)

    def status(self, status: str) -> bool:
        return self.send(status=status)

    def watchdog(self) -> bool:
        return self.send(watchdog="1")

    def stopping(self) -> bool:
        return self.send(stopping="1")
