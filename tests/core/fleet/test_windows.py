"""Issue 12 in a fleet: the maintenance window, the lame duck and the application's hooks are
the fleet's, not one instance's. Against the in-memory engine, on a clock the test moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from servermode.core import CONTEXT_SERVICES, Gate, InMemoryStore, Mode, Outcome, Refused, State
from servermode.core.fleet import FleetController, FleetOutcome, GateNode, InMemoryFleetEngine
from servermode.core.hooks import Hooks
from servermode.core.window import Window

from .helpers import Clock, Instance, at, fleet, mode_of, rounds, settle_tasks, switched

T = TypeVar("T")
P, M = State.PRODUCTION, State.MAINTENANCE


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


async def fleet_records(engine: InMemoryFleetEngine) -> list[tuple[FleetOutcome, str | None]]:
    """(outcome, actor) of every fleet record, oldest first."""
    return [(r.outcome, r.actor) for r in reversed(await engine.records())]


class TestWindows:
    def test_a_window_with_an_end_returns_the_whole_fleet_to_production_by_itself(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            window = Window(None, at(clock, 30), "upgrade")
            record = await switched(fl, "A", "maintenance", reason="upgrade", window=window)
            assert record.window == window.fields()
            assert mode_of(fl.values()) == {M}
            # Every instance knows the window, and its refusals count down to its end.
            assert {i.member.known.window for i in fl.values()} == {window}  # type: ignore[union-attr]
            with pytest.raises(Refused) as refused:
                fl["C"].gate.admit("profile")
            assert refused.value.retry_after in (29, 30)  # not the configured hint
            clock.advance(31)
            await rounds(fl.values(), 4)
            assert mode_of(fl.values()) == {P}
            state = await engine.load()
            assert state is not None and state.window is None
            outcomes = await fleet_records(engine)
            assert outcomes[-1] == (FleetOutcome.COMPLETED, "schedule")
            # One switch back, not one per instance.
            assert [o for o, actor in outcomes if actor == "schedule"] == [FleetOutcome.COMPLETED]
            for instance in fl.values():
                last = instance.store.history()[0]
                assert (last.outcome, last.actor, last.to_state) == (
                    Outcome.COMPLETED,
                    "schedule",
                    P,
                )

        run(scenario)

    def test_a_window_ahead_switches_nothing_then_begins_and_ends_by_itself(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            window = Window(at(clock, 20), at(clock, 50), "migration")
            record = await switched(fl, "B", "maintenance", reason="migration", window=window)
            assert record.outcome is Outcome.SCHEDULED and record.to_state is P
            await rounds(fl.values())
            assert mode_of(fl.values()) == {P}
            assert fl["A"].member.known is not None and fl["A"].member.known.window == window
            fl["A"].gate.admit("profile").release()  # still production
            clock.advance(20)
            await rounds(fl.values(), 4)
            assert mode_of(fl.values()) == {M}
            state = await engine.load()
            assert state is not None and state.window == window.begun()
            assert state.reason == "migration" and state.actor == "schedule"
            clock.advance(31)
            await rounds(fl.values(), 4)
            assert mode_of(fl.values()) == {P}
            assert [o for o, a in await fleet_records(engine) if a == "schedule"] == [
                FleetOutcome.COMPLETED,
                FleetOutcome.COMPLETED,
            ]

        run(scenario)

    def test_every_instance_sees_the_window_due_in_the_same_round_and_one_switch_is_made(
        self,
    ) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABCDE", engine, clock)
            await switched(fl, "A", "maintenance", window=Window(at(clock, 5), None))
            clock.advance(6)
            await rounds(fl.values())  # five rounds at once, each sees the window due
            state = await engine.load()
            assert state is not None and state.is_draining and state.actor == "schedule"
            await rounds(fl.values(), 3)
            assert mode_of(fl.values()) == {M}
            starts = [r for r in await engine.records() if r.actor == "schedule"]
            assert len(starts) == 1 and starts[0].outcome is FleetOutcome.COMPLETED

        run(scenario)

    def test_a_cancel_ends_the_window_and_a_manual_switch_replaces_it(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            await switched(fl, "A", "maintenance", window=Window(None, at(clock, 30)))
            ended = await fl["B"].member.cancel(actor="ops", reason="done early")
            assert ended is not None and ended.outcome is Outcome.CANCELLED
            state = await engine.load()
            assert state is not None and state.window is None and state.state is M
            clock.advance(31)
            await rounds(fl.values(), 3)
            assert mode_of(fl.values()) == {M}  # the window's end is gone with it
            # A maintenance switch asked again with an end sets one; a plain one replaces it.
            noop = await switched(fl, "B", "maintenance", window=Window(None, at(clock, 30)))
            assert noop.outcome is Outcome.NOOP and noop.window
            assert (await engine.load()).window is not None  # type: ignore[union-attr]
            await switched(fl, "A", "maintenance")
            assert (await engine.load()).window is None  # type: ignore[union-attr]
            assert (await fl["A"].member.cancel()) is None  # nothing left to cancel

        run(scenario)

    def test_a_window_that_ended_while_the_engine_was_unreachable_ends_when_it_is_back(
        self,
    ) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            await switched(fl, "A", "maintenance", window=Window(None, at(clock, 10)))
            engine.available = False
            clock.advance(11)
            await rounds(fl.values(), 2)
            assert mode_of(fl.values()) == {M}  # it keeps the last state it knew
            engine.available = True
            await rounds(fl.values(), 4)
            assert mode_of(fl.values()) == {P}

        run(scenario)


class TestLameDuck:
    def test_every_instance_admits_with_readiness_failing_then_the_fleet_drains(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock, lame_duck=5.0)
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            for instance in fl.values():
                assert instance.member.in_lame_duck()
                assert instance.state is P
                instance.gate.admit("profile").release()  # still admitted
            held = fl["B"].gate.admit("profile")  # running when the drain begins
            clock.advance(5)
            await rounds(fl.values())
            assert not any(i.member.in_lame_duck() for i in fl.values())
            assert fl["C"].state is State.DRAINING_TO_MAINTENANCE
            with pytest.raises(Refused):
                fl["C"].gate.admit("profile")
            assert not switch.done()  # B still drains its request
            held.release()
            await rounds(fl.values(), 3)
            record = await switch
            assert record.outcome is Outcome.COMPLETED and record.lame_duck == 5.0
            assert mode_of(fl.values()) == {M}

        run(scenario)

    def test_the_lame_duck_counts_in_the_deadline_and_a_switch_back_has_none(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock, lame_duck=5.0)
            task = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            state = await engine.load()
            assert state is not None and state.lame_duck_until == clock.now + 5
            assert state.deadline == clock.now + 5 + 10  # lame duck, then the drain timeout
            clock.advance(5)
            await rounds(fl.values(), 3)
            await task
            back = asyncio.create_task(fl["B"].member.switch("production"))
            await settle_tasks()
            state = await engine.load()
            assert state is not None and state.is_draining and state.lame_duck_until is None
            await rounds(fl.values(), 3)
            await back

        run(scenario)

    def test_a_cancel_in_the_lame_duck_leaves_every_instance_where_it_was(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock, lame_duck=30.0)
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            cancelled = await fl["B"].member.cancel(actor="ops")
            assert cancelled is not None and cancelled.outcome is Outcome.CANCELLED
            await rounds(fl.values(), 2)
            assert mode_of(fl.values()) == {P}
            assert not any(i.member.in_lame_duck() for i in fl.values())
            with pytest.raises(Exception, match="cancelled"):
                await switch
            for instance in fl.values():
                last = instance.store.history()[0]
                assert last.outcome is Outcome.CANCELLED and last.from_state is P
                assert last.in_flight == {}  # it never drained

        run(scenario)


class TestHooks:
    def test_each_instance_runs_its_hooks_around_the_fleet_drain(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            calls: list[tuple[str, str, Any]] = []
            release = asyncio.Event()
            fl: dict[str, Instance] = {}
            for name in "AB":
                hooks = Hooks()

                async def before(target: Mode, name: str = name) -> None:
                    calls.append((name, "before", fl[name].state))
                    await release.wait()  # stop consumers: takes a moment

                def after(record: Any, name: str = name) -> None:
                    calls.append((name, "after", record.to_state))

                hooks.before_drain(before)
                hooks.after_switch(after)
                instance = Instance(name, engine, clock)
                instance.node = GateNode(instance.gate, instance.store, hooks=hooks, clock=clock)
                instance.member.node = instance.node
                fl[name] = instance
            for instance in fl.values():
                await instance.member.start()
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            # The hooks run; until they return, the gate admits as before (no drain yet).
            assert sorted(c[:2] for c in calls) == [("A", "before"), ("B", "before")]
            assert all(state is P for *_, state in calls)
            assert mode_of(fl.values()) == {P}
            release.set()
            await settle_tasks()
            await rounds(fl.values(), 3)
            await switch
            await settle_tasks()
            assert mode_of(fl.values()) == {M}
            assert sorted(c for c in calls if c[1] == "after") == [
                ("A", "after", M),
                ("B", "after", M),
            ]

        run(scenario)

    def test_hooks_that_overrun_the_deadline_hold_the_drain_up_no_longer(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            hooks = Hooks(hook_timeout=3600)
            stuck = asyncio.Event()
            hooks.before_drain(lambda target: stuck.wait())  # type: ignore[arg-type,return-value]
            gate = Gate(CONTEXT_SERVICES, P)
            a = Instance("A", engine, clock)
            a.gate, a.node = gate, GateNode(gate, InMemoryStore(), hooks=hooks, clock=clock)
            a.member.node = a.node
            await a.member.start()
            switch = asyncio.create_task(a.member.switch("maintenance"))
            await settle_tasks()
            await rounds([a])
            assert a.state is P
            clock.advance(11)  # past the deadline (10 s)
            await rounds([a], 3)
            record = await switch
            assert record.to_state is M
            stuck.set()

        run(scenario)


class TestStatus:
    def test_the_controller_shows_the_fleets_window_lame_duck_and_reason(self) -> None:
        async def scenario() -> None:
            clock = Clock(time.time())  # the controller checks windows against the real now
            engine = InMemoryFleetEngine(clock)
            a = FleetController(engine, instance="A", lame_duck=5.0, clock=clock, period=1.0)
            b = FleetController(engine, instance="B", clock=clock, period=1.0)
            for controller in (a, b):
                await controller.start()
            window = Window(None, at(clock, 600), "upgrade")
            task = asyncio.create_task(
                a.set_mode("maintenance", until=window.until, reason="upgrade")
            )
            await settle_tasks()
            await b.fleet.sync()
            # B was not asked, and has no lame duck of its own: it shows the fleet's.
            assert b.lame_duck_until == datetime.fromtimestamp(clock.now + 5, UTC)
            assert b.status().lame_duck_until is not None and b.reason == "upgrade"
            clock.advance(5)
            for _ in range(4):
                await asyncio.gather(a.fleet.sync(), b.fleet.sync())
            await task
            assert b.lame_duck_until is None
            assert b.window == window and b.status().window == window
            for controller in (a, b):
                await controller.close()

        run(scenario)


class TestRestart:
    def test_an_instance_started_after_the_windows_end_switches_the_fleet_back(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("A", engine, clock)
            await switched(fl, "A", "maintenance", window=Window(None, at(clock, 10)))
            await fl["A"].member.stop()  # the whole fleet is down through the window's end
            clock.advance(60)
            late = await fleet("B", engine, clock)
            state = await engine.load()
            # B started the switch back while joining, before its first round.
            assert state is not None and state.target is Mode.PRODUCTION
            assert state.starter == "B" and state.actor == "schedule"
            await rounds(late.values(), 3)
            assert late["B"].state is P

        run(scenario)

    def test_a_window_ahead_costs_a_steady_round_no_engine_call(self) -> None:
        """The window is read with the fleet state: rounds waiting for it call the engine
        exactly as often as rounds without one (a load and a heartbeat)."""

        async def calls_per_round(window: Window | None) -> int:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            if window is not None:
                await switched(fl, "A", "maintenance", window=window)
            before = engine.calls
            await rounds(fl.values(), 10)
            return engine.calls - before

        async def scenario() -> None:
            plain = await calls_per_round(None)
            ahead = await calls_per_round(Window(at(Clock(), 3600), None))
            assert ahead == plain == 2 * 2 * 10

        run(scenario)

    def test_a_member_wakes_at_the_windows_time_not_a_period_after_it(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("A", engine, clock, period=30.0, heartbeat_ttl=90.0)
            member = fl["A"].member
            assert member._next_wait() == 30.0
            await switched(fl, "A", "maintenance", window=Window(None, at(clock, 4)))
            assert member._next_wait() == pytest.approx(4.0)

        run(scenario)
