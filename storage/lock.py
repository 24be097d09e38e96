"""One writer per collection: an exclusive lock file beside its vectors, released even on SIGKILL.

fcntl locks belong to the process, so a killed indexer never leaves a stale lock behind. Searching
takes no lock: files are replaced atomically and readers see whole files, old or new. On PostgreSQL the
database holds the lock too (a session advisory lock, released when the connection closes, however the
process ends), so two hosts that share the database but not the folder are kept apart as well.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from storage.artifacts import TEMP_MARKER
from storage.db import Database
from storage.errors import StorageError

LOCK_FILE = ".writer.lock"


class CollectionBusyError(StorageError):
    """Another process is writing this collection."""


class CollectionLock:
    """The writer's lock, exclusive; `shared` keeps every writer out but lets other readers of the whole
    collection (copies) hold it at the same time."""

    def __init__(
        self, folder: Path, what: str, shared: bool = False, db: Database | None = None, name: str = ""
    ) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.what = what
        self.shared = shared
        self._handle: IO[str] | None = None
        # the database's lock, where it has one: named after what it guards (e.g. the collection's owner stamp)
        self._held: Connection | None = None
        self._db = db if db is not None and db.engine.dialect.name == "postgresql" else None
        self._key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)

    def __enter__(self) -> CollectionLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError:
            if not self.shared or not self.path.is_file():
                raise
            handle = open(self.path)  # a reader's lock in a folder it may not write (a snapshot): shared all the same
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process (an indexer, or `indexer copy`)"
            handle.close()
            raise CollectionBusyError(
                f"{self.what} is being written by {holder}; wait for it to finish (a second writer would corrupt it)"
            ) from None
        if not self._lock_database():
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            raise CollectionBusyError(
                f"{self.what} is being written by a process on another host (the database holds its writer lock); "
                "wait for it to finish (a second writer would corrupt it)"
            )
        if not self.shared:  # the holder's name is the writer's to give
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            handle.flush()
        self._handle = handle
        return self

    def _lock_database(self) -> bool:
        """Take the database's advisory lock (shared or exclusive) on a connection held until release."""
        if self._db is None:
            return True
        how = "pg_try_advisory_lock_shared" if self.shared else "pg_try_advisory_lock"
        connection = self._db.engine.connect()
        taken = bool(connection.execute(text(f"SELECT {how}(:key)"), {"key": self._key}).scalar())
        connection.commit()  # the lock belongs to the session, not to a transaction left open
        if not taken:
            connection.close()
            return False
        self._held = connection
        return True

    def __exit__(self, *exc: object) -> None:
        if self._held is not None:
            how = "pg_advisory_unlock_shared" if self.shared else "pg_advisory_unlock"
            with contextlib.suppress(DBAPIError):  # a connection the server dropped has released it already
                self._held.execute(text(f"SELECT {how}(:key)"), {"key": self._key})
                self._held.commit()
            self._held.close()
            self._held = None
        if self._handle is not None:
            if not self.shared:
                self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def writer_active(folder: Path) -> bool:
    """Whether an indexer holds this folder's writer lock now (its files may be mid-checkpoint)."""
    try:
        with open(Path(folder) / LOCK_FILE) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


# Ours only: `.NAME.retrieval-PID-RANDOM.tmp` (storage.artifacts.write_atomic), or the older
# `.NAME.{vectors,faiss}.safetensors.PID.RANDOM.tmp` of earlier versions; nothing else is touched.
_TEMPORARY = re.compile(
    rf"^\..+\.{TEMP_MARKER}-(?P<pid>\d+)-[a-z0-9_]+\.tmp$|^\..+\.(?:vectors|faiss)\.safetensors\.(?P<old>\d+)\.[a-z0-9_]+\.tmp$"
)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files whose writer is dead (killed mid-write); the real files were never touched.

    Only the folders this program writes to are looked at (the vector folder and its `indexes/`, never
    the tree below), and only names that `write_atomic` makes, which carry the writer's pid: a live
    writer's file is kept, and a user's own `.*.tmp` files are never ours to delete.
    """
    removed = 0
    for where in (Path(folder), Path(folder) / "indexes"):
        for path in where.glob(".*.tmp"):
            match = _TEMPORARY.match(path.name)
            if match is None:
                continue
            pid = int(match["pid"] or match["old"])
            if pid != os.getpid() and _alive(pid):
                continue
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
