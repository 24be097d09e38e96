"""What an inverted file's item ids cost a search process: held in its lists, or in an IndexIDMap2 around it.

Builds one compressed index (`IVF…,PQ…x4fs`, the factory of a large collection) over random vectors in each
layout, writes it as the product does (`FaissStore.save`), then loads it in a fresh process and reports the
anonymous memory the loaded index holds, per vector, and the p50 of single-query searches. Each layout runs
in a process of its own, one after the other, so its resident memory is its own
(docs/benchmarks/notes/scale_10m.md, twelfth session).

    PYTHONPATH=. .venv/bin/python bench/id_map_memory.py --count 4000000 --dim 64
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import memory, percentiles

LAYOUTS = ("lists", "IndexIDMap2")


def build(path: Path, layout: str, count: int, dim: int, factory: str) -> None:
    import faiss

    from storage.faiss_store import FaissStore, row_chunks

    rng = np.random.default_rng(0)
    store = FaissStore(dim, factory)
    if layout == "IndexIDMap2":  # the layout of indexes written before `holds_ids`
        store.index = faiss.IndexIDMap2(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
    store.train(rng.standard_normal((64 * 1024, dim), np.float32))
    for start in range(0, count, 1 << 20):
        rows = rng.standard_normal((min(1 << 20, count - start), dim), np.float32)
        for ids, chunk in row_chunks(np.arange(start, start + len(rows)) * 7 + 1, rows):
            store.add(ids, chunk)
    store.save(path)


def load(path: Path, dim: int) -> dict[str, float]:
    from storage.faiss_store import FaissStore

    before = memory()["rssanon_mb"]
    store = FaissStore.load(path)
    held = memory()["rssanon_mb"] - before
    queries = np.random.default_rng(1).standard_normal((200, dim), np.float32)
    times = []
    for q in queries:
        started = time.perf_counter()
        store.search(q, 10)
        times.append(time.perf_counter() - started)
    return {"held_mb": round(held), "bytes_per_vector": round(held * 2**20 / len(store), 1), **percentiles(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--factory", default="IVF1024,PQ32x4fs")
    parser.add_argument("--phase", choices=["build", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--layout", choices=LAYOUTS, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "build":
        build(args.path, args.layout, args.count, args.dim, args.factory)
        return 0
    if args.phase == "load":
        print(json.dumps(load(args.path, args.dim)))
        return 0
    common = ["--count", str(args.count), "--dim", str(args.dim), "--factory", args.factory]
    with tempfile.TemporaryDirectory() as folder:
        for layout in LAYOUTS:
            path = Path(folder) / f"{layout}.safetensors"
            for phase in ("build", "load"):
                command = [sys.executable, __file__, "--phase", phase, "--layout", layout, "--path", str(path)]
                done = subprocess.run(command + common, capture_output=True, text=True, check=True)
            size = path.stat().st_size
            print(layout, {"file_mb": round(size / 2**20), **json.loads(done.stdout.splitlines()[-1])}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
