"""The mode state machine: one table of transitions, and everything read off it.

:data:`TRANSITIONS` is the single source of the topology. From it come the runtime
``transitions.Machine``, the diagrams, the drains (:class:`DrainRoute`: where each draining
state comes from, where it leads and which trigger begins it; :class:`State`'s ``mode``,
``target`` and ``is_draining`` read them), the outcome each way out of a drain is reported as,
and :func:`step`, the pure lookup of where a trigger leads. The controller asks :func:`step`
first, saves the answer, and only then fires the machine and moves the gate, together.
Transitions are instantaneous; the drain wait lives in the controller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from transitions import Machine

from .modes import Mode, State
from .records import Outcome

__all__ = [
    "DRAINS",
    "TRANSITIONS",
    "DrainRoute",
    "ModeMachine",
    "TimeoutPolicy",
    "Topology",
    "Transition",
    "Trigger",
    "drain_to",
    "step",
]


class Trigger(StrEnum):
    START_MAINTENANCE = "start_maintenance"
    START_PRODUCTION = "start_production"
    DRAINED = "drained"
    DRAIN_TIMED_OUT = "drain_timed_out"
    CANCEL = "cancel"
    RECOVER = "recover"


class TimeoutPolicy(StrEnum):
    """What a drain that runs out of time does."""

    FORCE = "force"  # switch anyway; the stragglers are counted in the audit
    ROLLBACK = "rollback"  # return to the mode being left and report failure


# How the runtime machine tells the policies apart: one predicate of its model, held or not.
# (Also what the diagrams print on the edges, so it is part of the drift-tested drawing.)
_CONDITION_OF: dict[TimeoutPolicy, tuple[str, str]] = {
    TimeoutPolicy.FORCE: ("conditions", "forces_on_timeout"),
    TimeoutPolicy.ROLLBACK: ("unless", "forces_on_timeout"),
}


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of the table."""

    trigger: Trigger
    source: State
    dest: State
    only_under: TimeoutPolicy | None = None  # the row holds under this timeout policy only
    outcome: Outcome | None = None  # how a drain that ends through this row is reported

    def holds_under(self, policy: TimeoutPolicy) -> bool:
        return self.only_under is None or self.only_under is policy

    def as_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "trigger": self.trigger.value,
            "source": self.source.value,
            "dest": self.dest.value,
        }
        if self.only_under is not None:
            key, predicate = _CONDITION_OF[self.only_under]
            kwargs[key] = predicate
        return kwargs


_P, _M = State.PRODUCTION, State.MAINTENANCE
_TO_M, _TO_P = State.DRAINING_TO_MAINTENANCE, State.DRAINING_TO_PRODUCTION
_FORCE, _ROLLBACK = TimeoutPolicy.FORCE, TimeoutPolicy.ROLLBACK
_T, _O = Trigger, Outcome

TRANSITIONS: tuple[Transition, ...] = (
    Transition(_T.START_MAINTENANCE, _P, _TO_M),
    Transition(_T.DRAINED, _TO_M, _M, outcome=_O.COMPLETED),
    Transition(_T.DRAIN_TIMED_OUT, _TO_M, _M, _FORCE, _O.FORCED),
    Transition(_T.DRAIN_TIMED_OUT, _TO_M, _P, _ROLLBACK, _O.ROLLED_BACK),
    Transition(_T.CANCEL, _TO_M, _P, outcome=_O.CANCELLED),
    Transition(_T.RECOVER, _TO_M, _M, outcome=_O.RECOVERED),
    Transition(_T.START_PRODUCTION, _M, _TO_P),
    Transition(_T.DRAINED, _TO_P, _P, outcome=_O.COMPLETED),
    Transition(_T.DRAIN_TIMED_OUT, _TO_P, _P, _FORCE, _O.FORCED),
    Transition(_T.DRAIN_TIMED_OUT, _TO_P, _M, _ROLLBACK, _O.ROLLED_BACK),
    Transition(_T.CANCEL, _TO_P, _M, outcome=_O.CANCELLED),
    Transition(_T.RECOVER, _TO_P, _P, outcome=_O.RECOVERED),
)


@dataclass(frozen=True, slots=True)
class DrainRoute:
    """A draining state, as the table draws it."""

    state: State  # the draining state
    leaves: State  # the steady state it starts from, and returns to when abandoned
    leads_to: State  # the steady state it drains to
    start: Trigger  # the trigger that begins it


