"""The fleet logic against the in-memory engine: epochs, the barrier, who completes, losing
the engine, re-seeding. Each test moves the clock and runs the members' rounds by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from servermode.core import (
    ModeChangeCancelled,
    ModeChangeRolledBack,
    Outcome,
    Refused,
    State,
    SwitchInProgress,
    TransitionRecord,
)
from servermode.core.fleet import (
    NOT_REPORTED,
    FleetEngineUnavailable,
    FleetOutcome,
    InMemoryFleetEngine,
    NoSuchInstance,
)

from .helpers import PERIOD, TIMEOUT, TTL, Clock, fleet, mode_of, rounds, settle_tasks

T = TypeVar("T")
P, M = State.PRODUCTION, State.MAINTENANCE
TO_M = State.DRAINING_TO_MAINTENANCE


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


class TestJoining:
    def test_the_first_instance_seeds_the_fleet_once(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            state = await engine.load()
            assert state is not None and state.epoch == 1 and state.state is P
            records = await engine.records()
            assert [(r.outcome, r.completed_by) for r in records] == [
                (FleetOutcome.INITIALIZED, "A")
            ]
            assert mode_of(fl.values()) == {P}
            assert {b.instance for b in await engine.members()} == {"A", "B", "C"}

        run(scenario)

    def test_a_seed_uses_the_initial_mode(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("A", engine, clock, initial_mode="maintenance")
            assert fl["A"].state is M

        run(scenario)

    def test_an_instance_started_during_maintenance_is_in_maintenance_before_any_request(
        self,
    ) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            await switch
            late = (await fleet("C", engine, clock))["C"]  # its gate starts in production
            assert late.state is M
            with pytest.raises(Refused):
                late.gate.admit("profile")
            late.gate.admit("schema").release()
            assert late.outcomes() == ["recovered"]

        run(scenario)

    def test_an_instance_that_cannot_reach_the_engine_does_not_start(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            engine.available = False
            with pytest.raises(FleetEngineUnavailable):
                await fleet("A", engine, clock)

        run(scenario)


class TestBarrier:
    def test_the_switch_answers_only_once_every_instance_drained(self) -> None:
        """A slow request on B holds A's switch; all three refuse meanwhile; then all switch."""

        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            slow = fl["B"].gate.admit("profile")
            switch = asyncio.create_task(fl["A"].member.switch("maintenance", actor="ops"))
            await settle_tasks()
            for _ in range(5):
                await rounds(fl.values())
                await settle_tasks()
                clock.advance(1)
                assert not switch.done()
                assert mode_of(fl.values()) == {TO_M}
                for instance in fl.values():
                    for category in ("profile", "schema"):
                        with pytest.raises(Refused):
                            instance.gate.admit(category)
            await fl["C"].member.refresh_members()  # as the status route does
            assert fl["C"].member.view()["not_drained"] == ["B"]
            slow.release()
            await rounds(fl.values())
            await settle_tasks()
            record = await switch
            assert record.outcome is Outcome.COMPLETED and record.to_state is M
            assert record.actor == "ops"
            await rounds(fl.values())
            assert mode_of(fl.values()) == {M}
            state = await engine.load()
            assert state is not None and state.state is M and state.epoch == 3
            switches = [
                r for r in await engine.records() if r.outcome is not FleetOutcome.INITIALIZED
            ]
            assert len(switches) == 1
            assert switches[0].instances == {"A": "drained", "B": "drained", "C": "drained"}
            assert switches[0].expired == ()
            for instance in fl.values():
                assert instance.outcomes()[-1] == "completed"

        run(scenario)

    def test_the_deadline_forces_the_fleet_and_names_what_was_cut(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            fl["C"].gate.admit("service")  # never released
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            clock.advance(TIMEOUT + PERIOD)
            await rounds(fl.values(), 2)
            record = await switch
            assert record.outcome is Outcome.FORCED and record.to_state is M
            assert mode_of(fl.values()) == {M}
            (forced,) = [r for r in await engine.records() if r.outcome is FleetOutcome.FORCED]
            assert forced.instances == {"A": "drained", "B": "drained", "C": "timed_out"}
            assert forced.stragglers == {"C": {"service": 1}}
            local_c = fl["C"].store.history()[0]
            assert local_c.outcome is Outcome.FORCED and local_c.stragglers == {"service": 1}

        run(scenario)

    def test_rollback_at_the_deadline_returns_every_instance_to_the_old_mode(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock, timeout_policy="rollback")
            fl["B"].gate.admit("profile")
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            clock.advance(TIMEOUT + PERIOD)
            await rounds(fl.values(), 2)
            with pytest.raises(ModeChangeRolledBack):
                await switch
            assert mode_of(fl.values()) == {P}
            fl["A"].gate.admit("profile").release()
            state = await engine.load()
            assert state is not None and state.outcome is FleetOutcome.ROLLED_BACK

        run(scenario)

    def test_a_live_instance_silent_at_the_deadline_is_named_not_reported(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock, drain_timeout=2.0)
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            # C keeps beating (its heartbeat is fresh) but never runs a round that reports.
            clock.advance(2.0 + PERIOD)
            await fl["C"].member._beat()
            await rounds([fl["A"], fl["B"]], 2)
            record = await switch
            assert record.outcome is Outcome.FORCED
            (forced,) = [r for r in await engine.records() if r.outcome is FleetOutcome.FORCED]
            assert forced.instances["C"] == NOT_REPORTED

        run(scenario)


class TestNoSinglePointOfFailure:
    def test_the_starter_dies_mid_barrier_and_another_completes(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            slow = fl["B"].gate.admit("profile")
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            switch.cancel()  # A dies: no more rounds, no more heartbeats
            survivors = [fl["B"], fl["C"]]
            await rounds(survivors)
            slow.release()
            await rounds(survivors)
            state = await engine.load()
            assert state is not None and state.is_draining  # A's heartbeat still lives
            clock.advance(TTL + 0.1)
            await rounds(survivors, 2)
            state = await engine.load()
            assert state is not None and state.state is M
            (done,) = [r for r in await engine.records() if r.outcome is FleetOutcome.COMPLETED]
            assert done.starter == "A" and done.completed_by in {"B", "C"}
            assert done.expired == ("A",)
            assert done.instances == {"B": "drained", "C": "drained"}
            assert mode_of(survivors) == {M}

        run(scenario)

    def test_an_instance_killed_mid_drain_is_left_out_once_its_heartbeat_expires(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            fl["C"].gate.admit("profile")  # C dies with this request running
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds([fl["A"], fl["B"]])
            assert not switch.done()
            clock.advance(TTL + 0.1)
            await rounds([fl["A"], fl["B"]])
            await settle_tasks()
            record = await switch
            assert record.outcome is Outcome.COMPLETED
            (done,) = [r for r in await engine.records() if r.outcome is FleetOutcome.COMPLETED]
            assert done.expired == ("C",)

        run(scenario)

    def test_completions_race_and_exactly_one_record_is_written(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABCDE", engine, clock)
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())  # everyone reports ...
            await rounds(fl.values())  # ... and everyone may try to complete
            await switch
            outcomes = [r.outcome for r in await engine.records()]
            assert outcomes.count(FleetOutcome.COMPLETED) == 1
            assert mode_of(fl.values()) == {M}

        run(scenario)


class TestConcurrentSwitches:
    def test_two_switches_on_two_instances_exactly_one_wins(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)

            async def attempt(name: str) -> TransitionRecord | Exception:
                try:
                    return await fl[name].member.switch("maintenance", actor=name)
                except SwitchInProgress as exc:
                    return exc

            both = asyncio.gather(attempt("A"), attempt("B"))
            for _ in range(3):
                await settle_tasks()
                await rounds(fl.values())
            results = await both
            winners = [r for r in results if isinstance(r, TransitionRecord)]
            losers = [r for r in results if isinstance(r, SwitchInProgress)]
            assert len(winners) == 1 and len(losers) == 1
            assert losers[0].state is TO_M
            loser = fl["B" if winners[0].actor == "A" else "A"]
            assert "refused" in loser.outcomes()
            switches = [r for r in await engine.records() if r.outcome is FleetOutcome.COMPLETED]
            assert len(switches) == 1

        run(scenario)

    def test_a_switch_to_the_fleet_mode_is_a_noop(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            record = await fl["B"].member.switch("PRODUCTION")
            assert record.outcome is Outcome.NOOP
            state = await engine.load()
            assert state is not None and state.epoch == 1

        run(scenario)


class TestLosingTheEngine:
    def test_steady_instances_keep_serving_refuse_changes_and_recover(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            engine.available = False
            await rounds(fl.values())
            a = fl["A"]
            assert a.member.lost == "connection refused"
            assert a.member.view()["engine"] == "lost"
            a.gate.admit("profile").release()  # still serving under production
            with pytest.raises(FleetEngineUnavailable, match="unreachable"):
                await a.member.switch("maintenance")
            assert a.outcomes()[-1] == "refused"
            engine.available = True
            await rounds(fl.values())
            assert a.member.lost is None
            switch = asyncio.create_task(a.member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values(), 2)
            assert (await switch).outcome is Outcome.COMPLETED

        run(scenario)

    def test_lost_mid_drain_the_instance_stays_draining_then_completes(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            slow = fl["B"].gate.admit("profile")
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            engine.available = False
            slow.release()
            clock.advance(TIMEOUT + 5)  # past the deadline: nobody can complete without the engine
            await rounds(fl.values(), 3)
            assert mode_of(fl.values()) == {TO_M}  # never production, never maintenance
            assert not switch.done()
            engine.available = True
            await rounds(fl.values(), 2)
            assert mode_of(fl.values()) == {M}
            await settle_tasks()
            record = await switch
            assert record.to_state is M

        run(scenario)

    def test_an_instance_back_after_a_switch_it_missed_follows_the_fleet(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            clock.advance(TTL + 0.1)  # A stays silent until its heartbeat expires
            await rounds([fl["B"], fl["C"]])
            switch = asyncio.create_task(fl["B"].member.switch("maintenance"))
            await settle_tasks()
            await rounds([fl["B"], fl["C"]], 2)
            await switch
            assert fl["A"].state is P
            await rounds([fl["A"]])
            assert fl["A"].state is M
            assert fl["A"].outcomes()[-1] == "recovered"

        run(scenario)


class TestReseeding:
    def test_an_emptied_engine_is_reseeded_once_and_the_fleet_keeps_its_mode(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock, initial_mode="maintenance")
            engine.wipe()
            await rounds(fl.values())
            state = await engine.load()
            assert state is not None and state.state is M and state.epoch == 1
            assert state.outcome is FleetOutcome.RESEEDED
            reseeds = [r for r in await engine.records() if r.outcome is FleetOutcome.RESEEDED]
            assert len(reseeds) == 1 and reseeds[0].completed_by in set("ABC")
            assert mode_of(fl.values()) == {M}

        run(scenario)

    def test_emptied_mid_drain_the_barrier_goes_on(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            slow = fl["C"].gate.admit("profile")
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            engine.wipe()  # reports and heartbeats gone too
            await rounds(fl.values())
            state = await engine.load()
            assert state is not None and state.state is TO_M
            slow.release()
            await rounds(fl.values(), 2)
            await settle_tasks()
            assert (await switch).outcome is Outcome.COMPLETED
            assert mode_of(fl.values()) == {M}

        run(scenario)


class TestWakeUps:
    def test_a_report_wakes_the_starter_only_and_the_others_still_complete(self) -> None:
        """With the default check_every, the barrier is the starter's; if it dies, the others
        complete it within check_every rounds once its heartbeat has expired."""

        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock, check_every=4)
            slow = fl["B"].gate.admit("profile")
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            for instance in fl.values():
                instance.member._wake.clear()
            slow.release()
            await rounds([fl["B"]])  # B reports: only the starter is woken
            assert fl["A"].member._wake.is_set()
            assert not fl["C"].member._wake.is_set()
            switch.cancel()  # A dies before it completes
            survivors = [fl["B"], fl["C"]]
            clock.advance(TTL + 0.1)
            await rounds(survivors, 4)
            state = await engine.load()
            assert state is not None and state.state is M
            assert mode_of(survivors) == {M}

        run(scenario)


class TestCancel:
    def test_any_instance_cancels_the_fleet_switch_and_every_instance_stays(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            assert await fl["B"].member.cancel() is None  # nothing to cancel
            fl["B"].gate.admit("profile")  # holds the barrier
            switch = asyncio.create_task(fl["A"].member.switch("maintenance"))
            await settle_tasks()
            await rounds(fl.values())
            cancelling = asyncio.create_task(fl["C"].member.cancel(actor="ops", reason="oops"))
            await settle_tasks()
            await rounds(fl.values())
            await settle_tasks()
            record = await cancelling
            assert record.outcome is Outcome.CANCELLED and record.to_state is P
            with pytest.raises(ModeChangeCancelled):
                await switch
            assert mode_of(fl.values()) == {P}
            (last, *_) = await engine.records()
            assert (last.outcome, last.completed_by, last.reason) == (
                FleetOutcome.CANCELLED,
                "C",
                "oops",
            )
            fl["A"].gate.admit("profile").release()  # production again, everywhere

        run(scenario)


class TestCatchingUp:
    def test_back_after_a_missed_switch_it_drains_before_it_follows(self) -> None:
        """A request of the old kind still runs: the instance refuses new ones at once, and
        enters the fleet's mode only once it ended, never with it running."""

        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            running = fl["A"].gate.admit("profile")
            clock.advance(TTL + 0.1)  # A is cut off: its heartbeat expires
            switch = asyncio.create_task(fl["B"].member.switch("maintenance"))
            await settle_tasks()
            await rounds([fl["B"]], 2)
            await switch
            await rounds([fl["A"]])  # back: the fleet is in maintenance
            assert fl["A"].state is TO_M
            with pytest.raises(Refused):
                fl["A"].gate.admit("profile")
            await rounds([fl["A"]])
            assert fl["A"].state is TO_M  # still running: still draining
            running.release()
            await rounds([fl["A"]])
            assert fl["A"].state is M
            (record, *_) = fl["A"].store.history()
            assert (record.outcome, record.stragglers) == (Outcome.RECOVERED, {})

        run(scenario)

    def test_a_request_that_never_ends_is_cut_after_the_drain_timeout(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            fl["A"].gate.admit("service")  # hangs
            clock.advance(TTL + 0.1)
            switch = asyncio.create_task(fl["B"].member.switch("maintenance"))
            await settle_tasks()
            await rounds([fl["B"]], 2)
            await switch
            await rounds([fl["A"]])
            assert fl["A"].state is TO_M
            clock.advance(TIMEOUT)
            await rounds([fl["A"]])
            assert fl["A"].state is M
            (record, *_) = fl["A"].store.history()
            assert record.stragglers == {"service": 1}

        run(scenario)


class TestOneInstanceOut:
    def test_one_instance_out_in_maintenance_while_the_fleet_stays_in_production(self) -> None:
        """Out: it drains its own profile request first; the fleet does not move; a fleet
        switch meanwhile does not wait for it; back in: it follows the fleet again."""

        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("ABC", engine, clock)
            running = fl["B"].gate.admit("profile")
            asked = asyncio.create_task(
                fl["A"].member.switch_instance("B", "maintenance", actor="ops", reason="upgrade")
            )
            await settle_tasks()
            await rounds(fl.values())
            assert fl["B"].state is TO_M and {fl["A"].state, fl["C"].state} == {P}
            assert not asked.done()
            running.release()
            await rounds(fl.values())
            record = await asyncio.wait_for(asked, 5)
            assert record.outcome is Outcome.COMPLETED and record.to_state is M
            assert "instance B out of the fleet" in (record.reason or "")
            assert fl["B"].state is M and {fl["A"].state, fl["C"].state} == {P}
            state = await engine.load()
            assert state is not None and state.state is P  # the fleet did not move
            beat = await engine.heartbeat("B")
            assert beat is not None and beat.out == "maintenance"
            # A fleet switch to maintenance and back: B is counted "out", never waited for.
            for target in ("maintenance", "production"):
                switch = asyncio.create_task(fl["C"].member.switch(target))
                await settle_tasks()
                await rounds(fl.values(), 2)
                await switch
                assert fl["B"].state is M
            (last, *_) = await engine.records()
            assert last.instances["B"] == "out"
            # Back in: the mode asked is the fleet's.
            back = asyncio.create_task(fl["C"].member.switch_instance("B", "production"))
            await settle_tasks()
            await rounds(fl.values(), 2)
            assert (await asyncio.wait_for(back, 5)).to_state is P
            assert mode_of(fl.values()) == {P}
            assert fl["B"].outcomes()[-2:] == ["completed", "completed"]

        run(scenario)

    def test_an_unknown_instance_is_refused_naming_the_live_ones(self) -> None:
        async def scenario() -> None:
            clock = Clock()
            engine = InMemoryFleetEngine(clock)
            fl = await fleet("AB", engine, clock)
            with pytest.raises(NoSuchInstance, match=r"'Z'.*live: A, B"):
                await fl["A"].member.switch_instance("Z", "maintenance")
            assert fl["A"].outcomes()[-1] == "refused"

        run(scenario)
