"""Index choice: build time, memory per vector, query latency and recall@10 against exact search.

    .venv/bin/python bench/index_choice.py [--sizes 10000 100000 1000000] [--pq] [--hnsw-limit 100000]
        [--compressed PQ64 PQ128x4fs ...] [--shortlist 4 8]

Synthetic clustered unit vectors, d = 512, 200 queries near the data. Flat, HNSW32 (up to --hnsw-limit
items: building it for 1M takes tens of minutes on two cores), IVF (our default nlist and nprobe) and, with
--pq, IVF-PQ64. Checks that the default picked by size keeps recall@10 >= 0.95 and whether it is the
fastest that does among the kinds that can remove ids (HNSW cannot, so it is reported but never a default).
Compressed codes (--compressed, each after our IVF) are measured as the search uses them: a shortlist of
`--shortlist` x 10 candidates re-scored exactly from the float16 vectors, so recall and latency include
the re-scoring; bytes/vector is the index alone (the tables are memory-mapped, see bench/scale_10m.py).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import clustered, percentiles, write_report

from storage import FaissStore, default_factory


def ivf_factory(n: int, tail: str) -> str:
    return default_factory(max(n, 10_000)).split(",")[0] + "," + tail


def rescored(store: FaissStore, table: np.ndarray, query: np.ndarray, factor: int) -> np.ndarray:
    """The best 10 of a shortlist of factor x 10, by exact inner product with the float16 rows."""
    ids = store.search(query, 10 * factor)[1][0]
    ids = ids[ids >= 0]
    return ids[np.argsort(-(table[ids].astype(np.float32) @ query), kind="stable")[:10]]


def measure_compressed(
    n: int, data: np.ndarray, queries: np.ndarray, truth: np.ndarray, codes: list[str], factors: list[int]
) -> list[dict]:
    import faiss

    ids, table, rows = np.arange(n), data.astype(np.float16), []
    for code in codes:
        factory = ivf_factory(n, code)
        started = time.perf_counter()
        store = FaissStore.build(ids, table, factory)
        build = time.perf_counter() - started
        size = len(faiss.serialize_index(store.index))
        for factor in factors:
            times, found = [], []
            for q in queries:
                started = time.perf_counter()
                found.append(rescored(store, table, q, factor))
                times.append(time.perf_counter() - started)
            recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
            rows.append(
                {
                    "items": n,
                    "factory": f"{factory} + exact re-scoring of {10 * factor}",
                    "build_s": round(build, 2),
                    "bytes_per_vector": round(size / n, 1),
                    "recall@10": round(recall, 4),
                    **percentiles(times),
                    "default": factory == default_factory(n, 512),
                }
            )
            print(rows[-1], flush=True)
    return rows


def measure(
    n: int, pq: bool, hnsw_limit: int, pq_from: int, codes: list[str] | None = None, factors: list[int] | None = None
) -> list[dict]:
    data = clustered(n, 512, seed=1)
    rng = np.random.default_rng(2)
    queries = data[rng.choice(n, 200, replace=False)] + 0.05 * clustered(200, 512, seed=3)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = np.arange(n)
    exact = FaissStore.build(ids, data, "Flat")
    truth = exact.search(queries, 10)[1]
    if codes:
        return measure_compressed(n, data, queries, truth, codes, factors or [4])
    factories = (
        ["Flat"]
        + (["HNSW32"] if n <= hnsw_limit else [])
        + [ivf_factory(n, "Flat")]
        + ([ivf_factory(n, "PQ64")] if pq and n >= pq_from else [])
    )
    rows = []
    for factory in factories:
        started = time.perf_counter()
        try:
            store = FaissStore.build(ids, data, factory)
        except RuntimeError as exc:
            rows.append({"items": n, "factory": factory, "error": str(exc)[:120]})
            continue
        build = time.perf_counter() - started
        import faiss

        size = len(faiss.serialize_index(store.index))
        times, found = [], []
        for q in queries:
            started = time.perf_counter()
            found.append(store.search(q, 10)[1][0])
            times.append(time.perf_counter() - started)
        recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)]))
        rows.append(
            {
                "items": n,
                "factory": factory,
                "build_s": round(build, 2),
                "bytes_per_vector": round(size / n, 1),
                "recall@10": round(recall, 4),
                **percentiles(times),
                "default": factory == default_factory(n, 512),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--pq", action="store_true", help="also IVF-PQ64 (meant for 1M vectors)")
    parser.add_argument("--hnsw-limit", type=int, default=100_000)
    parser.add_argument("--pq-from", type=int, default=1_000_000, help="IVF-PQ only from this many vectors")
    parser.add_argument("--compressed", nargs="+", help="only these codes after IVF, re-scored (e.g. PQ64 PQ128x4fs)")
    parser.add_argument("--shortlist", type=int, nargs="+", default=[4], help="shortlist per result, re-scored")
    args = parser.parse_args()
    name = "index_choice_compressed" if args.compressed else "index_choice"
    rows: list[dict] = []
    for n in args.sizes:  # the report is rewritten after each size: a 1M run is long
        rows += measure(n, args.pq, args.hnsw_limit, args.pq_from, args.compressed, args.shortlist)
        print(rows[-1], flush=True)
        write_report(name, {"rows": rows}, markdown(rows, [m for m in args.sizes if m <= n]))
    return 0


def markdown(rows: list[dict], sizes: list[int]) -> str:
    lines = [
        "# Index choice",
        "",
        "d = 512, clustered synthetic vectors, 200 queries, recall@10 against exact search.",
        "",
        "| items | factory | default | build s | bytes/vector | recall@10 | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['items']:,} | {r['factory']} | | error: {r['error']} | | | | |")
            continue
        lines.append(
            f"| {r['items']:,} | {r['factory']} | {'yes' if r['default'] else ''} | {r['build_s']} | "
            f"{r['bytes_per_vector']} | {r['recall@10']} | {r['p50_ms']} | {r['p99_ms']} |"
        )
    defaults = [r for r in rows if r.get("default")]
    lines += [
        "",
        "Default by size keeps recall@10 >= 0.95: "
        + ("yes" if all(r["recall@10"] >= 0.95 for r in defaults) else "no")
        + ".",
        "",
    ]
    for n in sizes:
        fine = [
            r
            for r in rows
            if r["items"] == n and "error" not in r and r["recall@10"] >= 0.95 and not r["factory"].startswith("HNSW")
        ]
        fastest = min(fine, key=lambda r: r["p50_ms"])["factory"] if fine else "none"
        lines.append(
            f"- {n:,}: default {default_factory(n, 512)}; fastest with recall@10 >= 0.95 that can remove ids: {fastest}."
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
