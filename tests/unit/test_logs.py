"""Logging: with JSON lines every line on stdout is one JSON object, whoever logged it."""

from __future__ import annotations

import io
import json
import logging
import threading
import warnings
from typing import Any

import structlog

from daemon.adapters.logs import configure_logging, escape_controls

NAME = "bad\nname\x1b[2J\u202e.csv"


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # a line that is not JSON raises here


def test_libraries_warnings_and_exceptions_are_json_lines_too() -> None:
    out = io.StringIO()
    configure_logging(json_lines=True, stream=out)
    logging.getLogger("alembic.runtime.migration").warning("Context impl %s\nwith a second line", "SQLite")
    logging.getLogger("sqlalchemy.engine").error("(sqlite3.OperationalError) database is locked")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("stages are deprecated", FutureWarning, stacklevel=1)
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger().exception("command_crashed", command="run")
        logging.getLogger("mlflow.store").exception("request failed")
    structlog.get_logger().info("file_seen", file=NAME)

    alembic, sqlalchemy, warned, ours, theirs, seen = json_lines(out.getvalue())
    assert (alembic["logger"], alembic["level"]) == ("alembic.runtime.migration", "warning")
    assert alembic["event"] == "Context impl SQLite\nwith a second line"
    assert sqlalchemy["level"] == "error" and "database is locked" in sqlalchemy["event"]
    assert warned["logger"] == "py.warnings" and "FutureWarning: stages are deprecated" in warned["event"]
    assert ours["event"] == "command_crashed" and "ValueError: boom" in ours["exception"]
    assert theirs["logger"] == "mlflow.store" and "ValueError: boom" in theirs["exception"]
    assert seen["file"] == NAME and "timestamp" in seen


def test_a_crashing_thread_is_one_json_line() -> None:
    out = io.StringIO()
    configure_logging(json_lines=True, stream=out)

    def crash() -> None:
        raise RuntimeError("worker died")

    from daemon.adapters.logs import _log_thread_crash  # pytest swaps threading.excepthook around each test

    previous, threading.excepthook = threading.excepthook, _log_thread_crash
    try:
        worker = threading.Thread(target=crash, name="worker")
        worker.start()
        worker.join()
    finally:
        threading.excepthook = previous
    (line,) = json_lines(out.getvalue())
    assert line["event"] == "thread_crashed" and line["thread"] == "worker"
    assert "RuntimeError: worker died" in line["exception"]


def test_the_console_escapes_control_characters_in_values() -> None:
    out = io.StringIO()
    configure_logging(json_lines=False, stream=out)
    structlog.get_logger().warning("file_refused", file=NAME)
    logging.getLogger("alembic").warning("two\nlines")
    first, second = out.getvalue().splitlines()
    assert "bad\\nname\\x1b[2J\\u202e.csv" in first
    assert "two\\nlines" in second


def test_escape_controls_keeps_printable_text() -> None:
    assert escape_controls("données, 数据 ✓ tab\there") == "données, 数据 ✓ tab\\there"
    assert escape_controls("a\u2028b\x85c\x00") == "a\\u2028b\\x85c\\x00"
