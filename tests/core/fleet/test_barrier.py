"""The barrier's pure functions, and the fleet records' JSON round trips."""

from __future__ import annotations

import pytest
from servermode.core import Mode, State, TimeoutPolicy
from servermode.core.fleet import (
    NOT_REPORTED,
    DrainReport,
    FleetOutcome,
    FleetRecord,
    FleetState,
    Heartbeat,
    ReportOutcome,
    barrier,
    completion,
    switch_state,
)

NOW = 1000.0
STEADY = FleetState(epoch=4, state=State.PRODUCTION, since=NOW - 50)


def drain(policy: TimeoutPolicy = TimeoutPolicy.FORCE) -> FleetState:
    return switch_state(
        STEADY,
        Mode.MAINTENANCE,
        now=NOW,
        drain_timeout=10,
        policy=policy,
        starter="A",
        members=["A", "B", "C"],
        actor="ops",
        reason="schema upgrade",
    )


def beat(name: str) -> Heartbeat:
    return Heartbeat(name, 5, State.DRAINING_TO_MAINTENANCE, {}, NOW, NOW)


def report(name: str, outcome: ReportOutcome = ReportOutcome.DRAINED, **cut: int) -> DrainReport:
    return DrainReport(name, 5, outcome, NOW + 1, stragglers=cut)


def test_a_switch_is_the_next_epoch_draining_to_the_target() -> None:
    started = drain()
    assert (started.epoch, started.state, started.target) == (
        5,
        State.DRAINING_TO_MAINTENANCE,
        Mode.MAINTENANCE,
    )
    assert started.deadline == NOW + 10 and started.members == ("A", "B", "C")
    with pytest.raises(ValueError):
        switch_state(
            started,
            Mode.PRODUCTION,
            now=NOW,
            drain_timeout=1,
            policy=TimeoutPolicy.FORCE,
            starter="A",
            members=[],
        )
    with pytest.raises(ValueError):
        switch_state(
            STEADY,
            Mode.PRODUCTION,
            now=NOW,
            drain_timeout=1,
            policy=TimeoutPolicy.FORCE,
            starter="A",
            members=[],
        )


def test_the_barrier_waits_for_live_instances_that_have_not_reported() -> None:
    where = barrier(drain(), ["A", "B", "C"], {"A": report("A")}, NOW + 1)
    assert where.waiting == {"B", "C"} and not where.complete and where.expired == set()
    with pytest.raises(ValueError):
        completion(drain(), where, now=NOW + 1, completed_by="A")


def test_reports_of_another_epoch_do_not_count() -> None:
    stale = DrainReport("B", 4, ReportOutcome.DRAINED, NOW)
    where = barrier(drain(), ["A", "B"], {"A": report("A"), "B": stale}, NOW + 1)
    assert where.waiting == {"B"}


def test_expired_instances_are_left_out_and_named() -> None:
    where = barrier(drain(), ["A", "B"], {"A": report("A"), "B": report("B")}, NOW + 1)
    assert where.complete and where.expired == {"C"}
    steady, record = completion(drain(), where, now=NOW + 2, completed_by="B")
    assert steady.epoch == 6 and steady.state is State.MAINTENANCE
    assert steady.outcome is FleetOutcome.COMPLETED
    assert record.expired == ("C",) and record.completed_by == "B" and record.starter == "A"
    assert record.instances == {"A": "drained", "B": "drained"}
    assert record.duration_ms == pytest.approx(2000)


@pytest.mark.parametrize(
    ("policy", "mode", "outcome"),
    [
        (TimeoutPolicy.FORCE, State.MAINTENANCE, FleetOutcome.FORCED),
        (TimeoutPolicy.ROLLBACK, State.PRODUCTION, FleetOutcome.ROLLED_BACK),
    ],
)
def test_the_deadline_applies_the_policy(
    policy: TimeoutPolicy, mode: State, outcome: FleetOutcome
) -> None:
    started = drain(policy)
    reports = {"A": report("A"), "B": report("B", ReportOutcome.TIMED_OUT, profile=2)}
    where = barrier(started, ["A", "B", "C"], reports, NOW + 10)
    assert where.overdue and where.complete
    steady, record = completion(started, where, now=NOW + 10, completed_by="A")
    assert steady.state is mode and steady.outcome is outcome
    assert record.instances == {"A": "drained", "B": "timed_out", "C": NOT_REPORTED}
    assert record.stragglers == {"B": {"profile": 2}}


def test_records_survive_json() -> None:
    started = drain()
    assert FleetState.from_dict(started.to_dict()) == started
    where = barrier(started, ["A"], {"A": report("A", ReportOutcome.TIMED_OUT, x=1)}, NOW + 11)
    _, record = completion(started, where, now=NOW + 11, completed_by="A")
    assert FleetRecord.from_dict(record.to_dict()) == record
    assert Heartbeat.from_dict(beat("A").to_dict()) == beat("A")
    assert DrainReport.from_dict(report("B").to_dict()) == report("B")
