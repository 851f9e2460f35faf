"""structlog, configured once: JSON lines for journald and pipes, a readable console on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure_logging(*, json_lines: bool, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries (MLflow, alembic) log through the standard library: keep them quiet.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
