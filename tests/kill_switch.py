"""The indexer's command line with a kill switch: `python tests/kill_switch.py WHERE N BYTES -- ARGS...`.

The process SIGKILLs itself at a chosen moment of its own writing, so a test's kill lands mid-write by
construction, on a machine of any speed (a kill sent from outside after a delay can land after the run
has finished, or before it has written anything):
- `write`: during its N-th artifact write (vector table or index), once BYTES bytes of the temporary file
  are written, or when the file is whole but not yet synced and renamed, if it is shorter;
- `rows`: at its N-th flush, after the vector tables are saved and before the rows that point at them
  are committed.
If the run never reaches that moment it ends as usual, and the test sees its exit status.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

from indexer import pipeline
from indexer.__main__ import main
from storage import artifacts


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Tripwire:
    """A file handle that dies once `limit` bytes have gone through it, the last write cut at the limit."""

    def __init__(self, handle: IO[bytes], limit: int) -> None:
        self.handle, self.left = handle, limit

    def write(self, data: bytes | memoryview) -> int:
        data = memoryview(data).cast("B")
        if len(data) < self.left:
            self.left -= len(data)
            return self.handle.write(data)
        self.handle.write(data[: self.left])
        self.handle.flush()
        die()
        raise AssertionError("unreachable")


def arm_write(nth: int, limit: int) -> None:
    real = artifacts.write_atomic_with
    count = 0

    def write_atomic_with(path: Path, fill: Callable[[IO[bytes]], object]) -> None:
        nonlocal count
        count += 1
        if count != nth:
            return real(path, fill)

        def tripped(handle: IO[bytes]) -> None:
            fill(Tripwire(handle, limit))  # type: ignore[arg-type]
            die()  # shorter than the limit: whole, but neither synced nor renamed

        return real(path, tripped)

    artifacts.write_atomic_with = write_atomic_with


def arm_rows(nth: int) -> None:
    count = 0

    def at_flush() -> None:
        nonlocal count
        count += 1
        if count == nth:
            die()

    pipeline.FAULTS["flush:tables-saved"] = at_flush


if __name__ == "__main__":
    where, nth, limit, separator, *args = sys.argv[1:]
    assert separator == "--", "usage: kill_switch.py write|rows N BYTES -- ARGS..."
    arm_write(int(nth), int(limit)) if where == "write" else arm_rows(int(nth))
    sys.exit(main(args))
