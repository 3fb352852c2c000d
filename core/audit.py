"""The audit trail: one structlog event per transition attempt, on logger ``servermode.audit``.

The logger is a standard-library one (:mod:`.logs`): silent until the application configures
logging. Give :class:`AuditLog` a logger of your own to send the events elsewhere.
"""

from __future__ import annotations

from typing import Any

from .logs import get_logger
from .records import TransitionRecord

__all__ = ["AUDIT_EVENT", "AUDIT_LOGGER", "AuditLog"]

AUDIT_LOGGER = "servermode.audit"
AUDIT_EVENT = "mode_transition"


class AuditLog:
    """Writes transition records as structured events; the record's fields are the event's."""

    def __init__(self, logger: Any = None) -> None:
        self._log = logger if logger is not None else get_logger(AUDIT_LOGGER)

    def emit(self, record: TransitionRecord, **extra: Any) -> None:
        fields = record.to_dict()
        fields.pop("at")  # the logging pipeline stamps its own time
        level = "warning" if fields["outcome"] in _WARN else "info"
        getattr(self._log, level)(AUDIT_EVENT, **fields, **extra)


_WARN = frozenset({"forced", "rolled_back", "failed", "refused", "recovered"})
