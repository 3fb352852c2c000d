"""open_store: what a --state value opens."""

from __future__ import annotations

from pathlib import Path

from servermode.adapters.store.factory import open_store
from servermode.adapters.store.sqlite import SQLiteStore
from servermode.core import InMemoryStore


def test_memory() -> None:
    """ ":memory:" opens an in-memory store."""
    assert isinstance(open_store(":memory:"), InMemoryStore)


def test_a_path_opens_a_sqlite_file(tmp_path: Path) -> None:
    """Any other value is the path of a SQLite file, created with its folder when missing."""
    path = tmp_path / "var" / "mode.db"
    store = open_store(str(path))
    try:
        assert isinstance(store, SQLiteStore)
        assert path.exists()
    finally:
        store.close()
