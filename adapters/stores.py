"""Open the store a ``--state`` value names."""

from __future__ import annotations

import importlib

from servermode.core import InMemoryStore, Store

__all__ = ["MEMORY", "open_store"]

#: The ``--state`` value of a store that forgets on exit.
MEMORY = ":memory:"


def open_store(spec: str) -> Store:
    """``":memory:"`` -> an in-memory store; anything else is the path of a SQLite file."""
    if spec == MEMORY:
        return InMemoryStore()
    # Imported on demand: only this choice needs the SQLite adapter.
    sqlite_store = importlib.import_module("servermode.adapters.sqlite_store")
    store: Store = sqlite_store.SQLiteStore(spec)
    return store
