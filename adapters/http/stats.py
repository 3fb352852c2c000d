"""Request counters since start, as the Context Services status document reports them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from weakref import WeakKeyDictionary

from servermode.core import ModeController
from servermode.core.records import utc_now

__all__ = ["RequestStats", "stats_for"]


class RequestStats:
    """Requests seen, and answers by class, since the service started.

    Updated by the gate middleware from one event loop; reads are plain attribute reads.
    """

    __slots__ = ("_last_request", "client_errors", "requests", "server_errors", "started")

    def __init__(self) -> None:
        self.started: datetime = utc_now()
        self._last_request: float | None = None
        self.requests = 0
        self.client_errors = 0
        self.server_errors = 0

    def request(self) -> None:
        self.requests += 1
        # A POSIX timestamp, made a datetime only when read: this runs on every request,
        # and datetime.now(UTC) costs several times time.time().
        self._last_request = time.time()

    @property
    def last_request_timestamp(self) -> float | None:
        """When the last request arrived, as a POSIX timestamp; None before the first."""
        return self._last_request

    @property
    def last_request(self) -> datetime | None:
        """When the last request arrived (UTC), None before the first."""
        at = self._last_request
        return None if at is None else datetime.fromtimestamp(at, UTC)

    def response(self, status: int) -> None:
        if 400 <= status < 500:
            self.client_errors += 1
        elif status >= 500:
            self.server_errors += 1


_BY_CONTROLLER: WeakKeyDictionary[ModeController, RequestStats] = WeakKeyDictionary()


def stats_for(controller: ModeController) -> RequestStats:
    """The counters of the service that ``controller`` gates, shared by middleware and routes."""
    stats = _BY_CONTROLLER.get(controller)
    if stats is None:
        stats = _BY_CONTROLLER[controller] = RequestStats()
    return stats
