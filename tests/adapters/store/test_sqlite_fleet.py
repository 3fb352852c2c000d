"""A fleet switch's fleet-level record in the SQLite history (schema 5, issue 11)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from servermode.adapters.store import sqlite
from servermode.adapters.store.sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteStore
from servermode.core import Mode, Outcome, PersistedState, State, TransitionRecord

T0 = datetime(2030, 1, 1, 12, tzinfo=UTC)
FLEET = {
    "epoch": 7,
    "from_state": "production",
    "to_state": "maintenance",
    "outcome": "forced",
    "at": 1_900_000_010.5,
    "target": "maintenance",
    "started": 1_900_000_000.25,
    "actor": "ops",
    "reason": "upgrade",
    "starter": "A",
    "completed_by": "B",
    "instances": {"A": "drained", "B": "drained", "C": "timed_out"},
    "expired": ["D"],
    "stragglers": {"C": {"service": 1}},
}


def switch_record(**fields: object) -> TransitionRecord:
    return TransitionRecord(
        State.DRAINING_TO_MAINTENANCE,
        State.MAINTENANCE,
        "drain_timed_out",
        Mode.MAINTENANCE,
        Outcome.FORCED,
        T0,
        **fields,  # type: ignore[arg-type]
    )


def test_a_records_fleet_record_survives_a_reopen(db_path: Path) -> None:
    record = switch_record(fleet=FLEET, stragglers={"service": 1})
    store = SQLiteStore(db_path)
    stored = store.save(PersistedState(State.MAINTENANCE, T0), record)
    lone = store.append(switch_record())
    store.close()
    reopened = SQLiteStore(db_path)
    assert reopened.history() == [lone, stored]
    [_, kept] = reopened.history()
    assert kept.fleet == FLEET
    assert reopened.history()[0].fleet == {}


def test_a_version_4_file_is_upgraded_and_its_records_have_no_fleet_record(
    db_path: Path,
) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(db_path, isolation_level=None)
    for statements in sqlite._MIGRATIONS[:4]:
        for statement in statements:
            connection.execute(statement)
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute("PRAGMA user_version = 4")
    connection.execute(
        "INSERT INTO transitions (from_state, to_state, target_mode, outcome, at, "
        "duration_ms, in_flight, stragglers) VALUES ('production', 'maintenance', "
        "'maintenance', 'completed', ?, 1.0, '{}', '{}')",
        (T0.isoformat(),),
    )
    connection.close()
    store = SQLiteStore(db_path)
    [old] = store.history()
    assert (old.outcome, old.fleet) == (Outcome.COMPLETED, {})
    new = store.append(switch_record(fleet=FLEET))
    assert store.history(limit=1) == [new] and new.fleet == FLEET
    store.close()
    version = sqlite3.connect(db_path).execute("PRAGMA user_version").fetchone()
    assert version == (SCHEMA_VERSION,) == (5,)
