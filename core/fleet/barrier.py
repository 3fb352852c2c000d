"""The drain barrier, as pure functions: who has reported, who holds the fleet up, and the
steady state (with its record) that completes a switch.

A switch at epoch E completes when every live instance has reported for E, or when its
deadline passes, whichever comes first. Instances that were live when it began and whose
heartbeat expired before they reported are left out, and named.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from ..machine import TimeoutPolicy
from ..modes import Mode, State
from ..window import Window
from .records import DrainReport, FleetOutcome, FleetRecord, FleetState, ReportOutcome

__all__ = [
    "COMPLETIONS",
    "NOT_REPORTED",
    "Barrier",
    "End",
    "barrier",
    "cancellation",
    "completion",
    "draining_to",
    "switch_state",
    "window_change",
]

#: The outcome named in a record for a live instance that had not reported at the deadline.
NOT_REPORTED = "not_reported"


class End(StrEnum):
    """Where a completed switch leaves the fleet."""

    TARGET = "target"  # the mode the switch asked for
    SOURCE = "source"  # the mode it was leaving


#: How a switch completes: (did anyone time out or not report by the deadline?, the switch's
#: timeout policy) -> (outcome, where the fleet ends). The barrier diagram is drawn from it.
COMPLETIONS: dict[tuple[bool, TimeoutPolicy], tuple[FleetOutcome, End]] = {
    (False, TimeoutPolicy.FORCE): (FleetOutcome.COMPLETED, End.TARGET),
    (False, TimeoutPolicy.ROLLBACK): (FleetOutcome.COMPLETED, End.TARGET),
    (True, TimeoutPolicy.FORCE): (FleetOutcome.FORCED, End.TARGET),
    (True, TimeoutPolicy.ROLLBACK): (FleetOutcome.ROLLED_BACK, End.SOURCE),
}


@dataclass(frozen=True, slots=True)
class Barrier:
    """Where the barrier of one draining fleet state stands at one instant."""

    epoch: int
    reported: Mapping[str, DrainReport]
    waiting: frozenset[str]  # live instances that have not reported yet
    expired: frozenset[str]  # live at the start, gone without a report
    overdue: bool  # the deadline has passed

    @property
    def complete(self) -> bool:
        """The switch may be completed now: nobody live is left to wait for, or no time."""
        return not self.waiting or self.overdue


def barrier(
    fleet: FleetState, live: Iterable[str], reports: Mapping[str, DrainReport], now: float
) -> Barrier:
    """Where the barrier of ``fleet`` (a draining state) stands, given the live instances."""
    if not fleet.is_draining or fleet.deadline is None:
        raise ValueError(f"epoch {fleet.epoch} is not a drain: {fleet.state}")
    live = set(live)
    reported = {i: r for i, r in reports.items() if r.epoch == fleet.epoch}
    return Barrier(
        epoch=fleet.epoch,
        reported=reported,
        waiting=frozenset(live - reported.keys()),
        expired=frozenset(set(fleet.members) - live - reported.keys()),
        overdue=now >= fleet.deadline,
    )


def draining_to(target: Mode) -> State:
    """The draining state whose target is ``target``."""
    return next(s for s in State if s.target is target)


def switch_state(
    current: FleetState,
    target: Mode,
    *,
    now: float,
    drain_timeout: float,
    policy: TimeoutPolicy,
    starter: str,
    members: Iterable[str],
    actor: str | None = None,
    reason: str | None = None,
    window: Window | None = None,
    lame_duck: float = 0.0,
) -> FleetState:
    """The draining state that starts a switch of steady ``current`` to ``target``.

    ``window`` is the one the switch brings (None: it ends the one in force); ``lame_duck``
    seconds (switches to maintenance only) come before the drain, and before its deadline.
    """
    if current.is_draining or current.mode is target:
        raise ValueError(f"no switch from {current.state} to {target}")
    lame_duck = lame_duck if target is Mode.MAINTENANCE else 0.0
    return FleetState(
        epoch=current.epoch + 1,
        state=draining_to(target),
        since=now,
        outcome=current.outcome,
        target=target,
        started=now,
        deadline=now + lame_duck + drain_timeout,
        policy=policy,
        actor=actor,
        reason=reason,
        starter=starter,
        members=tuple(sorted(set(members))),
        window=current.window,
        next_window=window,
        lame_duck_until=now + lame_duck if lame_duck > 0 else None,
    )


def completion(
    fleet: FleetState, where: Barrier, *, now: float, completed_by: str
) -> tuple[FleetState, FleetRecord]:
    """The steady state that completes ``fleet``'s switch, and its record.

    Completed when every instance counted reported drained; otherwise the deadline passed
    (someone timed out, or never reported) and the switch's policy decides: force to the
    target, or roll back to the mode being left.
    """
    if not where.complete:
        raise ValueError(f"the barrier of epoch {fleet.epoch} is still waiting: {where.waiting}")
    assert fleet.target is not None
    timed_out = bool(where.waiting) or any(
        r.outcome is ReportOutcome.TIMED_OUT for r in where.reported.values()
    )
    outcome, ends_in = COMPLETIONS[timed_out, fleet.policy]
    mode = fleet.target if ends_in is End.TARGET else fleet.mode
    # A switch that took place brings its own window (or none); one rolled back keeps the old.
    window = fleet.next_window if ends_in is End.TARGET else fleet.window
    steady = FleetState(
        epoch=fleet.epoch + 1,
        state=mode.state,
        since=now,
        outcome=outcome,
        policy=fleet.policy,
        actor=fleet.actor,
        reason=fleet.reason,
        starter=fleet.starter,
        window=window,
    )
    instances = {i: str(r.outcome) for i, r in where.reported.items()}
    instances.update(dict.fromkeys(where.waiting, NOT_REPORTED))
    record = FleetRecord(
        epoch=fleet.epoch,
        from_state=fleet.mode.state,
        to_state=steady.state,
        outcome=outcome,
        at=now,
        target=fleet.target,
        started=fleet.started,
        actor=fleet.actor,
        reason=fleet.reason,
        starter=fleet.starter,
        completed_by=completed_by,
        instances=dict(sorted(instances.items())),
        expired=tuple(sorted(where.expired)),
        stragglers={i: dict(r.stragglers) for i, r in where.reported.items() if r.stragglers},
        window=window,
    )
    return steady, record


def cancellation(
    fleet: FleetState,
    *,
    now: float,
    cancelled_by: str,
    actor: str | None = None,
    reason: str | None = None,
) -> tuple[FleetState, FleetRecord]:
    """The steady state that abandons ``fleet``'s switch (back to the mode it was leaving);
    a cancel also ends the maintenance window."""
    if not fleet.is_draining:
        raise ValueError(f"epoch {fleet.epoch} is not a drain: {fleet.state}")
    steady = FleetState(
        epoch=fleet.epoch + 1,
        state=fleet.mode.state,
        since=now,
        outcome=FleetOutcome.CANCELLED,
        policy=fleet.policy,
        actor=actor or fleet.actor,
        reason=reason,
        starter=fleet.starter,
    )
    record = FleetRecord(
        epoch=fleet.epoch,
        from_state=fleet.mode.state,
        to_state=steady.state,
        outcome=FleetOutcome.CANCELLED,
        at=now,
        target=fleet.target,
        started=fleet.started,
        actor=steady.actor,
        reason=reason,
        starter=fleet.starter,
        completed_by=cancelled_by,
    )
    return steady, record


def window_change(
    fleet: FleetState,
    window: Window | None,
    *,
    now: float,
    changed_by: str,
    actor: str | None = None,
    reason: str | None = None,
) -> tuple[FleetState, FleetRecord]:
    """The steady state of steady ``fleet`` with ``window`` in force (set, changed, or ended
    when None), and its record: no switch, but a new epoch, so that every instance sees it."""
    if fleet.is_draining:
        raise ValueError(f"epoch {fleet.epoch} is a drain: its window changes with its end")
    # The mode in force keeps its own actor and reason: the record says who changed the window.
    steady = fleet.but(epoch=fleet.epoch + 1, outcome=FleetOutcome.WINDOW, window=window)
    record = FleetRecord(
        epoch=fleet.epoch,
        from_state=fleet.state,
        to_state=fleet.state,
        outcome=FleetOutcome.WINDOW,
        at=now,
        actor=actor,
        reason=reason,
        completed_by=changed_by,
        window=window,
    )
    return steady, record
