"""The maintenance window and the new record fields in the SQLite file (schema 4)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from servermode.adapters.store import sqlite
from servermode.adapters.store.sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteStore
from servermode.core import Mode, Outcome, PersistedState, State, TransitionRecord, Window

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)


def test_a_window_and_the_reason_survive_a_reopen(db_path: Path) -> None:
    window = Window(T0 + timedelta(hours=1), T0 + timedelta(hours=2), "disks")
    state = PersistedState(State.PRODUCTION, T0, reason="quiet", window=window)
    record = TransitionRecord(
        State.PRODUCTION,
        State.PRODUCTION,
        None,
        Mode.MAINTENANCE,
        Outcome.SCHEDULED,
        T0,
        lame_duck=1.5,
        window={"start_at": (T0 + timedelta(hours=1)).isoformat(), "until": None},
    )
    store = SQLiteStore(db_path)
    stored = store.save(state, record)
    store.close()
    reopened = SQLiteStore(db_path)
    assert reopened.load() == state
    assert reopened.history() == [stored]
    reopened.save(PersistedState(State.MAINTENANCE, T0))  # a save without a window clears it
    assert reopened.load() == PersistedState(State.MAINTENANCE, T0)


def test_a_version_3_file_is_upgraded(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(db_path, isolation_level=None)
    for statements in sqlite._MIGRATIONS[:3]:
        for statement in statements:
            connection.execute(statement)
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute("PRAGMA user_version = 3")
    connection.execute(
        "INSERT INTO mode_state (id, state, mode, target, since, generation, reason) "
        "VALUES (1, 'maintenance', 'maintenance', NULL, ?, 1, 'upgrade')",
        (T0.isoformat(),),
    )
    connection.close()
    store = SQLiteStore(db_path)
    assert store.load() == PersistedState(State.MAINTENANCE, T0, reason="upgrade")
    store.close()
    version = sqlite3.connect(db_path).execute("PRAGMA user_version").fetchone()
    assert version == (SCHEMA_VERSION,)
