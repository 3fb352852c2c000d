"""The two modes a server can be in, and the four states of switching between them.

What a state means (its mode in force, the mode it drains to) is read off the transition table
(:mod:`.machine`), the one place the topology is written.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from typing import NamedTuple

from .errors import InvalidMode

__all__ = ["Mode", "State", "parse_mode"]


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
        return self in _facts().target_of

    @property
    def mode(self) -> Mode:
        """The mode in force: while draining, the one being left is still the mode."""
        return _facts().mode_of[self]

    @property
    def target(self) -> Mode | None:
        """The mode a drain leads to, or None in a steady state."""
        return _facts().target_of.get(self)


class _Facts(NamedTuple):
    mode_of: dict[State, Mode]
    target_of: dict[State, Mode]  # draining states only


@functools.cache
def _facts() -> _Facts:
    """What the transition table says of each state, read once, on first use.

    The table lives with the machine (machine.py), which imports this module: it is read here
    when a property is first asked, not when this module loads.
    """
    from .machine import DRAINS

    mode_of = {s: Mode(s.value) for s in State if s not in DRAINS}
    mode_of.update({s: mode_of[route.leaves] for s, route in DRAINS.items()})
    target_of = {s: mode_of[route.leads_to] for s, route in DRAINS.items()}
    return _Facts(mode_of, target_of)


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
