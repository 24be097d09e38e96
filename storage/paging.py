"""How the kernel reads a memory-mapped vector table: page by page for a search, ahead for a scan.

A search gathers a few hundred scattered rows of each table; the kernel's default read-around fetches a
window around every page fault (`read_ahead_kb`, 8 MB on this machine's disk), which is free while the
tables fit in memory and ruinous once they do not: at 10M items (25 GB of tables on a 24 GB machine) every
gathered 1 KB row brought in megabytes and evicted rows the next query needed. Measured here
(bench/scale_10m.py's tables, cold page cache, 900 random rows of a 2.4M x 512 float16 table): 1,630 ms and
1.6 MB read per row with the default advice, 46 ms and 3.9 KB per row with MADV_RANDOM. A scan (an index
build, a whole-table copy) wants the opposite: random advice reads it at 70 MiB/s, read-ahead at 330 MiB/s.
So a table is advised random when it is opened for searching, and a scan asks for read-ahead over the
rows it reads for as long as it reads them (`scanning`). A re-scoring then asks for its rows' pages before
it gathers them (`will_need`): page faults read one page at a time, the advice puts every read in flight.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# Rows read, cast, written or added at a time wherever a whole table passes through memory: 65,536 rows of
# 1,536-d float32 are 0.4 GB, so a chunk and a copy of it stay under 1 GB (1M items at once held 12-21 GB).
ROWS_AT_A_TIME = 65_536

_PAGE = mmap.PAGESIZE
# `will_need` asks only in a table file larger than a quarter of the memory the process may use (physical
# memory, or its control group's limit where lower): one that, beside the other fields' tables and the
# indexes, the page cache will not keep. Smaller tables stay resident after their first reads, and there
# asking costs: late at 1M (0.8 GB tables on 24 GB) 7.1 -> 8.3 ms p50 with the rows resident, against
# 29.2 -> 15.8 ms with the page cache dropped before each query. Judged by physical memory alone, gated's
# 2.6 GB fused table at 10M in an 8 GB cgroup was never asked in: 148 ms p50 with cold tables
# (docs/benchmarks/notes/scale_10m.md, twelfth session).


def _physical_memory() -> int:
    """Bytes of physical memory; 0 where the system does not say (then every table is asked in)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return 0


def _cgroup_limit(proc: Path = Path("/proc/self/cgroup"), root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The memory limit of this process's control group (v2 `memory.max`, v1 `memory.limit_in_bytes`), None
    where there is none or it cannot be read."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        parts = line.split(":", 2)  # hierarchy:controllers:path
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one unified hierarchy
            candidate = root / path.lstrip("/") / "memory.max"
        elif "memory" in controllers.split(","):
            candidate = root / "memory" / path.lstrip("/") / "memory.limit_in_bytes"
        else:
            continue
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit():  # v2 says "max" where unlimited, v1 a number near 2**63
            limits.append(int(text))
    return min(limits) if limits else None


def memory_available() -> int:
    """Bytes of memory this process may use: physical memory, or its control group's limit where lower."""
    known = [m for m in (_physical_memory(), _cgroup_limit()) if m]
    return min(known) if known else 0


ASK_FROM_BYTES = memory_available() // 4


def _mmap_of(array: np.ndarray) -> mmap.mmap | None:
    """The memory map under `array` (np.memmap and every view of one), if any and if it can be advised."""
    mapped = getattr(array, "_mmap", None)
    return mapped if mapped is not None and hasattr(mapped, "madvise") and array.size else None


def _address(mapped: mmap.mmap) -> int:
    return int(np.frombuffer(mapped, np.uint8, count=1).ctypes.data)


def _mapping(array: np.ndarray) -> tuple[mmap.mmap, int, int] | None:
    """The memory map under `array` and the page-aligned byte range of it that `array` spans, if any."""
    mapped = _mmap_of(array)
    if mapped is None:
        return None
    base = _address(mapped)
    low, high = np.lib.array_utils.byte_bounds(array)
    start = (low - base) // _PAGE * _PAGE
    return mapped, start, high - base - start


def _advise(array: np.ndarray, advice: int) -> None:
    found = _mapping(array)
    if found is not None:
        mapped, start, length = found
        mapped.madvise(advice, start, length)


def will_need(array: np.ndarray, rows: np.ndarray) -> None:
    """Ask the kernel for the pages of `rows` of a memory-mapped 2-d array before they are read: a gather
    then waits for reads that are all in flight together instead of faulting one page at a time. 1,000
    scattered rows of a cold 2.4M x 512 float16 table: 96 ms faulting, 18 ms asked for first; 3.6 vs 4.3
    ms when they are resident (bench/cold_prefetch.py). A no-op for arrays in memory and in files smaller
    than ASK_FROM_BYTES."""
    mapped = _mmap_of(array)
    if mapped is None or not len(rows) or len(mapped) < ASK_FROM_BYTES:
        return
    begins = array.ctypes.data - _address(mapped) + np.asarray(rows, np.int64) * array.strides[0]
    aligned = begins // _PAGE * _PAGE
    for start, length in zip(aligned.tolist(), (begins + array.strides[0] - aligned).tolist()):
        mapped.madvise(mmap.MADV_WILLNEED, start, length)


def release(array: np.ndarray) -> None:
    """Drop the pages of a memory-mapped `array` from this process (the page cache keeps them): a file read
    once front to back then never holds more than the block in hand. A no-op for arrays in memory."""
    _advise(array, mmap.MADV_DONTNEED)


def advise_random(array: np.ndarray) -> None:
    """Read only the pages `array`'s reads touch (no read-around); a no-op for arrays in memory."""
    _advise(array, mmap.MADV_RANDOM)


@contextmanager
def scanning(array: np.ndarray) -> Iterator[np.ndarray]:
    """The kernel's default read-around over `array` (a slice of a table advised random) while the block
    reads it front to back, random again after."""
    _advise(array, mmap.MADV_NORMAL)
    try:
        yield array
    finally:
        _advise(array, mmap.MADV_RANDOM)
