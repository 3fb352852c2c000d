"""The mode state machine: one table of transitions, built into a ``transitions.Machine``.

The table is the single source of the behaviour: the runtime machine, the diagrams and the
tests all read it. Transitions are instantaneous; the drain wait lives in the controller.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from transitions import Machine

from .modes import State

__all__ = ["TRANSITIONS", "ModeMachine", "TimeoutPolicy", "Transition", "Trigger"]


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


@dataclass(frozen=True, slots=True)
class Transition:
    trigger: Trigger
    source: State
    dest: State
    # Name of a ModeMachine predicate that must hold (or, with a leading "!", must not).
    condition: str | None = None

    def as_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "trigger": self.trigger.value,
            "source": self.source.value,
            "dest": self.dest.value,
        }
        if self.condition is not None:
            negated = self.condition.startswith("!")
            kwargs["unless" if negated else "conditions"] = self.condition.lstrip("!")
        return kwargs


_STATE_OF: dict[str, State] = {s.value: s for s in State}

_P, _M = State.PRODUCTION, State.MAINTENANCE
_TO_M, _TO_P = State.DRAINING_TO_MAINTENANCE, State.DRAINING_TO_PRODUCTION

TRANSITIONS: tuple[Transition, ...] = (
    Transition(Trigger.START_MAINTENANCE, _P, _TO_M),
    Transition(Trigger.DRAINED, _TO_M, _M),
    Transition(Trigger.DRAIN_TIMED_OUT, _TO_M, _M, "forces_on_timeout"),
    Transition(Trigger.DRAIN_TIMED_OUT, _TO_M, _P, "!forces_on_timeout"),
    Transition(Trigger.CANCEL, _TO_M, _P),
    Transition(Trigger.RECOVER, _TO_M, _M),
    Transition(Trigger.START_PRODUCTION, _M, _TO_P),
    Transition(Trigger.DRAINED, _TO_P, _P),
    Transition(Trigger.DRAIN_TIMED_OUT, _TO_P, _P, "forces_on_timeout"),
    Transition(Trigger.DRAIN_TIMED_OUT, _TO_P, _M, "!forces_on_timeout"),
    Transition(Trigger.CANCEL, _TO_P, _M),
    Transition(Trigger.RECOVER, _TO_P, _P),
)


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

    def restore(self, state: State) -> None:
        """Put the machine in ``state`` without a transition: on load, or to undo a change."""
        self._machine.set_state(state.value)
