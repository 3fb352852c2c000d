"""servermode's loggers: structlog events on standard-library loggers named ``servermode.*``.

A library prints nothing unasked. structlog's own default writes every event to standard
output; here each event passes through structlog's processors as configured, and ends on the
standard-library logger of the same name (``servermode.audit`` for the audit trail), under
``servermode``, which has a ``NullHandler``: nothing appears until the application configures
logging (``logging.basicConfig(level="INFO")``, or structlog with
``structlog.stdlib.LoggerFactory()``; see the README, "Embedding the core").
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["ROOT_LOGGER", "get_logger"]

ROOT_LOGGER = "servermode"

# Without a handler anywhere on its way, the standard library would print warnings to stderr
# itself ("last resort"); a NullHandler keeps the library silent until logging is configured.
logging.getLogger(ROOT_LOGGER).addHandler(logging.NullHandler())


def get_logger(name: str) -> Any:
    """A structlog logger (processors as configured, at each call) writing to ``name``."""
    return structlog.wrap_logger(logging.getLogger(name))
