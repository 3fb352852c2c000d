"""Each instance's local history keeps the fleet-level record of every fleet switch it took
part in (issue 11): the same record as the engine's log, with each instance's outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from servermode.core import Outcome, State, TransitionRecord
from servermode.core.fleet import FleetEngineUnavailable, FleetOutcome, InMemoryFleetEngine
from servermode.core.fleet.records import FleetRecord

from .helpers import PERIOD, TIMEOUT, TTL, Clock, fleet, mode_of, rounds, settle_tasks

P, M = State.PRODUCTION, State.MAINTENANCE


def latest(records: list[TransitionRecord]) -> TransitionRecord:
    return records[0]


def test_every_instance_keeps_the_same_fleet_record_with_each_instance_outcome() -> None:
    async def scenario() -> None:
        clock = Clock()
        engine = InMemoryFleetEngine(clock)
        fl = await fleet("ABC", engine, clock)
        fl["C"].gate.admit("service")  # never released: C times out, the switch is forced
        switch = asyncio.create_task(fl["A"].member.switch("maintenance", actor="ops"))
        await settle_tasks()
        await rounds(fl.values())
        clock.advance(TIMEOUT + PERIOD)
        await rounds(fl.values(), 2)
        answered = await switch
        assert mode_of(fl.values()) == {M}
        (forced,) = [r for r in await engine.records() if r.outcome is FleetOutcome.FORCED]
        assert forced.instances == {"A": "drained", "B": "drained", "C": "timed_out"}
        expected = forced.to_dict()
        assert answered.fleet == expected
        for name, instance in fl.items():
            local = latest(instance.store.history())
            assert local.outcome is Outcome.FORCED, name
            assert local.fleet == expected, name
            assert FleetRecord.from_dict(local.fleet) == forced
        assert {latest(i.store.history()).fleet["completed_by"] for i in fl.values()} == {
            forced.completed_by
        }
        assert latest(fl["C"].store.history()).fleet["stragglers"] == {"C": {"service": 1}}
        # A local record that is no fleet switch (a noop) carries no fleet record.
        noop = await fl["B"].member.switch("maintenance")
        assert noop.outcome is Outcome.NOOP and noop.fleet == {}

    asyncio.run(scenario())


def test_an_instance_that_cannot_read_the_record_still_settles_with_what_it_knows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The log cannot be read when an instance settles: it settles all the same, its record
    naming the fleet switch (epoch, outcome) without the instances (the log has them)."""

    async def scenario() -> None:
        clock = Clock()
        engine = InMemoryFleetEngine(clock)
        fl = await fleet("ABC", engine, clock)

        async def unreadable(limit: int = 50) -> list[FleetRecord]:
            raise FleetEngineUnavailable("the log timed out")

        monkeypatch.setattr(engine, "records", unreadable)
        switch = asyncio.create_task(fl["A"].member.switch("maintenance", reason="upgrade"))
        await settle_tasks()
        await rounds(fl.values(), 2)
        await switch
        assert mode_of(fl.values()) == {M}
        monkeypatch.undo()
        (done,) = [r for r in await engine.records() if r.outcome is FleetOutcome.COMPLETED]
        for instance in fl.values():
            local = latest(instance.store.history())
            assert local.outcome is Outcome.COMPLETED and local.to_state is M
            if instance.member.instance == done.completed_by:  # it had the record in hand
                assert local.fleet == done.to_dict()
            else:
                assert local.fleet["epoch"] == done.epoch
                assert local.fleet["outcome"] == "completed"
                assert local.fleet["reason"] == "upgrade"
                assert local.fleet["instances"] == {}

    asyncio.run(scenario())


def test_a_drain_settled_after_later_switches_still_finds_its_fleet_record() -> None:
    """A stops running rounds mid-switch; the fleet completes it, and a second switch, without
    A; when A looks again it settles its old drain with the record of the switch it drained."""

    async def scenario() -> None:
        clock = Clock()
        engine = InMemoryFleetEngine(clock)
        fl = await fleet("ABC", engine, clock)
        b, c = fl["B"], fl["C"]
        first = asyncio.create_task(b.member.switch("maintenance"))
        await settle_tasks()
        await rounds(fl.values())  # A follows the drain and reports it drained
        await rounds([b, c], 2)
        await first
        clock.advance(TTL + 0.1)  # A, silent, leaves the barrier
        await rounds([b, c])
        second = asyncio.create_task(b.member.switch("production"))
        await settle_tasks()
        await rounds([b, c], 2)
        await second
        await rounds([fl["A"]])
        assert fl["A"].state is P
        records = await engine.records()
        (to_maintenance,) = [r for r in records if r.to_state is M]
        local = latest(fl["A"].store.history())
        assert local.outcome is Outcome.RECOVERED and local.target_mode.state is M
        assert local.fleet == to_maintenance.to_dict()
        assert local.fleet["instances"]["A"] == "drained"

    asyncio.run(scenario())


def test_a_catch_up_after_a_missed_switch_carries_the_fleet_record_of_that_switch() -> None:
    """A cannot reach the engine while the fleet switches without it; when the engine is back,
    A catches up (drains, then settles ``recovered``) and its record names the switch."""

    async def scenario() -> None:
        clock = Clock()
        engine = InMemoryFleetEngine(clock)
        fl = await fleet("AB", engine, clock)
        a, b = fl["A"], fl["B"]
        a_engine_down = _Unreachable(engine)
        a.member.engine = a_engine_down  # type: ignore[assignment]
        await rounds([a])  # A loses the engine, steady in production
        clock.advance(TTL + 0.1)  # and leaves the barrier
        switch = asyncio.create_task(b.member.switch("maintenance", reason="upgrade"))
        await settle_tasks()
        await rounds([b], 3)
        await switch
        a_engine_down.down = False
        await rounds([a], 2)
        assert a.state is M
        local = latest(a.store.history())
        assert local.outcome is Outcome.RECOVERED
        (switched,) = [r for r in await engine.records() if r.to_state is M]
        assert local.fleet == switched.to_dict()
        assert local.fleet["reason"] == "upgrade" and "A" not in local.fleet["instances"]
        # One that joins now follows the fleet's state the same way, and says so too.
        late = (await fleet("C", engine, clock))["C"]
        assert latest(late.store.history()).fleet == switched.to_dict()

    asyncio.run(scenario())


class _Unreachable:
    """An engine proxy that is down until told otherwise (the engine itself stays up for
    the others)."""

    def __init__(self, engine: InMemoryFleetEngine) -> None:
        self._engine = engine
        self.down = True

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._engine, name)
        if not callable(attribute) or name == "subscribe":
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise FleetEngineUnavailable("connection refused")
            return await attribute(*args, **kwargs)

        return call
