"""Open the store a ``--state`` value names."""

from __future__ import annotations

from servermode.core import InMemoryStore, Store

from .sqlite import SQLiteStore

__all__ = ["DEFAULT_STATE", "MEMORY", "open_store"]

#: The ``--state`` value of a store that forgets on exit.
MEMORY = ":memory:"
#: The service's default: a SQLite file in ``var/`` of the working directory.
DEFAULT_STATE = "var/servermode.db"


def open_store(spec: str) -> Store:
    """``":memory:"`` -> an in-memory store; anything else is the path of a SQLite file."""
    if spec == MEMORY:
        return InMemoryStore()
    return SQLiteStore(spec)
