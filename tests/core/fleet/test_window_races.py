"""Issue 12 in a fleet, under attack: races between a window's switch and an operator, a lame
duck with the engine lost, and a member's loop while its rounds cannot reach the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from servermode.core import Mode, ModeChangeCancelled, Outcome, Refused, State
from servermode.core.controller import WINDOW_RETRY
from servermode.core.fleet import FleetState, GateNode, InMemoryFleetEngine
from servermode.core.hooks import Hooks
from servermode.core.window import Window

from .helpers import PERIOD, Clock, Instance, at, fleet, mode_of, rounds, settle_tasks, switched

T = TypeVar("T")
P, M = State.PRODUCTION, State.MAINTENANCE


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


class TestCancelRacingTheWindow:
    def test_a_cancel_that_loses_to_the_windows_start_cancels_the_switch_it_started(
        self,
    ) -> None:
        """The operator cancels a window just as its time comes; another instance starts the
        window's switch first. The cancel must not answer "nothing to cancel" and let the
        fleet go into maintenance: it cancels the switch that won."""

        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            await switched(fl, "A", "maintenance", window=Window(at(clock, 5), None))
            clock.advance(5)
            cas = engine.compare_and_set
            raced = False

            async def window_starts_first(
                expected: int | None, state: FleetState, record: Any = None
            ) -> bool:
                nonlocal raced
                if not raced:  # B's cancel is about to write: A's round gets there first
                    raced = True
                    await fl["A"].member.sync()
                return await cas(expected, state, record)

            engine.compare_and_set = window_starts_first  # type: ignore[method-assign]
            cancel = asyncio.create_task(fl["B"].member.cancel(actor="ops"))
            for _ in range(10):
                await settle_tasks()
                if cancel.done():
                    break
                await rounds(fl.values())
            ended = await cancel
            assert raced
            assert ended is not None and ended.outcome is Outcome.CANCELLED
            await rounds(fl.values(), 3)
            assert mode_of(fl.values()) == {P}
            state = await engine.load()
            assert state is not None and not state.is_draining and state.window is None

        run(scenario)


class TestLameDuckWithTheEngineLost:
    def test_an_instance_that_lost_the_engine_in_the_lame_duck_drains_at_its_end(self) -> None:
        """Every instance that reaches the engine drains once the lame duck is over; one that
        lost it must not go on admitting what the fleet is leaving (it would, forever, once
        the fleet completes without it)."""

        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock, lame_duck=5.0)
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            assert fl["B"].member.in_lame_duck()
            engine.available = False
            clock.advance(5)
            await rounds(fl.values(), 2)
            for instance in fl.values():
                assert instance.state is State.DRAINING_TO_MAINTENANCE
                with pytest.raises(Refused):
                    instance.gate.admit("profile")
            engine.available = True
            await rounds(fl.values(), 3)
            await switch
            assert mode_of(fl.values()) == {M}

        run(scenario)


class TestLoopWithTheEngineLost:
    """A round that cannot reach the engine leaves a moment it was to act on behind it: the
    loop must wait a period before the next try, not spin on a moment already past."""

    def test_a_window_due_while_lost_waits_a_period_between_tries(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("A", engine, clock)
            member = fl["A"].member
            await switched(fl, "A", "maintenance", window=Window(None, at(clock, 10)))
            engine.available = False
            clock.advance(11)
            await rounds(fl.values())
            assert member.lost is not None
            assert member._next_wait() == PERIOD

        run(scenario)

    def test_a_drain_deadline_passed_while_lost_waits_a_period_between_tries(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            held = fl["B"].gate.admit("profile")
            switch = asyncio.create_task(fl["A"].member.switch(Mode.MAINTENANCE))
            await settle_tasks()
            await rounds(fl.values())
            engine.available = False
            clock.advance(11)  # past the deadline, with nothing reported
            await rounds(fl.values())
            for instance in fl.values():
                assert instance.member.lost is not None
                assert instance.member._next_wait() == PERIOD
            engine.available = True
            held.release()
            await rounds(fl.values(), 3)
            await switch

        run(scenario)


class TestRollbackWithAWindow:
    def test_a_windows_switch_rolled_back_is_tried_again_after_a_pause_not_at_once(
        self,
    ) -> None:
        """As alone (WINDOW_RETRY): the window's switch rolled back leaves the fleet in the
        mode it was in for a few seconds before the next try; trying again in the very next
        round would keep every instance draining (refusing) back to back."""

        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock, timeout_policy="rollback")
            await switched(fl, "A", "maintenance", window=Window(at(clock, 5), at(clock, 600)))
            held = fl["B"].gate.admit("profile")  # never finishes
            clock.advance(5)
            await rounds(fl.values(), 2)
            assert mode_of(fl.values()) == {State.DRAINING_TO_MAINTENANCE}
            clock.advance(11)  # past the deadline: rolled back
            await rounds(fl.values(), 3)
            state = await engine.load()
            assert state is not None and not state.is_draining and state.mode is Mode.PRODUCTION
            assert mode_of(fl.values()) == {P}
            fl["A"].gate.admit("profile").release()  # production again, for a while
            assert all(i.member._next_wait() > 0 for i in fl.values())
            clock.advance(WINDOW_RETRY)
            await rounds(fl.values(), 2)
            state = await engine.load()
            assert state is not None and state.is_draining  # the window tries again
            held.release()

        run(scenario)


class TestHooksAfterTheLameDuck:
    def test_the_loop_waits_while_before_drain_hooks_run_past_the_lame_duck(self) -> None:
        """After the lame duck, the drain waits for the before-drain hooks (their end wakes
        the member): the loop must not spin on the lame duck's end, now past."""

        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            hooks = Hooks()
            release = asyncio.Event()

            async def before(target: Mode) -> None:
                await release.wait()  # stops consumers: takes a while

            hooks.before_drain(before)
            a = Instance("A", engine, clock, lame_duck=5.0)
            a.node = GateNode(a.gate, a.store, hooks=hooks, clock=clock)
            a.member.node = a.node
            await a.member.start()
            switch = asyncio.create_task(a.member.switch("maintenance"))
            await settle_tasks()
            await rounds([a])
            clock.advance(5)  # the lame duck is over: the hooks begin
            await rounds([a])
            assert a.state is P and a.member.lost is None
            assert a.member._next_wait() == PERIOD
            release.set()
            await settle_tasks()
            await rounds([a], 3)
            await switch
            assert a.state is M

        run(scenario)


