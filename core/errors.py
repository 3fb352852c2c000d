"""Errors of the core, as types that carry the facts a caller needs to answer them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .modes import State
    from .records import TransitionRecord

__all__ = [
    "InvalidMode",
    "ModeChangeCancelled",
    "ModeChangeFailed",
    "ModeChangeInterrupted",
    "ModeChangeRolledBack",
    "Refused",
    "ServerModeError",
    "StoreError",
    "SwitchInProgress",
    "UnknownCategory",
]


class ServerModeError(Exception):
    """Base of every error servermode raises on purpose."""


class InvalidMode(ServerModeError, ValueError):
    """A mode name that is neither production nor maintenance (case-insensitive)."""

    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(f"invalid server mode {value!r}: expected 'production' or 'maintenance'")


class UnknownCategory(ServerModeError, KeyError):
    """A request category that the admission policy does not know."""

    def __init__(self, category: str) -> None:
        self.category = category
        super().__init__(category)

    def __str__(self) -> str:
        return f"unknown request category {self.category!r}"


class Refused(ServerModeError):
    """A request the current state does not admit.

    ``retry_after`` is a hint in whole seconds: the time left in a drain, or the configured
    hint when a steady mode refuses the category.
    """

    def __init__(self, state: State, category: str, retry_after: int) -> None:
        self.state = state
        self.category = category
        self.retry_after = retry_after
        super().__init__(f"{category} requests are unavailable while the server is {state.value}")

    @property
    def while_switching(self) -> bool:
        return self.state.is_draining


class SwitchInProgress(ServerModeError):
    """A mode change asked for while another one is still draining."""

    def __init__(self, state: State, retry_after: int) -> None:
        self.state = state
        self.retry_after = retry_after
        super().__init__(f"a mode switch is under way ({state.value}); retry in {retry_after}s")


class ModeChangeFailed(ServerModeError):
    """A mode change that ended without the asked-for mode in force; ``record`` says how."""

    def __init__(self, record: TransitionRecord, message: str) -> None:
        self.record = record
        super().__init__(message)


class ModeChangeRolledBack(ModeChangeFailed):
    """The drain timed out under the ``rollback`` policy: the old mode is back in force."""


class ModeChangeCancelled(ModeChangeFailed):
    """The drain was cancelled: the old mode is back in force."""


class ModeChangeInterrupted(ModeChangeFailed):
    """The switch's own task was cancelled (a loop shutting down, ``task.cancel()``) before
    the new mode was saved: the old mode is back in force, and the attempt recorded as failed."""


class StoreError(ServerModeError):
    """The store could not load or save the state; the mode in memory was not changed."""
