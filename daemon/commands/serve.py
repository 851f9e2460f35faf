"""`retraind serve`: the champion on 127.0.0.1, from its own image, following the alias."""

from __future__ import annotations

import argparse
import signal
from typing import Any

import structlog

from daemon.commands.common import command, settings_of
from daemon.core.errors import EXIT_OK, ConfigError


def add_parser(sub: Any) -> None:
    p = command(
        sub,
        "serve",
        main,
        help="serve the champion over HTTP from the image it was trained in; follow the alias blue-green",
    )
    p.add_argument("--model-name", help="registered model name")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: serve_port, 8080)")


def main(args: argparse.Namespace, json_lines: bool) -> int:
    from dataclasses import replace

    from daemon.adapters.notify import Notifier
    from daemon.adapters.podman import PodmanCli
    from daemon.adapters.registry import MlflowRegistry
    from daemon.adapters.serve_front import front_for
    from daemon.engine.serving import Server

    settings = settings_of(args)
    if args.port:
        settings = replace(settings, serve_port=args.port)
    front = front_for(max_body_bytes=settings.serve_max_body_bytes)
    try:
        front.start(settings.serve_addr, settings.serve_port)
    except OSError as e:
        raise ConfigError(f"cannot listen on {settings.serve_addr}:{settings.serve_port}: {e}") from e
    server = Server(settings, MlflowRegistry(settings.tracking_uri), PodmanCli(), front, front.metrics)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    log = structlog.get_logger()
    log.info("serve_started", address=server.address, model=settings.model_name)
    notifier = Notifier(settings.notify_socket)
    notifier.ready(f"serving {settings.model_name} on {server.address}")
    try:
        server.follow()
    finally:
        server.shutdown()
        log.info("serve_stopped", address=server.address)
    return EXIT_OK