class TestCancelFromAnInstanceOut:
    def test_an_instance_out_of_the_fleet_cancels_the_fleets_switch(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            out = asyncio.create_task(fl["A"].member.switch_instance("B", "maintenance"))
            await settle_tasks()
            await rounds(fl.values(), 2)
            await asyncio.wait_for(out, 5)
            held = fl["A"].gate.admit("profile")  # holds the fleet's switch
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            ended = await fl["B"].member.cancel(actor="ops", reason="not now")
            assert ended is not None and ended.outcome is Outcome.CANCELLED
            assert ended.actor == "ops" and fl["B"].state is State.MAINTENANCE  # still out
            await rounds(fl.values(), 2)
            with pytest.raises(ModeChangeCancelled):
                await switch
            state = await engine.load()
            assert state is not None and state.state is State.PRODUCTION
            assert fl["A"].state is State.PRODUCTION
            held.release()

        run(scenario)


class TestLoopWithARoundThatFails:
    def test_a_round_that_raises_is_tried_again_a_period_later_not_at_once(self) -> None:
        """A round can fail for other reasons than the engine (the local store down while it
        settles): the loop must not spin on a moment already past."""

        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("A", engine, clock, period=0.5, heartbeat_ttl=2.0)
            member = fl["A"].member
            await switched(fl, "A", "maintenance", window=Window(None, at(clock, 10)))
            clock.advance(11)  # the window's end is past: a round is due at once
            calls = 0

            async def failing() -> None:
                nonlocal calls
                calls += 1
                raise RuntimeError("the local store is down")

            member.sync = failing  # type: ignore[method-assign]
            member.run_in_background()
            await asyncio.sleep(0.3)  # real time: under one period
            assert calls == 1
            await member.stop()

        run(scenario)
