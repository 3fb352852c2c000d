"""An in-memory fleet engine: for tests of the fleet logic, with a clock that tests move.

Several members given the same engine form a fleet in one process. ``available = False``
makes every call fail as a lost connection would; :meth:`wipe` empties it as a Redis restarted
without persistence would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .bypass import FleetBypass
from .engine import FleetEngineUnavailable, Wake
from .records import DrainReport, FleetRecord, FleetState, Heartbeat, InstanceOut

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
        self._out: dict[str, InstanceOut] = {}
        self._subscribers: dict[str, list[Callable[[Wake], None]]] = {}
        self._bypass: FleetBypass | None = None

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
        self._out.clear()
        self._bypass = None

    def _wake(self, what: Wake, only: str | None = None) -> None:
        for instance, wakes in self._subscribers.items():
            if only is None or instance == only:
                for wake in wakes:
                    wake(what)

    async def load(self) -> FleetState | None:
        await self._call()
        return self._state

    async def load_member(self, instance: str) -> tuple[FleetState | None, InstanceOut | None]:
        await self._call()
        return self._state, self._out.get(instance)

    async def set_out(self, instance: str, out: InstanceOut | None) -> None:
        await self._call()
        if out is None:
            self._out.pop(instance, None)
        else:
            self._out[instance] = out
        self._wake(Wake.STATE, only=instance)

    async def heartbeat(self, instance: str) -> Heartbeat | None:
        return next((b for b in await self.members() if b.instance == instance), None)

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
        self._wake(Wake.STATE)
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

    async def live(self) -> set[str]:
        return {beat.instance for beat in await self.members()}

    async def is_live(self, instance: str) -> bool:
        return instance in await self.live()

    async def counts(self, epoch: int) -> tuple[int, int]:
        await self._call()
        return len(self._beats), len(self._reports.get(epoch, {}))

    async def report(self, report: DrainReport, notify: str | None = None) -> None:
        await self._call()
        self._reports.setdefault(report.epoch, {})[report.instance] = report
        if notify is not None:
            self._wake(Wake.REPORT, only=notify)

    async def reports(self, epoch: int) -> dict[str, DrainReport]:
        await self._call()
        return dict(self._reports.get(epoch, {}))

    async def reported(self, epoch: int) -> set[str]:
        return set(await self.reports(epoch))

    async def records(self, limit: int = 50) -> list[FleetRecord]:
        await self._call()
        return list(reversed(self._records[-limit:])) if limit > 0 else []

    async def load_bypass(self) -> FleetBypass | None:
        await self._call()
        return self._bypass

    async def publish_bypass(
        self, bypass: FleetBypass, *, replace: bool = True
    ) -> FleetBypass | None:
        await self._call()
        previous = self._bypass
        if replace or previous is None:
            self._bypass = bypass
        return previous

    def subscribe(self, instance: str, wake: Callable[[Wake], None]) -> None:
        self._subscribers.setdefault(instance, []).append(wake)

    async def close(self) -> None:
        pass
