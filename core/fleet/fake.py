"""An in-memory fleet engine: for tests of the fleet logic, with a clock that tests move.

Several members given the same engine form a fleet in one process. ``available = False``
makes every call fail as a lost connection would; :meth:`wipe` empties it as a Redis restarted
without persistence would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .engine import FleetEngineUnavailable
from .records import DrainReport, FleetRecord, FleetState, Heartbeat

__all__ = ["InMemoryFleetEngine"]


class InMemoryFleetEngine:
    def __init__(self, clock: Callable[[], float] = time.time, max_records: int = 1000) -> None:
        self.clock = clock
        self.max_records = max_records
        self.available = True
        self.calls = 0
        self._state: FleetState | None = None
        self._beats: dict[str, tuple[float, Heartbeat]] = {}
        self._reports: dict[int, dict[str, DrainReport]] = {}
        self._records: list[FleetRecord] = []
        self._subscribers: list[Callable[[], None]] = []

    async def _call(self) -> None:
        # Every call yields once, as a network round trip does: concurrent members interleave.
        await asyncio.sleep(0)
        if not self.available:
            raise FleetEngineUnavailable("connection refused")
        self.calls += 1

    def wipe(self) -> None:
        """Forget everything, as a restart without persistence does."""
        self._state = None
        self._beats.clear()
        self._reports.clear()
        self._records.clear()

    def _wake(self) -> None:
        for wake in self._subscribers:
            wake()

    async def load(self) -> FleetState | None:
        await self._call()
        return self._state

    async def compare_and_set(
        self, expected_epoch: int | None, state: FleetState, record: FleetRecord | None = None
    ) -> bool:
        await self._call()
        current = None if self._state is None else self._state.epoch
        if current != expected_epoch:
            return False
        self._state = state
        if record is not None:
            self._records.append(record)
            del self._records[: -self.max_records]
        self._wake()
        return True

    async def beat(self, heartbeat: Heartbeat, ttl: float) -> None:
        await self._call()
        self._beats[heartbeat.instance] = (self.clock() + ttl, heartbeat)

    async def leave(self, instance: str) -> None:
        await self._call()
        self._beats.pop(instance, None)

    async def members(self) -> list[Heartbeat]:
        await self._call()
        now = self.clock()
        for instance in [i for i, (expiry, _) in self._beats.items() if expiry <= now]:
            del self._beats[instance]
        return [beat for _, beat in self._beats.values()]

    async def report(self, report: DrainReport) -> None:
        await self._call()
        self._reports.setdefault(report.epoch, {})[report.instance] = report
        self._wake()

    async def reports(self, epoch: int) -> dict[str, DrainReport]:
        await self._call()
        return dict(self._reports.get(epoch, {}))

    async def records(self, limit: int = 50) -> list[FleetRecord]:
        await self._call()
        return list(reversed(self._records[-limit:])) if limit > 0 else []

    def subscribe(self, wake: Callable[[], None]) -> None:
        self._subscribers.append(wake)

    async def close(self) -> None:
        pass
