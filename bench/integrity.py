"""What the vector tables' checksums cost: writing a table, opening it for a search, verifying it whole.

One run, one synthetic table (N rows of 512-d float16 vectors, as a field stores them), written twice in
the same process: by the product (`VectorStorage.save`: a CRC-32 a block of 64 rows, the checksums and
their digest in the file) and by safetensors' own writer, as a table without checksums (what versions
before 0.15.0 wrote). Reported:

- write: seconds to save each way, and the ratio;
- open: what a search pays to open the table (header, memory maps, the digest against the database's
  record), the best of 50 rounds of 200 opens each way, alternating, and the ratio (goal: < 1.05);
- verify: seconds and GB/s to read the whole table against its checksums (`indexer check`, and every
  index build from the table).

    PYTHONPATH=. .venv/bin/python bench/integrity.py --rows 1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_report

from storage import VectorStorage, VectorTable
from storage.artifacts import damaged_rows, save_arrays

DIM = 512
KEY = "image@bench"
ROUNDS = 50  # of 200 opens each way, alternating; the best of each: this shared machine's load comes and goes


def table(rows: int) -> VectorTable:
    rng = np.random.default_rng(0)
    out = VectorTable(dim=DIM)
    out.ids = np.arange(1, rows + 1, dtype=np.int64)
    out.vectors = rng.standard_normal((rows, DIM), dtype=np.float32).astype(np.float16)
    return out


def opens(storage: VectorStorage, against_record: bool = True, count: int = 200) -> float:
    started = time.perf_counter()
    for _ in range(count):
        storage.load(KEY, against_record=against_record)
    return (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of 200 opens each way")
    args = parser.parse_args()
    data = table(args.rows)
    with tempfile.TemporaryDirectory() as folder:
        checked = VectorStorage(Path(folder) / "checked", owner="bench/1", recorded={})
        plain = VectorStorage(Path(folder) / "plain", owner="bench/1")
        plain.root.mkdir()
        started = time.perf_counter()
        checked.save(KEY, data)
        write_checked = time.perf_counter() - started
        checked.recorded = {k: d for k, d in checked.take_written().items() if d}  # what the database would hold
        started = time.perf_counter()
        header = {"field": KEY, "dim": DIM, "count": args.rows, "owner": "bench/1"}
        save_arrays(plain.path_for(KEY), {"ids": data.ids, "vectors": data.vectors}, header)
        write_plain = time.perf_counter() - started
        rounds = [(opens(checked), opens(checked, against_record=False), opens(plain)) for _ in range(args.rounds)]
        open_checked, open_unchecked, open_plain = (min(r[i] for r in rounds) for i in range(3))
        started = time.perf_counter()
        damage = damaged_rows(checked.path_for(KEY))
        verify = time.perf_counter() - started
        size = checked.path_for(KEY).stat().st_size
    assert not damage
    report = {
        "rows": args.rows,
        "dim": DIM,
        "bytes": size,
        "write_s": {"checksums": write_checked, "plain": write_plain, "ratio": write_checked / write_plain},
        "open_us": {
            "checksums": open_checked * 1e6,
            "checksums_without_record_check": open_unchecked * 1e6,
            "plain": open_plain * 1e6,
            "ratio": open_checked / open_plain,
        },
        "verify": {"seconds": verify, "gb_per_s": size / verify / 1e9},
    }
    markdown = "\n".join(
        [
            "# Vector table checksums: what they cost",
            "",
            f"`bench/integrity.py --rows {args.rows}`: one table of {args.rows:,} rows x {DIM}-d float16 "
            f"({size / 1e9:.2f} GB), with checksums (0.15.0) and without (safetensors' writer), in one run.",
            "",
            "| | with checksums | without | ratio |",
            "|---|---|---|---|",
            f"| write (s) | {write_checked:.2f} | {write_plain:.2f} | {write_checked / write_plain:.2f} |",
            f"| open for a search (µs, best of {args.rounds} x 200) | {open_checked * 1e6:.0f} | {open_plain * 1e6:.0f} "
            f"| {open_checked / open_plain:.3f} |",
            f"| of which the digest against the record (µs) | {(open_checked - open_unchecked) * 1e6:.1f} | – "
            f"| {(open_checked - open_unchecked) / open_plain:.3f} of an open |",
            f"| verify whole (`indexer check`, each index build) | {verify:.2f} s, {size / verify / 1e9:.2f} GB/s "
            "| – | – |",
            "",
            "Opening reads the header only: the array layout, the checksums' count against the rows, and the",
            "table's digest against the one the database recorded. What it covers: a table that is not the one",
            "on record (a backup restored over newer vectors, the database restored over newer tables, a file",
            "from elsewhere) and a table whose checksums do not fit its rows. A change of bytes inside the",
            "vectors is found by reading them: `indexer check`, and every index build, which refuses a damaged",
            "table.",
            "",
        ]
    )
    write_report("integrity", report, markdown)


if __name__ == "__main__":
    main()
