"""The SQLite store: the mode and its audit trail in one database file (standard ``sqlite3``).

The file holds one state row and an append-only history of transition records. It is opened
in WAL mode with ``synchronous=FULL``: a commit that returned is on disk. Every write is one
``BEGIN IMMEDIATE`` transaction, so writers in several processes are serialised by SQLite
(waiting up to ``busy_timeout``), and the state row and its record are saved atomically.

One store owns the file while it is open: it holds an exclusive lock on ``<file>.lock``
(:mod:`.lock`), and a second store on the same file, in any process, is refused at open.
Before it changes anything in an existing file (even the journal mode), the store reads the
file's header through a read-only, immutable connection and refuses a file of another
application, or one that is not an SQLite database, leaving its bytes as they were.

The state row carries a ``generation`` counter. The store remembers the generation it last
read or wrote, and refuses to save over a row that something else changed meanwhile (an
operator's tool, a servermode that predates the lock): the caller's view of the mode is
stale, and overwriting the file would undo a change it never saw.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from servermode.core import PersistedState, State, StoreError, TransitionRecord, Window

from .lock import StateFileLock

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "SQLiteStore"]

# Stamped in the file header (PRAGMA application_id): tells our files from other SQLite files.
APPLICATION_ID = 0x736D6F64  # "smod"

# The columns of mode_state that say who asked for the drain under way.
_ASKED_BY = ("actor", "client", "request_id", "reason")
# The columns of mode_state that keep the maintenance window (start, end, its reason).
_WINDOW = ("window_start", "window_end", "window_reason")

# One tuple of statements per schema version: _MIGRATIONS[n] upgrades version n to n + 1.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE mode_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            state TEXT NOT NULL,
            mode TEXT NOT NULL,
            target TEXT,
            since TEXT NOT NULL,
            drain_started TEXT,
            deadline TEXT,
            generation INTEGER NOT NULL
        )
        """,
        # AUTOINCREMENT: ids only ever grow, even past the highest one ever deleted.
        """
        CREATE TABLE transitions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            trigger TEXT,
            target_mode TEXT NOT NULL,
            outcome TEXT NOT NULL,
            at TEXT NOT NULL,
            duration_ms REAL NOT NULL,
            actor TEXT,
            client TEXT,
            request_id TEXT,
            reason TEXT,
            in_flight TEXT NOT NULL,
            stragglers TEXT NOT NULL
        )
        """,
        """
        CREATE TRIGGER transitions_no_update BEFORE UPDATE ON transitions
        BEGIN SELECT RAISE(ABORT, 'the transition history is append-only'); END
        """,
        """
        CREATE TRIGGER transitions_no_delete BEFORE DELETE ON transitions
        BEGIN SELECT RAISE(ABORT, 'the transition history is append-only'); END
        """,
    ),
    # 2: the long-lived connections (WebSockets) a drain closed when it began, per category.
    ("ALTER TABLE transitions ADD COLUMN closed TEXT NOT NULL DEFAULT '{}'",),
    # 3: who asked for the drain under way, kept with its intent (named when it is recovered).
    tuple(f"ALTER TABLE mode_state ADD COLUMN {column} TEXT" for column in _ASKED_BY),
    # 4: the maintenance window; a record's lame duck (seconds) and the window it set.
    (
        *(f"ALTER TABLE mode_state ADD COLUMN {column} TEXT" for column in _WINDOW),
        "ALTER TABLE transitions ADD COLUMN lame_duck REAL NOT NULL DEFAULT 0",
        "ALTER TABLE transitions ADD COLUMN window TEXT NOT NULL DEFAULT '{}'",
    ),
    # 5: an instance's record of a fleet switch keeps the fleet-level record (JSON; '{}': none).
    ("ALTER TABLE transitions ADD COLUMN fleet TEXT NOT NULL DEFAULT '{}'",),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_RECORD_COLUMNS = (
    "id",
    "from_state",
    "to_state",
    "trigger",
    "target_mode",
    "outcome",
    "at",
    "duration_ms",
    "actor",
    "client",
    "request_id",
    "reason",
    "in_flight",
    "stragglers",
    "closed",
    "lame_duck",
    "window",
    "fleet",
)
_JSON_COLUMNS = ("in_flight", "stragglers", "closed", "window", "fleet")
_INSERT_RECORD = (
    f"INSERT INTO transitions ({', '.join(_RECORD_COLUMNS[1:])}) "
    f"VALUES ({', '.join(':' + c for c in _RECORD_COLUMNS[1:])})"
)
_SELECT_RECORDS = (
    f"SELECT {', '.join(_RECORD_COLUMNS)} FROM transitions "
    "WHERE :before IS NULL OR id < :before ORDER BY id DESC LIMIT :limit"
)
_SAVE_STATE = """
    INSERT INTO mode_state (
        id, state, mode, target, since, drain_started, deadline, generation,
        actor, client, request_id, reason, window_start, window_end, window_reason
    )
    VALUES (
        1, :state, :mode, :target, :since, :drain_started, :deadline, :generation,
        :actor, :client, :request_id, :reason, :window_start, :window_end, :window_reason
    )
    ON CONFLICT (id) DO UPDATE SET
        state = excluded.state, mode = excluded.mode, target = excluded.target,
        since = excluded.since, drain_started = excluded.drain_started,
        deadline = excluded.deadline, generation = excluded.generation,
        actor = excluded.actor, client = excluded.client,
        request_id = excluded.request_id, reason = excluded.reason,
        window_start = excluded.window_start, window_end = excluded.window_end,
        window_reason = excluded.window_reason
"""
_LOAD_STATE = (
    "SELECT state, since, drain_started, deadline, generation, "
    f"{', '.join((*_ASKED_BY, *_WINDOW))} FROM mode_state"
)

