"""The transition table and the runtime machine built from it."""

from __future__ import annotations

import pytest
from servermode.core import (
    TRANSITIONS,
    Mode,
    ModeMachine,
    Outcome,
    State,
    TimeoutPolicy,
    Transition,
    Trigger,
)
from servermode.core.machine import DrainRoute, Topology, drain_to, step
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


@pytest.mark.parametrize("policy", list(TimeoutPolicy))
@pytest.mark.parametrize("source", list(State))
@pytest.mark.parametrize("trigger", list(Trigger))
def test_step_says_where_a_trigger_leads_without_firing(
    policy: TimeoutPolicy, source: State, trigger: Trigger
) -> None:
    """The pure lookup agrees with the runtime machine, and moves nothing."""
    machine = ModeMachine(source, policy)
    row = step(source, trigger, policy)
    assert machine.current is source
    expected = EXPECTED[policy].get((source, trigger))
    assert (row.dest if row is not None else None) is expected
    if row is not None:
        assert machine.fire(trigger) is row.dest


def test_every_drain_is_read_off_the_table() -> None:
    """Each draining state's start, source and target come from the table's rows."""
    assert drain_to(Mode.MAINTENANCE) == DrainRoute(TO_M, P, M, Trigger.START_MAINTENANCE)
    assert drain_to(Mode.PRODUCTION) == DrainRoute(TO_P, M, P, Trigger.START_PRODUCTION)


def test_each_way_a_drain_ends_is_reported_as_its_row_says() -> None:
    """The outcome of a drain's end is a column of the table."""
    outcomes = {(t.trigger, t.only_under): t.outcome for t in TRANSITIONS if t.source is TO_M}
    assert outcomes == {
        (Trigger.DRAINED, None): Outcome.COMPLETED,
        (Trigger.DRAIN_TIMED_OUT, TimeoutPolicy.FORCE): Outcome.FORCED,
        (Trigger.DRAIN_TIMED_OUT, TimeoutPolicy.ROLLBACK): Outcome.ROLLED_BACK,
        (Trigger.CANCEL, None): Outcome.CANCELLED,
        (Trigger.RECOVER, None): Outcome.RECOVERED,
    }


class TestATableThatContradictsItself:
    def test_a_cancel_that_does_not_return_whence_the_drain_came_is_refused(self) -> None:
        """Deriving the topology checks the table: a cancel must lead back to the source."""
        rows = tuple(
            Transition(t.trigger, t.source, M, t.only_under, t.outcome)
            if (t.trigger, t.source) == (Trigger.CANCEL, TO_M)
            else t
            for t in TRANSITIONS
        )
        with pytest.raises(ValueError, match="cancel"):
            Topology(rows)

    def test_two_rows_for_one_trigger_under_one_policy_are_refused(self) -> None:
        """A trigger leads to one state from each source under each policy."""
        rows = (*TRANSITIONS, Transition(Trigger.DRAINED, TO_M, P, outcome=Outcome.COMPLETED))
        with pytest.raises(ValueError, match="drained"):
            Topology(rows)
