"""The SQLite store on its own: round-trips, history, the file, and files it must refuse."""

from __future__ import annotations

import os
import random
import re
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from servermode.adapters.store.sqlite import APPLICATION_ID, SCHEMA_VERSION, SQLiteStore
from servermode.core import (
    Outcome,
    PersistedState,
    State,
    Store,
    StoreError,
    TransitionRecord,
)

MakeRecord = Callable[..., TransitionRecord]

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
STEADY = PersistedState(State.PRODUCTION, T0)


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection to the file, as another program (or an operator) would open it."""
    return sqlite3.connect(path, isolation_level=None)


def fill(path: Path, make_record: MakeRecord, records: int) -> None:
    """Leave a closed store at ``path`` with a state and ``records`` records."""
    store = SQLiteStore(path)
    store.save(STEADY)
    for n in range(records):
        store.append(make_record(reason=f"record {n} " + "x" * 2000))
    store.close()


class TestRoundTrip:
    def test_an_empty_store_loads_nothing(self, db_path: Path) -> None:
        """A new file holds no state and no history."""
        store = SQLiteStore(db_path)
        assert isinstance(store, Store)
        assert store.blocking is True
        assert store.load() is None
        assert store.history() == []

    @pytest.mark.parametrize(
        "state",
        [
            PersistedState(State.MAINTENANCE, T0),
            PersistedState(
                State.DRAINING_TO_PRODUCTION,
                T0.astimezone(PLUS_TWO),
                drain_started=T0.astimezone(PLUS_TWO),
                deadline=T0 + timedelta(seconds=60),
            ),
        ],
        ids=["steady", "draining"],
    )
    def test_a_state_survives_reopening(self, db_path: Path, state: PersistedState) -> None:
        """Every field of a saved state, its times zone-aware, reads back from a new store."""
        store = SQLiteStore(db_path)
        assert store.save(state) is None
        store.close()
        loaded = SQLiteStore(db_path).load()
        assert loaded == state
        assert loaded is not None
        for moment in (loaded.since, loaded.drain_started, loaded.deadline):
            assert moment is None or moment.utcoffset() is not None
        assert loaded.since.utcoffset() == state.since.utcoffset()

    def test_a_record_survives_reopening_with_every_field(
        self, db_path: Path, make_record: MakeRecord
    ) -> None:
        """A record saved with its state reads back equal, with its id and a zone-aware time."""
        record = make_record(
            from_state=State.DRAINING_TO_MAINTENANCE,
            to_state=State.MAINTENANCE,
            trigger="drain_timed_out",
            outcome=Outcome.FORCED,
            at=T0.astimezone(PLUS_TWO),
            duration_ms=60001.5,
            actor="ops@example.com",
            client="192.0.2.7",
            request_id="req-42",
            reason="schema upgrade: “v7” ✓",
            in_flight={"profile": 3, "service": 1},
            stragglers={"profile": 1},
            closed={"profile": 2},
        )
        store = SQLiteStore(db_path)
        stored = store.save(PersistedState(State.MAINTENANCE, T0), record)
        assert stored == record.with_id(1)
        store.close()
        [loaded] = SQLiteStore(db_path).history()
        assert loaded == record.with_id(1)
        assert loaded.at.utcoffset() == timedelta(hours=2)

    def test_a_version_1_file_is_upgraded_and_keeps_its_history(
        self, db_path: Path, make_record: MakeRecord
    ) -> None:
        """A file written before ``closed`` existed opens, reads back with ``closed`` empty."""
        from servermode.adapters.store import sqlite

        db_path.parent.mkdir(parents=True, exist_ok=True)
        connection = raw(db_path)
        for statement in sqlite._MIGRATIONS[0]:
            connection.execute(statement)
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("PRAGMA user_version = 1")
        connection.execute(
            "INSERT INTO transitions (from_state, to_state, target_mode, outcome, at, "
            "duration_ms, in_flight, stragglers) VALUES ('production', 'maintenance', "
            "'maintenance', 'completed', ?, 1.0, '{}', '{}')",
            (T0.isoformat(),),
        )
        connection.close()
        store = SQLiteStore(db_path)
        [old] = store.history()
        assert (old.outcome, old.closed) == (Outcome.COMPLETED, {})
        new = store.append(make_record(closed={"profile": 1}))
        assert store.history(limit=1) == [new]
        assert raw(db_path).execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)

    def test_who_asked_for_a_drain_is_kept_with_its_intent(self, db_path: Path) -> None:
        """The actor, client, request id and reason of a draining state read back (issue 10)."""
        intent = PersistedState(
            State.DRAINING_TO_MAINTENANCE,
            T0,
            T0,
            T0 + timedelta(seconds=30),
            actor="admin",
            client="127.0.0.1:5000",
            request_id="req-7",
            reason="schema upgrade",
        )
        store = SQLiteStore(db_path)
        store.save(intent)
        store.close()
        assert SQLiteStore(db_path).load() == intent

    def test_a_version_2_draining_state_is_upgraded(self, db_path: Path) -> None:
        """A drain saved before the intent kept who asked reads back with no one named."""
        from servermode.adapters.store import sqlite

        db_path.parent.mkdir(parents=True, exist_ok=True)
        connection = raw(db_path)
        for statements in sqlite._MIGRATIONS[:2]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        connection.execute("PRAGMA user_version = 2")
        connection.execute(
            "INSERT INTO mode_state VALUES (1, 'draining_to_maintenance', 'production', "
            "'maintenance', ?, ?, ?, 1)",
            (T0.isoformat(), T0.isoformat(), T0.isoformat()),
        )
        connection.close()
        loaded = SQLiteStore(db_path).load()
        assert loaded == PersistedState(State.DRAINING_TO_MAINTENANCE, T0, T0, T0)
        assert raw(db_path).execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)

    def test_a_record_with_empty_fields_round_trips(
        self, db_path: Path, make_record: MakeRecord
    ) -> None:
        """None fields and empty counts come back as they went in."""
        record = make_record(trigger=None, outcome=Outcome.INITIALIZED)
        store = SQLiteStore(db_path)
        stored = store.append(record)
        assert store.history() == [stored] == [record.with_id(1)]

    def test_a_time_without_zone_is_refused_and_nothing_is_written(
        self, db_path: Path, make_record: MakeRecord
    ) -> None:
        """Naive datetimes cannot be read back as zone-aware: they are refused before writing."""
        store = SQLiteStore(db_path)
        naive = datetime(2024, 5, 1, 12, 0)
        with pytest.raises(ValueError, match="timezone-aware"):
            store.save(PersistedState(State.PRODUCTION, naive))
        with pytest.raises(ValueError, match="timezone-aware"):
            store.save(STEADY, make_record(at=naive))
        with pytest.raises(ValueError, match="timezone-aware"):
            store.append(make_record(at=naive))
        assert store.load() is None
        assert store.history() == []

    def test_a_save_replaces_the_state(self, db_path: Path) -> None:
        """There is one state: the last one saved."""
        store = SQLiteStore(db_path)
        store.save(STEADY)
        store.save(PersistedState(State.MAINTENANCE, T0 + timedelta(minutes=1)))
        store.close()
        assert SQLiteStore(db_path).load() == PersistedState(
            State.MAINTENANCE, T0 + timedelta(minutes=1)
        )


class TestHistory:
    @pytest.fixture
    def store(self, db_path: Path, make_record: MakeRecord) -> SQLiteStore:
        store = SQLiteStore(db_path)
        for n in range(1, 8):
            store.append(make_record(reason=f"r{n}"))
        return store

    def test_newest_first(self, store: SQLiteStore) -> None:
        """Records come newest first, with the ids they were given in order."""
        assert [r.id for r in store.history()] == [7, 6, 5, 4, 3, 2, 1]
        assert [r.reason for r in store.history()] == [f"r{n}" for n in range(7, 0, -1)]

    def test_limit(self, store: SQLiteStore) -> None:
        """At most ``limit`` records, the newest ones; no records for a limit below one."""
        assert [r.id for r in store.history(limit=3)] == [7, 6, 5]
        assert store.history(limit=0) == []
        assert store.history(limit=-1) == []

    def test_before(self, store: SQLiteStore) -> None:
        """``before`` pages backwards: only ids below it."""
        assert [r.id for r in store.history(limit=2, before=5)] == [4, 3]
        assert [r.id for r in store.history(before=2)] == [1]
        assert store.history(before=1) == []
        assert [r.id for r in store.history(limit=1, before=100)] == [7]

    def test_ids_keep_growing_across_reopening(
        self, store: SQLiteStore, db_path: Path, make_record: MakeRecord
    ) -> None:
        """A reopened store goes on from the highest id, through append and save alike."""
        store.close()
        reopened = SQLiteStore(db_path)
        assert reopened.append(make_record()).id == 8
        saved = reopened.save(STEADY, make_record())
        assert saved is not None and saved.id == 9

    def test_history_is_append_only(self, store: SQLiteStore, db_path: Path) -> None:
        """The file itself refuses to change or delete a record."""
        connection = raw(db_path)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("UPDATE transitions SET outcome = 'noop' WHERE id = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            connection.execute("DELETE FROM transitions")
        assert len(store.history(limit=100)) == 7

    def test_threads_share_one_store(self, db_path: Path, make_record: MakeRecord) -> None:
        """Calls from many threads at once all land, each record with its own id."""
        store = SQLiteStore(db_path)

        def work(n: int) -> None:
            for k in range(20):
                if k % 5 == 0:
                    store.save(STEADY, make_record(actor=f"t{n}"))
                else:
                    store.append(make_record(actor=f"t{n}"))
                store.history(limit=3)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ids = [r.id for r in store.history(limit=1000)]
        assert ids == list(range(120, 0, -1))


class TestFile:
    def test_the_folder_is_created_and_the_file_uses_wal(self, db_path: Path) -> None:
        """A missing var/ folder is created; the file is in WAL mode, stamped and versioned."""
        assert not db_path.parent.exists()
        SQLiteStore(str(db_path)).close()
        connection = raw(db_path)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert connection.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)

    def test_the_state_row_names_mode_and_target(self, db_path: Path) -> None:
        """An operator reading the file sees the mode in force and the target of a drain."""
        store = SQLiteStore(db_path)
        store.save(PersistedState(State.DRAINING_TO_MAINTENANCE, T0, T0, T0))
        row = raw(db_path).execute("SELECT state, mode, target FROM mode_state").fetchone()
        assert row == ("draining_to_maintenance", "production", "maintenance")

    def test_a_writer_that_holds_the_file_too_long_fails_clearly(self, db_path: Path) -> None:
        """A save that waits past the busy timeout fails with a StoreError; nothing changes."""
        store = SQLiteStore(db_path, busy_timeout=0.1)
        store.save(STEADY)
        other = raw(db_path)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match=r"locked for more than 0\.1s"):
            store.save(PersistedState(State.MAINTENANCE, T0))
        other.execute("ROLLBACK")
        assert store.load() == STEADY
        assert store.save(PersistedState(State.MAINTENANCE, T0)) is None


class TestRefusedFiles:
    """Files the store will not use: it fails at open, says why, and leaves them as they are."""

    def test_a_newer_schema_version(self, db_path: Path) -> None:
        """An unknown version names the file and both versions."""
        SQLiteStore(db_path).close()
        raw(db_path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 6}")
        with pytest.raises(StoreError) as error:
            SQLiteStore(db_path)
        message = str(error.value)
        assert str(db_path) in message
        assert f"schema version {SCHEMA_VERSION + 6}" in message
        assert f"version {SCHEMA_VERSION} that this servermode understands" in message
        assert raw(db_path).execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION + 6,)

    def test_garbage_bytes(self, db_path: Path) -> None:
        """A file that is not an SQLite database is refused and not overwritten."""
        db_path.parent.mkdir()
        garbage = random.Random(4).randbytes(8192)
        db_path.write_bytes(garbage)
        with pytest.raises(StoreError, match="is not a servermode database, or it is corrupt"):
            SQLiteStore(db_path)
        assert db_path.read_bytes() == garbage

    def test_a_damaged_page(self, db_path: Path, make_record: MakeRecord) -> None:
        """A store whose pages were overwritten is found corrupt at open, not later."""
        fill(db_path, make_record, records=30)
        content = bytearray(db_path.read_bytes())
        page = 4096
        assert len(content) > 8 * page
        content[3 * page : 5 * page] = random.Random(5).randbytes(2 * page)
        db_path.write_bytes(bytes(content))
        with pytest.raises(StoreError, match="corrupt"):
            SQLiteStore(db_path)
        assert db_path.read_bytes() == bytes(content)

    def test_another_applications_database(self, db_path: Path) -> None:
        """An SQLite file of some other program is not taken over."""
        db_path.parent.mkdir()
        raw(db_path).execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        with pytest.raises(StoreError, match="another application"):
            SQLiteStore(db_path)
        tables = raw(db_path).execute("SELECT name FROM sqlite_schema").fetchall()
        assert tables == [("invoices",)]

    @pytest.mark.parametrize("application_id", [0, 0x12345678])
    def test_another_applications_database_is_not_changed_at_all(
        self, db_path: Path, application_id: int
    ) -> None:
        """Refused before anything is written: same bytes (still a rollback journal, not WAL),
        and no -wal, -shm or lock file beside it."""
        db_path.parent.mkdir()
        other = raw(db_path)
        other.execute(f"PRAGMA application_id = {application_id}")
        other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        other.execute("INSERT INTO invoices (total) VALUES (12.5)")
        other.close()
        before = db_path.read_bytes()
        with pytest.raises(StoreError, match="another application"):
            SQLiteStore(db_path)
        assert db_path.read_bytes() == before
        assert before[18:20] == b"\x01\x01"  # the header's journal: rollback, not WAL (2)
        assert sorted(p.name for p in db_path.parent.iterdir()) == [db_path.name]

    def test_a_newer_schema_is_not_changed_at_all(self, db_path: Path) -> None:
        """A servermode file of a newer version is refused without a write."""
        SQLiteStore(db_path).close()
        raw(db_path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        before = db_path.read_bytes()
        with pytest.raises(StoreError, match="newer than version"):
            SQLiteStore(db_path)
        assert db_path.read_bytes() == before

    def test_a_truncated_database(self, db_path: Path, make_record: MakeRecord) -> None:
        """A store cut short (a partial copy) is refused as corrupt and left as it is."""
        fill(db_path, make_record, records=30)
        os.truncate(db_path, db_path.stat().st_size // 2)
        before = db_path.read_bytes()
        with pytest.raises(StoreError, match="corrupt"):
            SQLiteStore(db_path)
        assert db_path.read_bytes() == before

    @pytest.mark.parametrize("kind", ["device", "pipe"])
    def test_a_path_that_is_not_a_regular_file(self, tmp_path: Path, kind: str) -> None:
        """A device or a named pipe is refused before SQLite opens it (no I/O error, no hang)."""
        path = Path(os.devnull) if kind == "device" else tmp_path / "pipe.db"
        if kind == "pipe":
            os.mkfifo(path)
        with pytest.raises(StoreError, match="is not a regular file"):
            SQLiteStore(path)

    # Tests run as root in CI, where permission bits stop nothing: the unwritable places below
    # fail for root as well (a folder that is a file, a file that is a folder, a -wal file that
    # cannot be created). The permission-bit cases run when the tests do not run as root.

    def test_a_folder_that_is_a_file(self, tmp_path: Path) -> None:
        """When the folder of the path is a regular file, opening says so."""
        (tmp_path / "var").write_text("not a folder")
        with pytest.raises(StoreError) as error:
            SQLiteStore(tmp_path / "var" / "servermode.db")
        assert str(error.value) == (
            f"cannot create the folder {tmp_path / 'var'} for the mode database "
            f"{tmp_path / 'var' / 'servermode.db'}: it exists and is not a folder"
        )

    def test_a_path_below_a_file(self, tmp_path: Path) -> None:
        """When a folder above the path is a regular file, opening fails clearly."""
        (tmp_path / "var").write_text("not a folder")
        with pytest.raises(StoreError, match=r"cannot create the folder \S*/var/data for"):
            SQLiteStore(tmp_path / "var" / "data" / "servermode.db")

    def test_a_path_that_is_a_folder(self, db_path: Path) -> None:
        """A folder in place of the file is refused."""
        db_path.mkdir(parents=True)
        with pytest.raises(StoreError, match="is a folder"):
            SQLiteStore(db_path)

    def test_a_log_file_that_cannot_be_created(self, db_path: Path) -> None:
        """When SQLite cannot create the -wal file beside the database, opening fails."""
        SQLiteStore(db_path).close()
        Path(f"{db_path}-wal").mkdir()
        with pytest.raises(StoreError, match="cannot be opened"):
            SQLiteStore(db_path)

    @pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
    @pytest.mark.parametrize("protect", ["folder", "file"])
    def test_write_protection(self, db_path: Path, protect: str) -> None:
        """A write-protected file or folder fails at open, not at the first mode change."""
        SQLiteStore(db_path).close()
        target = db_path.parent if protect == "folder" else db_path
        target.chmod(0o555 if protect == "folder" else 0o444)
        try:
            with pytest.raises(StoreError, match=re.escape(str(db_path))):
                SQLiteStore(db_path)
        finally:
            target.chmod(0o755 if protect == "folder" else 0o644)


class TestOneOwner:
    """The store that opened a file owns it until closed (processes: test_sqlite_processes)."""

    def test_a_second_store_on_the_file_is_refused_until_the_first_is_closed(
        self, db_path: Path
    ) -> None:
        first = SQLiteStore(db_path)
        first.save(STEADY)
        with pytest.raises(StoreError) as error:
            SQLiteStore(db_path)
        assert str(error.value).startswith(f"the mode database {db_path} is locked")
        assert "this process already has it open" in str(error.value)
        assert first.load() == STEADY  # the owner is unaffected
        first.close()
        second = SQLiteStore(db_path)
        assert second.load() == STEADY
        second.close()

    def test_the_lock_file_names_the_owner_and_stays(self, db_path: Path) -> None:
        """<file>.lock holds the owner's process id; it is left in place on close."""
        store = SQLiteStore(db_path)
        lock = Path(f"{db_path}.lock")
        assert lock.read_text() == f"{os.getpid()}\n"
        store.close()
        store.close()  # a second close does nothing
        assert lock.exists()

    def test_a_link_to_the_file_shares_its_lock(self, db_path: Path, tmp_path: Path) -> None:
        """Two names of one database (a symbolic link) are one owner's, not two."""
        first = SQLiteStore(db_path)
        link = tmp_path / "link.db"
        link.symlink_to(db_path)
        try:
            with pytest.raises(StoreError, match="is locked"):
                SQLiteStore(link)
        finally:
            first.close()
        SQLiteStore(link).close()

    def test_a_refused_open_releases_the_lock(self, db_path: Path) -> None:
        """A file refused at open is not left locked: once fixed, it opens."""
        db_path.parent.mkdir()
        db_path.write_bytes(b"not a database" * 100)
        with pytest.raises(StoreError):
            SQLiteStore(db_path)
        db_path.unlink()
        SQLiteStore(db_path).close()
