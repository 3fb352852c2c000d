"""Logging for the service: structlog and the standard library (uvicorn) through one renderer.

A console renderer when the output is a terminal, JSON lines otherwise (containers, files,
CI); ``fmt`` forces one or the other.

Tracebacks never show local variables, in either format: the frames of a request hold its
headers (``Authorization`` included) and the service's settings (the tokens), and structlog's
JSON tracebacks and Rich's console tracebacks (or better-exceptions', when installed) print
them by default. The console uses the standard library's plain traceback, whatever is installed.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

__all__ = ["LOG_LEVELS", "TRACE", "configure_logging"]

TRACE = 5  # uvicorn.logging.TRACE_LOG_LEVEL
#: The levels ``--log-level`` accepts, most to least verbose.
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")

# Loggers that uvicorn configures itself unless told not to: send them to the root handler.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# transitions logs every state callback at INFO: the audit event already says what matters.
_QUIET_LOGGERS = ("transitions",)


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Route every log line (structlog and stdlib) to ``stream`` (default stderr)."""
    out = stream if stream is not None else sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Any] = (
        [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
        if as_json
        else [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    # uvicorn's own level below DEBUG, named only once uvicorn configures its logging itself.
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level, whatever an earlier server set
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
