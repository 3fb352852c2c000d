"""Whatever ends a switch (a bad setting, a failing store, a cancelled task), the machine, the
gate, the drain and the store end up agreeing, and the next switch works."""

from __future__ import annotations

import asyncio
import math
import threading
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from servermode.core import (
    MAX_DRAIN_TIMEOUT,
    InMemoryStore,
    ModeChangeFailed,
    ModeController,
    Outcome,
    PersistedState,
    State,
    TransitionRecord,
)
from servermode.core import controller as controller_module

from .test_controller import run, started, until

pytestmark = pytest.mark.timeout(10)

T = TypeVar("T")
P, M = State.PRODUCTION, State.MAINTENANCE
TO_M = State.DRAINING_TO_MAINTENANCE


def machine_state(controller: ModeController) -> State:
    # The runtime machine is private; its agreement with the gate is what these tests are about.
    return controller._machine.current


async def assert_settled_in(controller: ModeController, state: State) -> None:
    """Machine and gate agree on ``state``, no drain is left behind, and a switch works."""
    assert controller.state is state
    assert machine_state(controller) is state
    assert controller.status().target is None
    other = "production" if state is M else "maintenance"
    record = await asyncio.wait_for(controller.set_mode(other), 2)
    assert record.outcome is Outcome.COMPLETED


class TestDrainTimeoutBounds:
    @pytest.mark.parametrize(
        "bad", [math.inf, -math.inf, math.nan, -1.0, 1e12, MAX_DRAIN_TIMEOUT + 1]
    )
    def test_absurd_drain_timeouts_are_refused_at_construction(self, bad: float) -> None:
        """Infinite, NaN, negative and beyond-a-week drain timeouts raise ValueError naming
        the bound, before anything can use them."""
        with pytest.raises(ValueError, match="drain_timeout"):
            ModeController(drain_timeout=bad)

    def test_the_bound_is_one_week_and_is_accepted(self) -> None:
        """The largest drain timeout (a week) is accepted; a drain gets its whole deadline."""
        assert MAX_DRAIN_TIMEOUT == 7 * 24 * 3600

        async def scenario() -> None:
            c = await started(drain_timeout=MAX_DRAIN_TIMEOUT)
            ticket = c.admit("profile")
            switch = asyncio.create_task(c.set_mode("maintenance"))
            await until(lambda: c.state.is_draining)
            status = c.status()
            assert status.deadline is not None and status.drain_started is not None
            assert status.deadline - status.drain_started == timedelta(weeks=1)
            ticket.release()
            assert (await switch).outcome is Outcome.COMPLETED

        run(scenario)

    def test_a_switch_that_fails_to_plan_moves_nothing(self, monkeypatch: Any) -> None:
        """If computing the drain fails (here its deadline overflows the calendar), nothing
        has moved: the mode in force stays, and the next switch works."""

        async def scenario() -> None:
            c = await started(drain_timeout=MAX_DRAIN_TIMEOUT)
            monkeypatch.setattr(controller_module, "utc_now", lambda: datetime.max)
            with pytest.raises(OverflowError):
                await c.set_mode("maintenance")
            monkeypatch.undo()
            await assert_settled_in(c, P)

        run(scenario)


def switch_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """The tasks started since ``before`` was taken, but for the current one."""
    return [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]


class TestSwitchTaskCancelledFromOutside:
    def test_cancelled_while_draining_puts_the_old_mode_back(self) -> None:
        """Cancelling the switch task itself (as a loop shutdown does) ends the drain: the old
        mode is in force in the machine, the gate and the store, the attempt is recorded as
        failed, the caller is told, and later switches are not refused."""

        async def scenario() -> None:
            store = InMemoryStore()
            c = await started(store=store, drain_timeout=5)
            ticket = c.admit("profile")
            before = asyncio.all_tasks()
            caller = asyncio.create_task(c.set_mode("maintenance", actor="ops"))
            await until(lambda: c.state is TO_M)
            tasks = [t for t in switch_tasks(before) if t is not caller]
            assert len(tasks) == 1
            tasks[0].cancel()
            with pytest.raises(ModeChangeFailed) as failed:
                await caller
            assert failed.value.record.outcome is Outcome.FAILED
            assert failed.value.record.actor == "ops"
            saved = store.load()
            assert saved is not None and saved.state is P
            assert store.history()[0].outcome is Outcome.FAILED
            c.admit("profile").release()
            ticket.release()
            await assert_settled_in(c, P)

        run(scenario)

    def test_cancelled_while_the_intent_is_saved_waits_for_that_save(self) -> None:
        """A cancellation that arrives while a blocking store saves the drain's intent lets
        that save finish, then writes the old mode back over it: nothing saved lands after."""

        class SlowIntent(InMemoryStore):
            blocking = True

            def __init__(self) -> None:
                super().__init__()
                self.entered = threading.Event()
                self.release = threading.Event()

            def save(
                self, state: PersistedState, record: TransitionRecord | None = None
            ) -> TransitionRecord | None:
                if state.state.is_draining:
                    self.entered.set()
                    self.release.wait(5)
                return super().save(state, record)

        async def scenario() -> None:
            store = SlowIntent()
            c = await started(store=store, drain_timeout=5)
            before = asyncio.all_tasks()
            caller = asyncio.create_task(c.set_mode("maintenance"))
            await asyncio.to_thread(store.entered.wait, 5)
            (task,) = (t for t in switch_tasks(before) if t is not caller)
            task.cancel()
            await asyncio.sleep(0.01)
            store.release.set()
            with pytest.raises(ModeChangeFailed):
                await caller
            saved = store.load()
            assert saved is not None and saved.state is P
            await assert_settled_in(c, P)

        run(scenario)


class NothingMovesBeforeItIsSaved(InMemoryStore):
    """A store that notes, at each save, the state the controller's gate and machine are in."""

    def __init__(self) -> None:
        super().__init__()
        self.controller: ModeController | None = None
        self.seen: list[tuple[State, State, State]] = []

    def save(
        self, state: PersistedState, record: TransitionRecord | None = None
    ) -> TransitionRecord | None:
        if self.controller is not None:
            c = self.controller
            self.seen.append((state.state, c.gate.state, machine_state(c)))
        return super().save(state, record)


def test_the_machine_and_the_gate_move_only_once_the_state_is_saved() -> None:
    """At each save of a switch, the gate and the machine are still in the state before it."""

    async def scenario() -> None:
        store = NothingMovesBeforeItIsSaved()
        c = await started(store=store, drain_timeout=5)
        store.controller = c
        ticket = c.admit("profile")
        switch = asyncio.create_task(c.set_mode("maintenance"))
        await until(lambda: c.state is TO_M)
        assert machine_state(c) is TO_M
        ticket.release()
        await switch
        assert store.seen == [(TO_M, P, P), (M, TO_M, TO_M)]
        assert (c.gate.state, machine_state(c)) == (M, M)

    run(scenario)
