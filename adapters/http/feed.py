"""The audit log that also publishes: each transition record goes to subscribers as well.

The controller emits every transition attempt (refused and no-op ones included) through the
audit log it was given. Given an :class:`AuditFeed` instead of a plain :class:`AuditLog`, it
also hands each record to the metrics and the event streams, without knowing they exist::

    feed = AuditFeed()
    controller = ModeController(audit=feed)
    monitor_for(controller, feed)            # metrics and event streams follow the feed
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servermode.core import AuditLog, TransitionRecord
from servermode.core.logs import get_logger

__all__ = ["AuditFeed", "RecordSubscriber"]

RecordSubscriber = Callable[[TransitionRecord], None]

_log = get_logger("servermode")


class AuditFeed(AuditLog):
    """An :class:`AuditLog` whose records also reach every subscriber, in emission order.

    Subscribers are called on the thread that emits (the controller's event loop) and must
    not block. One that raises is logged and skipped: the audit and the others still get
    the record.
    """

    def __init__(self, logger: Any = None) -> None:
        super().__init__(logger)
        self._subscribers: list[RecordSubscriber] = []

    def subscribe(self, subscriber: RecordSubscriber) -> Callable[[], None]:
        """Call ``subscriber(record)`` for every record from now on; returns the unsubscribe."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, record: TransitionRecord, **extra: Any) -> None:
        try:
            super().emit(record, **extra)
        finally:
            # A log pipeline that fails must not hide the record from the metrics.
            for subscriber in tuple(self._subscribers):
                try:
                    subscriber(record)
                except Exception:
                    _log.exception("audit_subscriber_failed", subscriber=repr(subscriber))
