"""The two modes a server can be in, and the four states of switching between them."""

from __future__ import annotations

from enum import StrEnum

from .errors import InvalidMode

__all__ = ["Mode", "State", "draining_state", "parse_mode"]


class Mode(StrEnum):
    """What the server is for right now: normal traffic or schema maintenance."""

    PRODUCTION = "production"
    MAINTENANCE = "maintenance"

    @property
    def state(self) -> State:
        """The steady state in which this mode is in force."""
        return State(self.value)


class State(StrEnum):
    """A state of the mode machine: a steady mode, or a drain on the way to one."""

    PRODUCTION = "production"
    DRAINING_TO_MAINTENANCE = "draining_to_maintenance"
    MAINTENANCE = "maintenance"
    DRAINING_TO_PRODUCTION = "draining_to_production"

    @property
    def is_draining(self) -> bool:
        return self in _DRAIN_ENDS

    @property
    def mode(self) -> Mode:
        """The mode in force: while draining, the one being left is still the mode."""
        if self.is_draining:
            return _DRAIN_ENDS[self][0]
        return Mode(self.value)

    @property
    def target(self) -> Mode | None:
        """The mode a drain leads to, or None in a steady state."""
        ends = _DRAIN_ENDS.get(self)
        return ends[1] if ends else None


# draining state -> (mode it leaves, mode it leads to)
_DRAIN_ENDS: dict[State, tuple[Mode, Mode]] = {
    State.DRAINING_TO_MAINTENANCE: (Mode.PRODUCTION, Mode.MAINTENANCE),
    State.DRAINING_TO_PRODUCTION: (Mode.MAINTENANCE, Mode.PRODUCTION),
}


def draining_state(target: Mode) -> State:
    """The state of a drain that leads to ``target``."""
    return State(f"draining_to_{target.value}")


def parse_mode(value: object) -> Mode:
    """Read a mode name case-insensitively; anything else raises :class:`InvalidMode`."""
    if isinstance(value, Mode):
        return value
    if isinstance(value, str):
        try:
            return Mode(value.strip().lower())
        except ValueError:
            pass
    raise InvalidMode(value)
