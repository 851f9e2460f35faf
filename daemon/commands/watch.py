"""`retraind watch`: the daemon. One per state directory; SIGTERM stops it, SIGHUP reloads settings."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from daemon.commands.common import command, settings_of


def add_parser(sub: Any) -> None:
    p = command(sub, "watch", main, help="the daemon: watch the repository and data, run on changes")
    p.add_argument("--branch", help="branch whose commits trigger runs (default: the checked-out one)")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from daemon.app import build_service, hold_daemon_lock

    settings = settings_of(args, inputs=True)
    if settings.journal_stream and json_lines:
        from daemon.adapters.logs import configure_logging

        configure_logging(json_lines=True, syslog_prefix=True)
    lock = hold_daemon_lock(settings.state_dir)
    service = build_service(settings, reload=lambda: settings_of(args, inputs=True))
    signal.signal(signal.SIGTERM, lambda *_: service.stop("SIGTERM"))
    signal.signal(signal.SIGINT, lambda *_: service.stop("SIGINT"))
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload())
    try:
        return service.serve()
    finally:
        lock.close()
