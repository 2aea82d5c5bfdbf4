"""Log lines: every record, a library's included, is one JSON object, its traceback as text."""

from __future__ import annotations

import json
import logging
import sys

import asyncpg
import structlog

from threadline.logs import stdlib_processors

RESTORE_FAILED = "Failed to restore the pool connection floor; retrying"


def formatted(record: logging.LogRecord) -> dict[str, object]:
    formatter = structlog.stdlib.ProcessorFormatter(processors=stdlib_processors(as_json=True))
    line = formatter.format(record)
    assert "\n" not in line, "one record, one line"
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_a_library_warning_with_a_traceback_is_one_json_line() -> None:
    # What asyncpg's pool logs while Postgres restarts: its exception's class has a metaclass of
    # its own, which the encoder used to refuse, printing "--- Logging error ---" instead.
    try:
        raise asyncpg.CannotConnectNowError("the database system is shutting down")
    except asyncpg.CannotConnectNowError:
        record = logging.getLogger("asyncpg.pool").makeRecord(
            "asyncpg.pool", logging.WARNING, __file__, 1, RESTORE_FAILED, (), sys.exc_info()
        )  # fmt: skip
    line = formatted(record)
    assert line["event"] == RESTORE_FAILED
    assert line["level"] == "warning"
    assert "CannotConnectNowError: the database system is shutting down" in str(line["exception"])


def test_an_extra_that_json_cannot_hold_is_written_as_its_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<opaque thing>"

    record = logging.getLogger("threadline.runs").makeRecord(
        "threadline.runs",
        logging.INFO,
        __file__,
        1,
        "run %s ended",
        ("r-1",),
        None,
        extra={"thing": Opaque()},
    )
    line = formatted(record)
    assert line["event"] == "run r-1 ended"
    assert line["thing"] == "<opaque thing>"
