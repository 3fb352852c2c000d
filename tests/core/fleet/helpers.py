"""A fleet in one process: members over one in-memory engine, on a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from servermode.core import CONTEXT_SERVICES, Gate, InMemoryStore, Mode, State
from servermode.core.fleet import FleetMember, GateNode, InMemoryFleetEngine

TTL = 3.0
PERIOD = 1.0
TIMEOUT = 10.0


class Clock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Instance:
    """One member with its own gate and store, as one service process has."""

    def __init__(self, name: str, engine: InMemoryFleetEngine, clock: Clock, **kw: Any) -> None:
        self.gate = Gate(CONTEXT_SERVICES, State.PRODUCTION)
        self.store = InMemoryStore()
        self.node = GateNode(self.gate, self.store, clock=clock)
        options: dict[str, Any] = {
            "heartbeat_ttl": TTL,
            "period": PERIOD,
            "drain_timeout": TIMEOUT,
            "clock": clock,
            "check_every": 1,  # every member checks the barrier at every round (see member)
            **kw,
        }
        self.member = FleetMember(engine, self.node, instance=name, **options)

    @property
    def state(self) -> State:
        return self.gate.state

    def outcomes(self) -> list[str]:
        return [str(r.outcome) for r in reversed(self.store.history())]


async def fleet(
    names: Iterable[str], engine: InMemoryFleetEngine, clock: Clock, **kw: Any
) -> dict[str, Instance]:
    instances = {name: Instance(name, engine, clock, **kw) for name in names}
    for instance in instances.values():
        await instance.member.start()
    return instances


async def rounds(instances: Iterable[Instance], n: int = 1) -> None:
    """``n`` rounds of every given member, concurrently, as their loops would run them."""
    members = list(instances)
    for _ in range(n):
        await asyncio.gather(*(i.member.sync() for i in members))
        await asyncio.sleep(0)


async def settle_tasks() -> None:
    """Let woken tasks (a switch's caller) run."""
    for _ in range(5):
        await asyncio.sleep(0)


def mode_of(instances: Iterable[Instance]) -> set[State]:
    return {i.state for i in instances}


__all__ = ["PERIOD", "TIMEOUT", "TTL", "Clock", "Instance", "Mode", "fleet", "mode_of", "rounds"]


def at(clock: Clock, seconds: float) -> datetime:
    """The instant ``seconds`` after the clock's now, as a window time."""
    return datetime.fromtimestamp(clock.now + seconds, UTC)


async def switched(fl: dict[str, Instance], name: str, mode: str, **kw: Any) -> Any:
    """Ask ``name`` for a switch and run the fleet's rounds until it answers."""
    task = asyncio.create_task(fl[name].member.switch(mode, **kw))
    for _ in range(10):
        await settle_tasks()
        if task.done():
            break
        await rounds(fl.values())
    record = await task
    await rounds(fl.values())  # the others read the end
    return record
