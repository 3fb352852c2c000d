"""Recent request rates per category, read off the gate's ever-growing arrival counters.

The gate counts every request it admits or refuses (one integer per category, under the lock
it takes anyway). A :class:`RateMeter` keeps samples of those counters, one per
``resolution`` seconds over the last ``window`` seconds, and a rate is the growth since the
oldest sample kept divided by the time it spans: nothing on a request's path reads a clock.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RateMeter", "Rates"]

Totals = Callable[[], dict[str, int]]


class Rates:
    """Requests per second per category, measured over ``window`` seconds (0: no time yet)."""

    __slots__ = ("per_second", "window")

    def __init__(self, per_second: dict[str, float], window: float) -> None:
        self.per_second = per_second
        self.window = window


class RateMeter:
    """Samples ``totals()`` to tell recent rates; :meth:`start` samples it periodically."""

    def __init__(
        self,
        totals: Totals,
        *,
        window: float = 60.0,
        resolution: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.resolution = resolution
        self._totals = totals
        self._clock = clock
        self._samples: deque[tuple[float, dict[str, int]]] = deque([(clock(), totals())])
        self._timer: asyncio.TimerHandle | None = None

    def sample(self) -> None:
        """Keep the counters as they are now; forget samples the window no longer needs."""
        now = self._clock()
        samples = self._samples
        if now - samples[-1][0] < self.resolution:
            return
        samples.append((now, self._totals()))
        # Keep one sample at least ``window`` old as the baseline, none older.
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()

    def rates(self) -> Rates:
        """Requests per second per category since the oldest sample kept (up to ``window``)."""
        self.sample()
        since, base = self._samples[0]
        now, totals = self._clock(), self._totals()
        span = now - since
        if span <= 0:
            return Rates(dict.fromkeys(totals, 0.0), 0.0)
        return Rates(
            {name: round((n - base.get(name, 0)) / span, 3) for name, n in totals.items()},
            round(span, 3),
        )

    def start(self) -> None:
        """Sample every ``resolution`` seconds on the running event loop until :meth:`stop`."""
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()

        def tick() -> None:
            self.sample()
            self._timer = loop.call_later(self.resolution, tick)

        self._timer = loop.call_later(self.resolution, tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