# What an operator is told for each family of SQLite errors (matched on the error name prefix).
_EXPLANATIONS: tuple[tuple[str, str], ...] = (
    (
        "SQLITE_NOTADB",
        "the file is not a servermode database, or it is corrupt ({error}); it was left "
        "untouched: restore it from a backup, or move it away to start afresh",
    ),
    (
        "SQLITE_CORRUPT",
        "the file is corrupt ({error}); it was left untouched: restore it from a backup, "
        "or move it away to start afresh",
    ),
    (
        "SQLITE_READONLY",
        "the file cannot be written ({error}): the service needs write access to the file "
        "and to its folder, where SQLite keeps the -wal and -shm files",
    ),
    (
        "SQLITE_CANTOPEN",
        "the file cannot be opened ({error}): check that its folder exists, and that the file, "
        "its folder and the -wal and -shm files beside it are readable and writable",
    ),
    ("SQLITE_BUSY", "another process kept it locked for more than {timeout:g}s ({error})"),
    ("SQLITE_FULL", "the disk is full ({error})"),
    ("SQLITE_IOERR", "an I/O error occurred ({error})"),
)


class SQLiteStore:
    """The mode and its history in an SQLite file; the folder is created when missing.

    Parameters:
        path: the database file.
        busy_timeout: seconds to wait for another process's write to finish.

    Opening fails with :class:`StoreError` when the file cannot be written, is not a
    servermode database, is corrupt, or has a schema newer than this version knows.
    """

    # Every call does disk I/O (and fsync on commit): the controller runs it in a worker thread.
    blocking = True

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        # One connection shared by the worker threads, each call holding the lock from start to
        # end: a sqlite3 connection has a single transaction state, so two threads must never
        # interleave on it, and a connection per call would redo the pragmas and the checks.
        self._lock = threading.Lock()
        self._check_path()
        # Taken before the file is read or written, and held until close().
        self._owner = StateFileLock(self.path)
        self._owner.acquire()
        try:
            self._inspect()
            self._connection = self._connect()
        except BaseException:
            self._owner.release(discard=True)
            raise
        try:
            with self._guard("opening"):
                self._prepare()
                # The generation of the state row this store last read or wrote (0: no row).
                self._generation = self._read_generation()
        except BaseException:
            self._connection.close()
            self._owner.release(discard=True)
            raise

    # -- the Store port --------------------------------------------------------------------

    def load(self) -> PersistedState | None:
        with self._guard("loading the mode from"), self._lock:
            row = self._connection.execute(_LOAD_STATE).fetchone()
            loaded = self._state_from_row(row) if row is not None else None
            self._generation = row[4] if row is not None else 0
        return loaded

    def save(
        self, state: PersistedState, record: TransitionRecord | None = None
    ) -> TransitionRecord | None:
        values = _state_values(state)
        with self._guard("saving the mode to"), self._lock:
            with self._transaction() as connection:
                row = connection.execute("SELECT generation FROM mode_state").fetchone()
                found = row[0] if row is not None else 0
                if found != self._generation:
                    raise StoreError(
                        f"the state in {self.path} was changed by another process (generation "
                        f"{found}, this process last saw {self._generation}); the change was "
                        "refused and the mode in force here stays: restart the service to "
                        "adopt the saved mode"
                    )
                connection.execute(_SAVE_STATE, {**values, "generation": found + 1})
                stored = _insert(connection, record) if record is not None else None
            self._generation = found + 1
        return stored

    def append(self, record: TransitionRecord) -> TransitionRecord:
        with (
            self._guard("appending to the history in"),
            self._lock,
            self._transaction() as connection,
        ):
            return _insert(connection, record)

    def history(self, limit: int = 50, before: int | None = None) -> list[TransitionRecord]:
        if limit <= 0:
            return []
        with self._guard("reading the history from"), self._lock:
            rows = self._connection.execute(
                _SELECT_RECORDS, {"before": before, "limit": limit}
            ).fetchall()
        try:
            return [_record_from_row(row) for row in rows]
        except (KeyError, ValueError) as exc:
            raise StoreError(f"{self.path} holds a transition that cannot be read: {exc}") from exc

    def close(self) -> None:
        """Close the file and give up its lock: another store may open it from now on."""
        with self._lock:
            self._connection.close()
            self._owner.release()

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- opening ---------------------------------------------------------------------------

    def _check_path(self) -> None:
        """Create the folder when missing; refuse a path that is not (or cannot be) a file."""
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = "it exists and is not a folder" if folder.exists() else exc.strerror or exc
            raise StoreError(
                f"cannot create the folder {folder} for the mode database {self.path}: {why}"
            ) from exc
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return  # a new file: created by the first connection
        except OSError as exc:
            raise StoreError(f"cannot open {self.path}: {exc.strerror}") from exc
        if stat.S_ISDIR(mode):
            raise StoreError(f"{self.path} is a folder, not a servermode database file")
        if not stat.S_ISREG(mode):
            raise StoreError(
                f"{self.path} is not a regular file (a device, a pipe or a socket), not a "
                "servermode database file"
            )

    def _inspect(self) -> None:
        """Refuse a file that is not ours before anything writes to it (WAL mode included).

        The connection is read-only and immutable: it takes no lock and creates no -wal or -shm
        file. It sees the main file only, without what a -wal file may add; page 1, where the
        application id, the schema version and the list of tables live, is written whole, so
        what it holds is consistent (a servermode file whose first commit is still in its -wal
        looks empty here, and is checked again once opened).
        """
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
        with self._guard("opening"):
            connection = sqlite3.connect(uri, uri=True)
            try:
                self._check_application(connection)
            finally:
                connection.close()

    def _check_application(self, connection: sqlite3.Connection) -> None:
        """Refuse another application's database, and a schema newer than this version's."""
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        (application,) = connection.execute("PRAGMA application_id").fetchone()
        (tables,) = connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if application != APPLICATION_ID and (application != 0 or version != 0 or tables):
            raise StoreError(
                f"{self.path} is an SQLite database of another application, not a servermode "
                "database; it was left untouched"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than version "
                f"{SCHEMA_VERSION} that this servermode understands: upgrade servermode, "
                "or point it at another file"
            )

    def _connect(self) -> sqlite3.Connection:
        with self._guard("opening"):
            return sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,  # no implicit transactions: _transaction() opens each one
                check_same_thread=False,  # shared by worker threads under self._lock
            )

    def _prepare(self) -> None:
        """Set the pragmas, check the file, and bring its schema to :data:`SCHEMA_VERSION`."""
        connection = self._connection
        (journal,) = connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if journal != "wal":
            raise StoreError(f"{self.path} cannot use write-ahead logging (journal {journal!r})")
        # In WAL mode, FULL syncs the log on every commit: a commit survives power loss.
        connection.execute("PRAGMA synchronous = FULL")
        problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise StoreError(
                f"{self.path} is corrupt ({'; '.join(problems[:3])}); it was left untouched: "
                "restore it from a backup, or move it away to start afresh"
            )
        # IMMEDIATE: two processes opening a new file at once must not both create the schema.
        with self._transaction():
            self._migrate(connection)

    def _migrate(self, connection: sqlite3.Connection) -> None:
        # Checked again with the -wal file's content, inside the write transaction.
        self._check_application(connection)
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                connection.execute(statement)
        connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        # Written even when unchanged: a read-only file or folder fails here, at open, rather
        # than at the first mode change (SQLite opens a write-protected file read-only).
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _state_from_row(self, row: tuple[Any, ...]) -> PersistedState:
        state, since, drain_started, deadline, _generation, *asked_by, start, end, why = row
        try:
            window = None
            if start is not None or end is not None:
                window = Window(
                    _decode_time(start) if start is not None else None,
                    _decode_time(end) if end is not None else None,
                    why,
                )
            return PersistedState(
                State(state),
                _decode_time(since),
                _decode_time(drain_started) if drain_started is not None else None,
                _decode_time(deadline) if deadline is not None else None,
                **dict(zip(_ASKED_BY, asked_by, strict=True)),
                window=window,
            )
        except ValueError as exc:
            raise StoreError(f"{self.path} holds a state that cannot be read: {exc}") from exc

    def _read_generation(self) -> int:
        with self._guard("opening"), self._lock:
            row = self._connection.execute("SELECT generation FROM mode_state").fetchone()
        return int(row[0]) if row is not None else 0

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; the caller holds the lock (or is still opening the store).

        IMMEDIATE takes the write lock at BEGIN, waiting for other processes' writers there,
        so the transaction never fails half-way because another process wrote meanwhile.
        """
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            connection.execute("COMMIT")
        finally:
            if connection.in_transaction:
                connection.execute("ROLLBACK")

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn SQLite's errors into StoreErrors that say what failed on which file."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._explain(exc, doing) from exc

    def _explain(self, exc: sqlite3.Error, doing: str) -> StoreError:
        name = getattr(exc, "sqlite_errorname", "")
        for prefix, template in _EXPLANATIONS:
            if name.startswith(prefix):
                detail = template.format(error=exc, timeout=self.busy_timeout)
                return StoreError(f"{doing} {self.path} failed: {detail}")
        return StoreError(f"{doing} {self.path} failed: {exc}")


def _state_values(state: PersistedState) -> dict[str, Any]:
    window = state.window
    return {
        "state": state.state.value,
        "mode": state.mode.value,
        "target": state.target.value if state.target is not None else None,
        "since": _encode_time(state.since),
        "drain_started": _encode_time(state.drain_started) if state.drain_started else None,
        "deadline": _encode_time(state.deadline) if state.deadline else None,
        **{column: getattr(state, column) for column in _ASKED_BY},
        "window_start": _encode_time(window.start_at) if window and window.start_at else None,
        "window_end": _encode_time(window.until) if window and window.until else None,
        "window_reason": window.reason if window else None,
    }


def _insert(connection: sqlite3.Connection, record: TransitionRecord) -> TransitionRecord:
    cursor = connection.execute(_INSERT_RECORD, _record_values(record))
    assert cursor.lastrowid is not None
    return record.with_id(cursor.lastrowid)


def _record_values(record: TransitionRecord) -> dict[str, Any]:
    _encode_time(record.at)  # rejects a time without a zone, which would not read back as one
    values = record.to_dict()
    del values["id"]
    for column in _JSON_COLUMNS:
        values[column] = json.dumps(values[column], sort_keys=True)
    return values


def _record_from_row(row: tuple[Any, ...]) -> TransitionRecord:
    values = dict(zip(_RECORD_COLUMNS, row, strict=True))
    for column in _JSON_COLUMNS:
        values[column] = json.loads(values[column])
    record = TransitionRecord.from_dict(values)
    if record.at.tzinfo is None:
        raise StoreError(f"transition {record.id} has a time without a time zone: {record.at}")
    return record


def _encode_time(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"times must be timezone-aware, not {moment.isoformat()}")
    return moment.isoformat()


def _decode_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time without a time zone: {text}")
    return moment
