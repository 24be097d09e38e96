"""One writer per collection: an exclusive lock file beside its vectors, released even on SIGKILL.

fcntl locks belong to the process, so a killed indexer never leaves a stale lock behind. Searching
takes no lock: files are replaced atomically and readers see whole files, old or new.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

from storage.errors import StorageError


class CollectionBusyError(StorageError):
    """Another process is writing this collection."""


class CollectionLock:
    def __init__(self, folder: Path, what: str) -> None:
        self.path = Path(folder) / ".writer.lock"
        self.what = what
        self._handle: IO[str] | None = None

    def __enter__(self) -> CollectionLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise CollectionBusyError(
                f"{self.what} is being written by {holder}; wait for it to finish (a second writer would corrupt it)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.truncate(0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files whose writer is dead (killed mid-write); the real files were never touched.

    Temporary names carry the writer's pid (`.NAME.PID.RANDOM.tmp`), so a live searcher's file is kept.
    """
    removed = 0
    for path in Path(folder).rglob(".*.tmp"):
        parts = path.name.rsplit(".", 3)
        pid = int(parts[1]) if len(parts) == 4 and parts[1].isdigit() else None
        if pid is not None and pid != os.getpid() and _alive(pid):
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
