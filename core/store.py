"""The ``Store`` port (where the state and the history live) and its in-memory adapter."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from .records import PersistedState, TransitionRecord

__all__ = ["InMemoryStore", "Store"]


@runtime_checkable
class Store(Protocol):
    """Persistence of the mode. Implementations must be safe to call from any one thread.

    ``blocking`` tells the controller whether calls may block (disk, network): blocking
    stores are called from a worker thread so that the event loop never waits on I/O.
    """

    blocking: bool

    def load(self) -> PersistedState | None:
        """The saved state, or None when nothing was ever saved."""
        ...

    def save(
        self, state: PersistedState, record: TransitionRecord | None = None
    ) -> TransitionRecord | None:
        """Save ``state`` and append ``record`` (if any) atomically; return the stored record."""
        ...

    def append(self, record: TransitionRecord) -> TransitionRecord:
        """Append a record that changed no state (noop, refused); return it with its id."""
        ...

    def history(self, limit: int = 50, before: int | None = None) -> list[TransitionRecord]:
        """Up to ``limit`` records, newest first, with ids below ``before`` when given."""
        ...

    def close(self) -> None: ...


class InMemoryStore:
    """A store that forgets on exit: for tests and for embedding without persistence."""

    blocking = False

    def __init__(self, state: PersistedState | None = None) -> None:
        self._lock = threading.Lock()
        self._state = state
        self._history: list[TransitionRecord] = []

    def load(self) -> PersistedState | None:
        return self._state

    def save(
        self, state: PersistedState, record: TransitionRecord | None = None
    ) -> TransitionRecord | None:
        with self._lock:
            self._state = state
            return self._append(record) if record is not None else None

    def append(self, record: TransitionRecord) -> TransitionRecord:
        with self._lock:
            return self._append(record)

    def _append(self, record: TransitionRecord) -> TransitionRecord:
        stored = record.with_id(len(self._history) + 1)
        self._history.append(stored)
        return stored

    def history(self, limit: int = 50, before: int | None = None) -> list[TransitionRecord]:
        with self._lock:
            rows = self._history if before is None else self._history[: max(0, before - 1)]
            return list(reversed(rows[-limit:])) if limit > 0 else []

    def close(self) -> None:
        pass
