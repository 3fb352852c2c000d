"""A Hypothesis state machine that interleaves admissions, releases and mode changes.

It drives a real ModeController on an event loop it steps by hand, keeps its own model of
what is in flight, and checks after every step that no request was admitted in a state that
refuses it, that the counters match the model and are never negative, and that each drain
ended exactly when its requests ended or its deadline passed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from servermode.core import (
    CONTEXT_SERVICES,
    ModeChangeFailed,
    ModeController,
    Outcome,
    Refused,
    State,
    SwitchInProgress,
    Ticket,
    TransitionRecord,
)

DRAIN_TIMEOUT = 0.05
CATEGORIES = st.sampled_from(CONTEXT_SERVICES.categories)


class ControllerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.held: list[Ticket] = []
        self.switch: asyncio.Task[TransitionRecord] | None = None
        self.deadline = 0.0

    @initialize(timeout_policy=st.sampled_from(["force", "rollback"]))
    def start(self, timeout_policy: str) -> None:
        self.controller = ModeController(drain_timeout=DRAIN_TIMEOUT, timeout_policy=timeout_policy)
        self.loop.run_until_complete(self.controller.start())

    def teardown(self) -> None:
        for ticket in self.held:
            ticket.release()
        if self.switch is not None:
            self.loop.run_until_complete(asyncio.wait([self.switch]))
        self.loop.close()

    # -- helpers ---------------------------------------------------------------------------

    def settle(self) -> None:
        """Run the loop until the switch under way has reacted to what just happened."""
        for _ in range(10):
            self.loop.run_until_complete(asyncio.sleep(0))

    def counted_held(self) -> int:
        return sum(1 for t in self.held if not t.released)

    def outgoing_held(self) -> int:
        """Held requests the drain under way waits for: those its target refuses."""
        outgoing = CONTEXT_SERVICES.outgoing(self.controller.state)
        return sum(1 for t in self.held if not t.released and t.category in outgoing)

    def draining(self) -> bool:
        return self.switch is not None and not self.switch.done()

    # -- rules -----------------------------------------------------------------------------

    @rule(category=CATEGORIES)
    def admit(self, category: str) -> None:
        state = self.controller.state
        try:
            ticket = self.controller.admit(category)
        except Refused as refused:
            assert not CONTEXT_SERVICES.admits(state, category)
            assert refused.state is state
            assert refused.retry_after >= 1
            return
        assert CONTEXT_SERVICES.admits(state, category), f"{category} admitted in {state}"
        if CONTEXT_SERVICES.rules[category].counted:
            self.held.append(ticket)

    @precondition(lambda self: self.held)
    @rule(data=st.data(), twice=st.booleans())
    def release(self, data: Any, twice: bool) -> None:
        ticket = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        ticket.release()
        if twice:
            ticket.release()
        self.settle()

    @rule(mode=st.sampled_from(["production", "maintenance", "MAINTENANCE"]))
    def request_mode(self, mode: str) -> None:
        if self.draining():
            with pytest.raises(SwitchInProgress):
                self.loop.run_until_complete(self.controller.set_mode(mode))
            return
        self.finish_switch()
        before = self.controller.state
        self.switch = self.loop.create_task(self.controller.set_mode(mode))
        self.deadline = time.monotonic() + DRAIN_TIMEOUT
        self.settle()
        if before.value == mode.lower():
            assert self.switch.done() and self.switch.result().outcome is Outcome.NOOP

    @precondition(lambda self: self.draining())
    @rule()
    def deadline_passes(self) -> None:
        assert self.switch is not None
        self.loop.run_until_complete(asyncio.wait([self.switch], timeout=5))
        assert self.switch.done()

    @precondition(lambda self: self.draining())
    @rule()
    def cancel(self) -> None:
        record = self.loop.run_until_complete(self.controller.cancel(actor="hypothesis"))
        assert record is not None

    # -- invariants ------------------------------------------------------------------------

    def finish_switch(self) -> None:
        """Check how a finished switch ended against the model, then forget it."""
        if self.switch is None or not self.switch.done():
            return
        try:
            record = self.switch.result()
        except ModeChangeFailed as failed:
            record = failed.record
        self.switch = None
        if record.outcome is Outcome.COMPLETED:
            assert sum(record.stragglers.values()) == 0
        elif record.outcome in (Outcome.FORCED, Outcome.ROLLED_BACK):
            assert time.monotonic() >= self.deadline, "timed out before its deadline"
            assert sum(record.stragglers.values()) > 0
        draining = f"draining_to_{record.target_mode}"
        assert set(record.stragglers) <= set(CONTEXT_SERVICES.outgoing(State(draining)))

    @invariant()
    def counters_match_the_model(self) -> None:
        counts = self.controller.gate.in_flight()
        assert all(n >= 0 for n in counts.values())
        assert sum(counts.values()) == self.counted_held() == self.controller.gate.total_in_flight

    @invariant()
    def gate_and_machine_agree(self) -> None:
        # They move together, once a state is saved: never apart, not even mid-switch.
        assert self.controller._machine.current is self.controller.gate.state

    @invariant()
    def drain_ends_when_its_requests_end(self) -> None:
        if self.draining():
            # Still draining: requests of the outgoing kind admitted before it are still in
            # flight, or time is up and the timer has not fired yet in this hand-stepped loop.
            # Requests of a kind the target admits never hold a drain up.
            assert self.outgoing_held() > 0 or time.monotonic() >= self.deadline
            assert self.controller.state.is_draining
        self.finish_switch()


ControllerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestControllerMachine = ControllerMachine.TestCase
