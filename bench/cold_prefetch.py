"""Re-scoring rows that are not in memory: page faults one at a time, or the pages asked for first?

A search re-scores a shortlist of scattered rows from a memory-mapped float16 table (advised MADV_RANDOM,
storage/paging.py). When the rows are on disk every gathered row is a synchronous page fault, one read in
flight at a time. Asking the kernel for every row's page first (MADV_WILLNEED, one call a row) puts all
the reads in flight together. This measures both on a table written and opened as the product does, its
pages dropped from the page cache before each cold trial (posix_fadvise DONTNEED), and the same with the
rows resident, where the advice is pure overhead. The product asks (`storage.paging.will_need`) only in
tables larger than a quarter of physical memory; here it is made to ask whatever the table's size.

    .venv/bin/python bench/cold_prefetch.py --work /tmp/cold_prefetch   # ~1 min, 2.5 GB there
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401 (loaded: the product re-scores with torch in a process that has it)
from common import write_report

from storage import VectorStorage, paging
from storage.vectors import VectorTable

KEY, CHUNK = "image@enc-image", 200_000


def table_of(work: Path, n: int, dim: int) -> VectorTable:
    storage = VectorStorage(work)
    if not storage.exists(KEY):
        rng = np.random.default_rng(0)
        chunks = (rng.standard_normal((min(CHUNK, n - s), dim), np.float32) for s in range(0, n, CHUNK))
        storage.write(KEY, np.arange(1, n + 1), dim, chunks, {"encoder": "enc-image"})
    return storage.load(KEY, dim=dim)


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def trial(table: VectorTable, ids: np.ndarray, query: np.ndarray, prefetch: bool) -> tuple[float, float]:
    started = time.perf_counter()
    if prefetch:
        paging.will_need(table.vectors, np.searchsorted(table.ids, ids))
    advised = time.perf_counter()
    table.similarities(ids, query)
    return advised - started, time.perf_counter() - advised


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="where the table goes (not the repo)")
    parser.add_argument("--items", type=int, default=2_400_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rows", type=int, default=1000, help="rows a re-scoring gathers")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    paging.ASK_FROM_BYTES = 0  # ask in this table, whatever its size
    table = table_of(args.work, args.items, args.dim)
    path = VectorStorage(args.work).path_for(KEY)
    rng = np.random.default_rng(1)
    query = rng.standard_normal(args.dim).astype(np.float32)
    results: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.trials):
        for prefetch in (False, True):
            for state in ("cold", "warm"):
                ids = np.sort(rng.choice(table.ids, args.rows, replace=False))
                if state == "cold":
                    drop_cache(path)
                else:
                    table.similarities(ids, query)  # the rows resident, as after an earlier query
                key = f"{state}, {'MADV_WILLNEED first' if prefetch else 'page faults one by one'}"
                results.setdefault(key, []).append(trial(table, ids, query, prefetch))
    rows = []
    for key, times in sorted(results.items()):
        advise, gather = (np.median([t[i] for t in times]) * 1e3 for i in (0, 1))
        rows.append({"case": key, "advise_ms": round(advise, 2), "gather_ms": round(gather, 2)})
    markdown = "\n".join(
        [
            "# Re-scoring rows that are not in memory: faults one by one, or MADV_WILLNEED first",
            "",
            f"{args.rows:,} scattered rows of a {args.items:,} x {args.dim} float16 table opened as a search "
            f"opens it (MADV_RANDOM), re-scored by `VectorTable.similarities`; median of {args.trials} trials, "
            "fresh rows each. Cold: the table's pages dropped from the page cache first.",
            "",
            "| case | advice ms | gather + product ms | total ms |",
            "|---|---|---|---|",
            *(
                f"| {r['case']} | {r['advise_ms']} | {r['gather_ms']} | {r['advise_ms'] + r['gather_ms']:.2f} |"
                for r in rows
            ),
            "",
        ]
    )
    write_report("cold_prefetch", {"items": args.items, "dim": args.dim, "rows": rows}, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
