"""How long a compressed index's shortlist must be: recall@10 of one field's index, re-scored exactly from its
table, by shortlist length and nprobe, on the tables and indexes `scale_10m.py` built.

    PYTHONPATH=. .venv/bin/python bench/shortlist_recall.py --work /tmp/n1m [--queries 20] [--field image]
        [--factory IVF2048,PQ128x4fs IVF2048,PQ256x4fs]  (built here from the table, as the indexer builds them;
        default: the field's index that scale_10m.py built)

Truth is the exact top 10 by cosine over the whole table (float16, read a block at a time); a query's
shortlist is the index's top n, re-scored with the stored vectors, and its top 10 compared with the truth.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
from common import FIELDS, write_report

from storage import VectorStorage, VectorTable
from storage.faiss_store import FaissStore
from storage.paging import scanning

BLOCK = 200_000


def exact_top(table: VectorTable, query: np.ndarray, k: int) -> set[int]:
    parts = []
    for s in range(0, len(table.ids), BLOCK):
        with scanning(table.vectors[s : s + BLOCK]) as block:
            parts.append(np.asarray(block, np.float32) @ query)
    scores = np.concatenate(parts)
    return set(table.ids[np.argpartition(-scores, k)[:k]].tolist())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--field", default="image", choices=[f.modality for f in FIELDS])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--factory", nargs="+", help="build these instead of reading scale_10m.py's index")
    args = parser.parse_args()
    field = next(f for f in FIELDS if f.modality == args.field)
    table = VectorStorage(args.work / "vectors").load(field.key, dim=512)
    queries = np.load(args.work / "queries.npz")[field.key.replace("@", "__")][: args.queries].astype(np.float32)
    truths = [exact_top(table, q, args.k) for q in queries]
    stores = []
    for factory in args.factory or [None]:
        if factory is None:
            stores.append(FaissStore.load(next((args.work / "indexes").glob(f"field-{field.modality}_*"))))
        else:
            started = time.perf_counter()
            stores.append(FaissStore.build(table.ids, table.vectors, factory))
            print(f"{factory}: built in {time.perf_counter() - started:.0f} s", flush=True)
    rows = []
    for store in stores:
        ivf = faiss.extract_index_ivf(store.index)
        store.search(queries[:1], 10)  # load the index's pages before timing
        for nprobe in (128, 512):
            ivf.nprobe = nprobe
            for n in (300, 1000, 3000, 10000):
                recalls, started = [], time.perf_counter()
                for query, truth in zip(queries, truths):
                    ids = store.search(query[None], n)[1][0]
                    ids = ids[ids >= 0]
                    vectors, _ = table.lookup(ids)
                    top = ids[np.argsort(-(vectors @ query))[: args.k]]
                    recalls.append(len(truth & set(top.tolist())) / args.k)
                ms = 1000 * (time.perf_counter() - started) / len(queries)
                rows.append(
                    {
                        "factory": store.factory,
                        "code_bytes": ivf.code_size,
                        "nprobe": nprobe,
                        "shortlist": n,
                        "recall@10": round(float(np.mean(recalls)), 3),
                        "ms": round(ms, 1),
                    }
                )
                print(rows[-1], flush=True)
    header = (
        f"# Shortlist length for compressed indexes\n\n{len(table.ids):,} vectors of one 512-d field "
        f"({field.key}), {len(queries)} queries from `scale_10m.py`; recall@10 after exact re-scoring from the "
        "memory-mapped float16 table, against exact search over the whole table. ms: index search plus "
        "re-scoring, one query at a time.\n\n"
        "| index | code bytes | nprobe | shortlist | recall@10 | ms/query |\n|---|---|---|---|---|---|\n"
    )
    table_md = "".join(
        f"| {r['factory']} | {r['code_bytes']} | {r['nprobe']} | {r['shortlist']} | {r['recall@10']} | {r['ms']} |\n"
        for r in rows
    )
    write_report("shortlist_recall", {"rows": rows}, header + table_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
