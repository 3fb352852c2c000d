"""The transition table and the runtime machine built from it."""

from __future__ import annotations

import pytest
from servermode.core import TRANSITIONS, ModeMachine, State, TimeoutPolicy, Trigger
from transitions import MachineError

P, M = State.PRODUCTION, State.MAINTENANCE
TO_M, TO_P = State.DRAINING_TO_MAINTENANCE, State.DRAINING_TO_PRODUCTION

# ARCHITECTURE.md's table, as (source, trigger) -> dest for each timeout policy.
EXPECTED = {
    TimeoutPolicy.FORCE: {
        (P, Trigger.START_MAINTENANCE): TO_M,
        (TO_M, Trigger.DRAINED): M,
        (TO_M, Trigger.DRAIN_TIMED_OUT): M,
        (TO_M, Trigger.CANCEL): P,
        (TO_M, Trigger.RECOVER): M,
        (M, Trigger.START_PRODUCTION): TO_P,
        (TO_P, Trigger.DRAINED): P,
        (TO_P, Trigger.DRAIN_TIMED_OUT): P,
        (TO_P, Trigger.CANCEL): M,
        (TO_P, Trigger.RECOVER): P,
    },
}
EXPECTED[TimeoutPolicy.ROLLBACK] = {
    **EXPECTED[TimeoutPolicy.FORCE],
    (TO_M, Trigger.DRAIN_TIMED_OUT): P,
    (TO_P, Trigger.DRAIN_TIMED_OUT): M,
}


@pytest.mark.parametrize("policy", list(TimeoutPolicy))
@pytest.mark.parametrize("source", list(State))
@pytest.mark.parametrize("trigger", list(Trigger))
def test_every_state_and_trigger(policy: TimeoutPolicy, source: State, trigger: Trigger) -> None:
    """Each trigger leads where the table says, and is refused where the table has no row."""
    machine = ModeMachine(source, policy)
    dest = EXPECTED[policy].get((source, trigger))
    if dest is None:
        with pytest.raises(MachineError):
            machine.fire(trigger)
        assert machine.current is source
    else:
        assert machine.fire(trigger) is dest


def test_no_implicit_transitions() -> None:
    """transitions' to_<state>() shortcuts do not exist: only the table moves the machine."""
    assert not hasattr(ModeMachine(), "to_maintenance")


def test_table_covers_every_drain_exit() -> None:
    """Every draining state can end by drain, timeout, cancel and recovery."""
    for state in (TO_M, TO_P):
        triggers = {t.trigger for t in TRANSITIONS if t.source is state}
        assert triggers == {
            Trigger.DRAINED,
            Trigger.DRAIN_TIMED_OUT,
            Trigger.CANCEL,
            Trigger.RECOVER,
        }
