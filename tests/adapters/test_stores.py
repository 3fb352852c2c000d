"""open_store: what a --state value opens."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from servermode.adapters.stores import open_store
from servermode.core import InMemoryStore


def test_memory() -> None:
    """ ":memory:" opens an in-memory store."""
    assert isinstance(open_store(":memory:"), InMemoryStore)


def test_a_path_opens_the_sqlite_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any other value is the path given to SQLiteStore, imported only when needed."""
    opened: list[str] = []

    class FakeSQLiteStore(InMemoryStore):
        def __init__(self, path: str) -> None:
            super().__init__()
            opened.append(path)

    module = types.ModuleType("servermode.adapters.sqlite_store")
    module.SQLiteStore = FakeSQLiteStore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "servermode.adapters.sqlite_store", module)
    store = open_store(str(tmp_path / "mode.db"))
    assert isinstance(store, FakeSQLiteStore)
    assert opened == [str(tmp_path / "mode.db")]
