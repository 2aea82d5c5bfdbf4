"""How Threadline logs: one JSON object per line (or colours on a terminal), for its own records and
for every library's, with exceptions as text."""

from __future__ import annotations

import sys
from typing import Any

import msgspec
import structlog
from litestar.logging.config import (
    LoggingConfig,
    StructLoggingConfig,
    default_structlog_standard_lib_processors,
)
from litestar.plugins.structlog import StructlogConfig, StructlogPlugin
from structlog.typing import Processor

from threadline.http.errors import expected_errors

# Libraries that log every HTTP call they make at INFO (the model client's upstream requests): only
# their warnings reach the log, or each reply would add a line per upstream request.
QUIET_LOGGERS = ("httpx", "httpcore")
# Anything a record carries that JSON has no type for (an `extra` object, say) is written as its repr.
_encode = msgspec.json.Encoder(enc_hook=repr).encode


def _json(value: Any, **_: Any) -> str:
    return _encode(value).decode()


def stdlib_processors(*, as_json: bool) -> list[Processor]:
    """Litestar's chain for records of the standard `logging` module, with exceptions rendered.

    Litestar's JSON chain hands a record's `exc_info` to the encoder as it is (a tuple holding the
    exception's class), which no encoder takes: every `log.exception(...)` and every library
    warning with a traceback (asyncpg's, while Postgres restarts) became a "--- Logging error ---"
    dump on stderr instead of a log line. Here the traceback is formatted as text first.
    """
    processors = default_structlog_standard_lib_processors(as_json=as_json)
    if as_json:
        processors[-1:] = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(_json)]
    return processors


def logging_plugin() -> StructlogPlugin:
    # Request bodies and streamed chunks are users' words: `access_log` writes the request line only.
    standard_lib = LoggingConfig(
        formatters={
            "standard": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": stdlib_processors(as_json=not sys.stderr.isatty()),
            }
        },
        loggers={name: {"level": "WARNING", "propagate": True} for name in QUIET_LOGGERS},
    )
    return StructlogPlugin(
        StructlogConfig(
            structlog_logging_config=StructLoggingConfig(
                log_exceptions="always",
                disable_stack_trace=expected_errors(),
                standard_lib_logging_config=standard_lib,
            ),
            enable_middleware_logging=False,
        )
    )
