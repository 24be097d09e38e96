"""Behind Milvus, where do re-scored candidates' vectors come from: memory-mapped tables, or Milvus itself?

    .venv/bin/python bench/milvus_rescore.py [--items 20000] [--candidates 300] [--uri /tmp/x/milvus.db]

One 512-d field of synthetic clustered vectors stored both ways: a float16 table (memory-mapped, as the
search host opens it from shared storage) and a Milvus collection (Milvus Lite here; a server adds a
network round trip). For random candidate lists of late fusion's size, time the exact scores of the
candidates: a table lookup + product, against a Milvus query by primary key returning the vectors + the
same product. Cold table pages are measured too (the file dropped from the page cache first).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import clustered, percentiles, write_report

from storage import VectorStorage
from storage.milvus_store import MilvusStore, milvus_client


def drop_cache(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(descriptor)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--uri", help="a Milvus URI (default: Milvus Lite in a temporary folder)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="milvus-rescore-"))
    data = clustered(args.items, 512, seed=1)
    ids = np.arange(1, args.items + 1)
    storage = VectorStorage(work / "vectors")
    storage.write("image@enc", ids, 512, [data], {"encoder": "enc"})
    table = storage.load("image@enc", dim=512)
    client = milvus_client(args.uri or str(work / "milvus.db"))
    store = MilvusStore.create(client, "rescore", ids, data, "Flat", {})
    client.load_collection("rescore")
    rng = np.random.default_rng(0)
    query = data[0]
    times: dict[str, list[float]] = {"table (warm)": [], "table (cold pages)": [], "milvus query by id": []}
    for _ in range(args.rounds):
        wanted = np.sort(rng.choice(ids, args.candidates, replace=False))
        started = time.perf_counter()
        table.similarities(wanted, query)
        times["table (warm)"].append(time.perf_counter() - started)
        drop_cache(storage.path_for("image@enc"))
        cold = storage.load("image@enc", dim=512)
        started = time.perf_counter()
        cold.similarities(wanted, query)
        times["table (cold pages)"].append(time.perf_counter() - started)
        started = time.perf_counter()
        rows = store.client.query("rescore", ids=[int(i) for i in wanted], output_fields=["vector"])
        np.asarray([row["vector"] for row in rows], np.float32) @ query
        times["milvus query by id"].append(time.perf_counter() - started)
    result = {"items": args.items, "candidates": args.candidates, **{k: percentiles(v) for k, v in times.items()}}
    lines = [
        "# Re-scoring behind Milvus: vectors from memory-mapped tables or from Milvus",
        "",
        f"{args.items:,} 512-d vectors, {args.candidates} candidates per list, {args.rounds} lists; Milvus Lite.",
        "",
        "| source | p50 ms | p99 ms |",
        "|---|---|---|",
        *[f"| {k} | {v['p50_ms']} | {v['p99_ms']} |" for k, v in result.items() if isinstance(v, dict)],
        "",
    ]
    write_report("milvus_rescore", result, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
