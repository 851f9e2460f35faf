"""structlog, configured once: JSON lines for journald and pipes, a readable console on a TTY.

Everything that logs goes through one handler on one stream: retraind's own events, the standard
library loggers of MLflow, alembic, SQLAlchemy, urllib3 and watchdog, `warnings`, and uncaught
exceptions. So with JSON lines every line on stdout is one JSON object (`journalctl -o cat | jq`).
"""

from __future__ import annotations

import logging
import sys
import threading
import unicodedata
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.stdlib import ProcessorFormatter

LOGGER_NAME = "retraind"  # the standard library logger structlog's events travel through
# sd-daemon(3) priority prefixes: journald strips them and files the line at that priority, so
# `journalctl -p err` shows only errors.
_SYSLOG_PRIORITY = {"critical": 2, "error": 3, "warning": 4, "info": 6, "debug": 7}
# Libraries' levels. MLflow gives "mlflow", "sqlalchemy.engine", "alembic" and "huey" handlers of
# its own on import (writing to stderr); `adopt_library_loggers` takes them back.
LIBRARY_LEVELS = {
    "mlflow": logging.WARNING,
    "sqlalchemy.engine": logging.WARNING,
    "alembic": logging.WARNING,
    "huey": logging.WARNING,
    "urllib3": logging.ERROR,
}
_MULTILINE_KEYS = frozenset({"exception", "exc_info", "stack", "stack_info"})  # the console lays them out


def _syslog_prefix(logger: Any, method: str, rendered: Any) -> str:
    """The last processor: `rendered` is already the JSON line."""
    return f"<{_SYSLOG_PRIORITY.get(method, 6)}>{rendered}"


def escape_controls(text: str) -> str:
    """Control characters, line separators and bidi overrides as escapes (a file name with a
    newline must not split a log line): "a\\nb.csv" -> "a\\\\nb.csv"."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in ("Cc", "Zl", "Zp")
        or "\u202a" <= ch <= "\u202e"
        or "\u2066" <= ch <= "\u2069"
        else ch
        for ch in text
    )


def _escape_values(logger: Any, method: str, event_dict: Any) -> Any:
    """For the console renderer, which prints strings raw (JSON escapes them itself)."""
    return {
        k: escape_controls(v) if isinstance(v, str) and k not in _MULTILINE_KEYS else v
        for k, v in event_dict.items()
    }


class _LineHandler(logging.Handler):
    """One formatted record, one write, under the handler's lock; sys.stdout is looked up at each
    write unless a stream was given (a test's, or one that outlives a swapped sys.stdout)."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__()
        self.fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            out = self.fixed or sys.stdout
            out.write(self.format(record) + "\n")
            out.flush()
        except Exception:  # the logging module's own contract: report on stderr, never raise
            self.handleError(record)


def configure_logging(
    *, json_lines: bool, stream: TextIO | None = None, level: int = logging.INFO, syslog_prefix: bool = False
) -> None:
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    render: list[structlog.typing.Processor]
    if json_lines:
        render = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if syslog_prefix:
            render.append(_syslog_prefix)
    else:
        render = [_escape_values, structlog.dev.ConsoleRenderer()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: logging.getLogger(LOGGER_NAME),
        cache_logger_on_first_use=False,
    )
    handler = _LineHandler(stream)
    handler.setFormatter(
        ProcessorFormatter(
            processors=[ProcessorFormatter.remove_processors_meta, *render],
            foreign_pre_chain=[
                structlog.processors.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
        )
    )
    ours, root = logging.getLogger(LOGGER_NAME), logging.getLogger()
    for logger in (ours, root):
        for old in [h for h in logger.handlers if isinstance(h, _LineHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
    ours.setLevel(level)
    ours.propagate = False
    root.setLevel(logging.WARNING)
    adopt_library_loggers()
    logging.captureWarnings(False)  # let go of a showwarning captured earlier (a reconfiguration)
    logging.captureWarnings(True)  # warnings.warn -> the "py.warnings" logger -> the same handler
    if json_lines:
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_thread_crash


def adopt_library_loggers() -> None:
    """Libraries log through our handler at our levels; call again after importing MLflow."""
    for name, level in LIBRARY_LEVELS.items():
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(level)


def _log_uncaught(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None
) -> None:  # pragma: no cover - runs as the interpreter dies
    structlog.get_logger().critical("process_crashed", exc_info=(kind, value, tb))


def _log_thread_crash(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else ""
    info = (args.exc_type, args.exc_value, args.exc_traceback)
    structlog.get_logger().error("thread_crashed", thread=thread, exc_info=info)
