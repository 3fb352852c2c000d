"""One owner per state file: an exclusive ``flock`` on a lock file beside the database.

Each servermode process keeps its gate (what runs, what drains) in memory, so two processes
on one state file would each admit and drain on their own, and one would "recover" a drain
the other still runs. Until a shared mode exists, the store that opens a file holds this lock
until it is closed (or its process dies: the kernel releases it), and a second store on the
same file, in this process or another, is refused at open.

Why a separate file, ``<database>.lock``, and ``flock``: SQLite locks the database with POSIX
(``fcntl``) record locks, which belong to the process and are all dropped when *any*
descriptor of the file is closed; opening and closing the database file here would silently
release SQLite's own locks. ``flock`` locks belong to one open file description: they do not
mix with SQLite's, and a second open in the same process conflicts like another process.
The lock file is left in place on close: removing it would let a waiting process lock a file
that a third one is about to create anew. It holds only the owner's process id, for messages.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from servermode.core import StoreError

__all__ = ["StateFileLock", "lock_path"]


def lock_path(database: Path) -> Path:
    """The lock file of ``database``: ``<database>.lock`` beside it (beside the file a symbolic
    link points to, so that two links to one database share one lock)."""
    real = database.resolve()
    return real.with_name(real.name + ".lock")


class StateFileLock:
    """An exclusive lock on ``database``'s lock file, taken at once or refused."""

    def __init__(self, database: Path) -> None:
        self.path = lock_path(database)
        self._database = database
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> None:
        """Take the lock without waiting; :class:`StoreError` when someone else holds it."""
        try:
            fd, self._created = _open_or_create(self.path)
        except OSError as exc:
            raise StoreError(
                f"cannot create the lock file {self.path} of the mode database "
                f"{self._database}: {exc.strerror}; the service needs write access to the "
                "folder of the database"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_owner(fd)
            os.close(fd)
            raise StoreError(self._refusal(holder)) from None
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {exc.strerror}") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self, *, discard: bool = False) -> None:
        """Give the lock up (closing the descriptor releases it); a second call does nothing.

        ``discard``: also remove the lock file if this lock created it, for a store that was
        refused (a foreign or broken file keeps no trace of the attempt beside it).
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if discard and self._created:
            self.path.unlink(missing_ok=True)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _refusal(self, holder: int | None) -> str:
        if holder == os.getpid():
            who = "this process already has it open"
        elif holder is not None:
            who = f"another servermode process (pid {holder}) is using it"
        else:
            who = "another servermode process is using it"
        return (
            f"the mode database {self._database} is locked ({self.path}): {who}. One process "
            "serves one state file, since each keeps its own gate: stop the other process, or "
            "point this one at another state file"
        )


def _open_or_create(path: Path) -> tuple[int, bool]:
    """A descriptor of ``path``, and whether this call created the file."""
    flags = os.O_RDWR | os.O_CLOEXEC
    while True:
        try:
            return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            pass
        try:
            return os.open(path, flags), False
        except FileNotFoundError:
            continue  # removed meanwhile by a refused store: create it


def _read_owner(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
