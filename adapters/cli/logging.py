"""Logging for the service: structlog and the standard library (uvicorn) through one renderer.

A console renderer when the output is a terminal, JSON lines otherwise (containers, files,
CI); ``fmt`` forces one or the other.

Tracebacks never show local variables, in either format: the frames of a request hold its
headers (``Authorization`` included) and the service's settings (the tokens), and structlog's
JSON tracebacks and Rich's console tracebacks (or better-exceptions', when installed) print
them by default. The console uses the standard library's plain traceback, whatever is installed.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
from dataclasses import dataclass
from typing import Any, TextIO

import structlog
from servermode.core.audit import AUDIT_LOGGER
from structlog.tracebacks import ExceptionDictTransformer

__all__ = ["LOG_LEVELS", "TRACE", "LineBuffer", "Logging", "configure_logging"]

TRACE = 5  # uvicorn.logging.TRACE_LOG_LEVEL
#: The levels ``--log-level`` accepts, most to least verbose.
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")

# Loggers that uvicorn configures itself unless told not to: send them to the root handler.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")
# transitions logs every state callback at INFO: the audit event already says what matters.
_QUIET_LOGGERS = ("transitions",)


class LineBuffer:
    """Lines written on the event loop, flushed to ``stream`` together once per loop iteration.

    For the access log: one ``write`` system call per batch rather than one per request. Any
    other log line flushes the buffer first (see :func:`configure_logging`), so the lines keep
    their order; what a killed process had not flushed (one loop iteration's lines) is lost.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lines: list[str] = []
        self._scheduled = False
        self._lock = threading.Lock()  # other threads' log lines flush it too

    def write(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop here: write it now
            self.flush()

    def flush(self) -> None:
        with self._lock:
            self._scheduled = False
            if not self._lines:
                return
            text = "\n".join(self._lines) + "\n"
            self._lines.clear()
            if self._stream.closed:  # at exit, after a test's stream was closed
                return
            self._stream.write(text)
            self._stream.flush()


class _FlushFirst(logging.Filter):
    """Flushes the access lines before any other line is written to the same stream."""

    def __init__(self, buffer: LineBuffer) -> None:
        super().__init__()
        self._buffer = buffer

    def filter(self, record: logging.LogRecord) -> bool:
        self._buffer.flush()
        return True


@dataclass(frozen=True, slots=True)
class Logging:
    """What :func:`configure_logging` set up: where lines go, and in which format."""

    lines: LineBuffer  # for lines rendered outside the logging machinery (the access log)
    as_json: bool


def configure_logging(
    level: str = "info", fmt: str = "auto", stream: TextIO | None = None
) -> Logging:
    """Route every log line (structlog and stdlib) to ``stream`` (default stderr).

    The audit trail (logger ``servermode.audit``) is written at its own levels (info, and
    warning for the outcomes that need a look) whatever ``level`` says: ``--log-level warning``
    quiets the service, never its audit.
    """
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
    lines = LineBuffer(out)
    handler.addFilter(_FlushFirst(lines))
    atexit.register(lines.flush)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level, whatever an earlier server set
    # servermode writes its own access lines (http.access): uvicorn's access logger gets no
    # handler up the tree, or uvicorn builds every line's arguments even when it drops the line
    # (it checks hasHandlers(), not the level), whichever of the two configures logging last.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.getLogger(AUDIT_LOGGER).setLevel(logging.INFO)
    return Logging(lines, as_json)