class Topology:
    """The table as lookups, built once and checked as it is built.

    A draining state is one that ``drained`` leaves; it is entered by exactly one row (its
    start), ``cancel`` leads back to that row's source, every row out of it says how it is
    reported, and no trigger has two rows from one state under one timeout policy.
    """

    def __init__(self, rows: Iterable[Transition]) -> None:
        self.rows = tuple(rows)
        self._steps: dict[tuple[State, Trigger, TimeoutPolicy], Transition] = {}
        for row in self.rows:
            for policy in TimeoutPolicy:
                key = (row.source, row.trigger, policy)
                if not row.holds_under(policy):
                    continue
                if key in self._steps:
                    raise ValueError(f"two rows for {row.trigger} from {row.source} under {policy}")
                self._steps[key] = row
        self.drains: Mapping[State, DrainRoute] = {
            row.source: self._route(row) for row in self.rows if row.trigger is Trigger.DRAINED
        }
        self._to: dict[State, DrainRoute] = {}
        for route in self.drains.values():
            if route.leads_to in self._to:
                raise ValueError(f"two drains lead to {route.leads_to}")
            self._to[route.leads_to] = route

    def _route(self, drained: Transition) -> DrainRoute:
        state = drained.source
        starts = [row for row in self.rows if row.dest is state and row.source is not state]
        if len(starts) != 1:
            raise ValueError(f"{state} must be entered by exactly one row, not {len(starts)}")
        start = starts[0]
        for policy in TimeoutPolicy:
            cancel = self.step(state, Trigger.CANCEL, policy)
            if cancel is None or cancel.dest is not start.source:
                raise ValueError(f"cancel from {state} must lead back to {start.source}")
        for row in self.rows:
            if row.source is state and row.outcome is None:
                raise ValueError(f"{row.trigger} from {state} says not how it is reported")
        return DrainRoute(state, start.source, drained.dest, start.trigger)

    def step(self, source: State, trigger: Trigger, policy: TimeoutPolicy) -> Transition | None:
        """The row ``trigger`` follows from ``source`` under ``policy``, or None: fires nothing."""
        return self._steps.get((source, trigger, policy))

    def drain_to(self, target: Mode) -> DrainRoute:
        """The drain that leads to ``target``."""
        return self._to[target.state]


TOPOLOGY = Topology(TRANSITIONS)
#: Each draining state's route, read off :data:`TRANSITIONS`.
DRAINS: Mapping[State, DrainRoute] = TOPOLOGY.drains
step = TOPOLOGY.step
drain_to = TOPOLOGY.drain_to


def machine_kwargs(initial: State) -> dict[str, Any]:
    """The arguments that build a machine (runtime or diagram) from :data:`TRANSITIONS`."""
    return {
        "states": [s.value for s in State],
        "transitions": [t.as_kwargs() for t in TRANSITIONS],
        "initial": initial.value,
        # Only the table's transitions exist: no implicit to_<state>() shortcuts.
        "auto_transitions": False,
        "ignore_invalid_triggers": False,
    }


_STATE_OF: dict[str, State] = {s.value: s for s in State}


class ModeMachine:
    """The model of the runtime machine: its state, and the timeout policy its conditions read."""

    state: str  # set by transitions.Machine

    def __init__(
        self, initial: State = State.PRODUCTION, timeout_policy: TimeoutPolicy = TimeoutPolicy.FORCE
    ) -> None:
        self.timeout_policy = TimeoutPolicy(timeout_policy)
        self._machine = Machine(model=self, **machine_kwargs(initial))

    @property
    def current(self) -> State:
        # A dict lookup, not State(...): status pages read this on every request.
        return _STATE_OF[self.state]

    def forces_on_timeout(self) -> bool:
        return self.timeout_policy is TimeoutPolicy.FORCE

    def fire(self, trigger: Trigger) -> State:
        """Fire ``trigger`` and return the new state; an invalid trigger raises MachineError."""
        self.trigger(trigger.value)  # type: ignore[attr-defined]  # added by transitions
        return self.current

    def take(self, row: Transition) -> State:
        """Follow ``row``, planned with :meth:`step`: the machine lands where the row says."""
        if self.current is not row.source:
            raise RuntimeError(f"the machine is in {self.current}, not in {row.source}")
        landed = self.fire(row.trigger)
        if landed is not row.dest:  # pragma: no cover - the machine is built from the same rows
            raise RuntimeError(f"{row.trigger} led to {landed}, the table says {row.dest}")
        return landed

    def restore(self, state: State) -> None:
        """Put the machine in ``state`` without a transition: the state loaded at start."""
        self._machine.set_state(state.value)
