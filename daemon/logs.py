"""structlog, configured once: JSON lines for journald and pipes, a readable console on a TTY."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

# sd-daemon(3) priority prefixes: journald strips them and files the line at that priority, so
# `journalctl -p err` shows only errors.
_SYSLOG_PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}


def _syslog_prefix(logger: Any, method: str, rendered: Any) -> str:
    """The last processor: `rendered` is already the JSON line."""
    return f"<{_SYSLOG_PRIORITY.get(method, 6)}>{rendered}"


def configure_logging(
    *, json_lines: bool, stream: TextIO | None = None, level: int = logging.INFO, syslog_prefix: bool = False
) -> None:
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
            *([_syslog_prefix] if syslog_prefix else []),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Third-party libraries (MLflow, alembic) log through the standard library: keep them quiet.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for noisy in ("mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
