"""How many rows must a compressed index re-score at ten million items? One 512-d field, measured alone.

The field is the first of bench/scale_10m.py's agreeing fields (one latent per item, 1,000 clusters,
20 % missing): 8M vectors, so each cluster holds ~8,000 near-duplicates. The product's index for that size
(`default_factory`: IVF2048,PQ256x4fs) finds a shortlist; its rows are re-scored exactly from the float16
table, as `search_concat` does. For 300 / 1,000 / 3,000 rows and four nprobe values: recall@10 against an
exact scan, and p50 of the FAISS search and of the re-scoring, the second of two passes (rows cached: the
8.3 GB table fits this machine's page cache when nothing else runs). The table, the truth, the index and the
codes are kept in --work and reused by the next run (one --work per --items). Then a middle stage tried and dropped:
8-bit PQ codes of the whole vectors (not residuals) re-ranking 1,000 or 3,000 candidates down to 300.

    .venv/bin/python bench/shortlist_10m.py --work /tmp/shortlist10m   # ~12 min the first time, 11 GB there
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one search thread, as the product searches one query

import faiss
import numpy as np
import torch  # noqa: F401 (loaded: the product casts float16 rows with torch in a process that has it)
from common import running_top, write_report
from scale_10m import DIM, MISSING, field_chunks

from storage import VectorStorage
from storage.faiss_store import FaissStore, default_factory
from storage.paging import scanning
from storage.vectors import VectorTable

KEY, QUERIES, K = "image@image_enc", 50, 10
ROWS, NPROBES = (300, 1000, 3000), (16, 32, 64, 128)


def table_of(work: Path, n: int) -> VectorTable:
    storage = VectorStorage(work)
    if not storage.exists(KEY):
        keep = np.random.default_rng((0, 0, 99)).random(n) >= MISSING  # scale_10m's first field, seed 0
        ids = np.arange(1, n + 1)[keep]
        storage.write(KEY, ids, DIM, field_chunks(n, keep, 0, 0, "agreeing"), {"encoder": "image_enc"})
    return storage.load(KEY, dim=DIM)


def queries_of(table: VectorTable) -> np.ndarray:
    """Items' own vectors plus N(0, 0.1²) noise, as scale_10m's queries."""
    rng = np.random.default_rng(7)
    base = table.lookup(table.ids[rng.choice(len(table), QUERIES, replace=False)])[0]
    q = base + 0.1 * rng.standard_normal(base.shape).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact_top(work: Path, table: VectorTable, q: np.ndarray, chunk: int = 500_000) -> np.ndarray:
    path = work / "truth.npy"
    if path.exists():
        return np.load(path)
    best_ids, best = np.zeros((len(q), 0), np.int64), np.zeros((len(q), 0), np.float32)
    for start in range(0, len(table), chunk):
        with scanning(table.vectors[start : start + chunk]) as rows:
            scores = q @ rows.astype(np.float32).T
        best_ids, best = running_top(best_ids, best, table.ids[start : start + chunk], scores, K)
    np.save(path, best_ids)
    return best_ids


def index_of(work: Path, table: VectorTable) -> faiss.Index:
    path = work / "pq4.faiss"
    if not path.exists():
        store = FaissStore.build(table.ids, table.vectors, default_factory(len(table), DIM))
        faiss.write_index(store.index, str(path))
    return faiss.read_index(str(path))


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return round(float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)])), 3)


def best_exact(table: VectorTable, ids: np.ndarray, q: np.ndarray) -> np.ndarray:
    return ids[np.argsort(-table.similarities(ids, q)[0])[:K]]


def sweep(index: faiss.Index, table: VectorTable, q: np.ndarray, truth: np.ndarray) -> list[dict]:
    rows = []
    for nprobe in NPROBES:
        faiss.extract_index_ivf(index).nprobe = nprobe
        for wanted in ROWS:
            for _ in range(2):  # the second pass is reported: the rows these queries touch are cached
                searched, rescored, found = [], [], []
                for vector in q:
                    started = time.perf_counter()
                    _, ids = index.search(vector[None], wanted)
                    middle = time.perf_counter()
                    found.append(best_exact(table, ids[0][ids[0] >= 0], vector))
                    searched.append(middle - started)
                    rescored.append(time.perf_counter() - middle)
            rows.append(
                {
                    "nprobe": nprobe,
                    "rows": wanted,
                    "recall": recall(found, truth),
                    "faiss_ms": round(1000 * float(np.median(searched)), 1),
                    "rescore_ms": round(1000 * float(np.median(rescored)), 1),
                }
            )
            print(rows[-1], flush=True)
    return rows


def middle_stage(
    work: Path, index: faiss.Index, table: VectorTable, q: np.ndarray, truth: np.ndarray, trained_on: int = 131_072
) -> list:
    """4-bit shortlist -> 8-bit PQ of the whole vector (M bytes) -> best 300 -> exact."""
    faiss.extract_index_ivf(index).nprobe = 128
    _, shortlist = index.search(q, max(ROWS))
    sample = table.vectors[
        np.sort(np.random.default_rng(0).choice(len(table), min(len(table), trained_on), replace=False))
    ]
    out = []
    for m in (64, 128):
        pq = faiss.ProductQuantizer(DIM, m, 8)
        pq.cp.niter = 10
        pq.train(np.ascontiguousarray(sample, np.float32))
        path = work / f"pq{m}x8.npy"
        if not path.exists():
            codes = np.lib.format.open_memmap(path, "w+", np.uint8, (len(table), m))
            for start in range(0, len(table), 262_144):
                with scanning(table.vectors[start : start + 262_144]) as rows:
                    codes[start : start + 262_144] = pq.compute_codes(np.ascontiguousarray(rows, np.float32))
            codes.flush()
        codes = np.load(path, mmap_mode="r")
        centroids = faiss.vector_to_array(pq.centroids).reshape(m, 256, DIM // m)
        for wanted in (1000, 3000):
            found = []
            for vector, candidates in zip(q, shortlist[:, :wanted]):
                candidates = candidates[candidates >= 0]
                lut = np.einsum("mkd,md->mk", centroids, vector.reshape(m, DIM // m))  # inner products
                approx = lut[np.arange(m), codes[np.searchsorted(table.ids, candidates)]].sum(axis=1)
                found.append(best_exact(table, candidates[np.argsort(-approx)[:300]], vector))
            out.append({"code_bytes": m, "from": wanted, "recall": recall(found, truth)})
            print(out[-1], flush=True)
    return out


def markdown(n: int, vectors: int, rows: list[dict], middle: list[dict], seconds: float) -> str:
    lines = [
        "# Rows a compressed index must re-score at ten million items (one 512-d field)",
        "",
        f"{n:,} items, the first agreeing field of bench/scale_10m.py ({vectors:,} vectors, 1,000"
        " clusters), IVF2048,PQ256x4fs, one FAISS thread; re-scored exactly from the float16 table; "
        f"{QUERIES} queries, recall@10 against an exact scan; p50 of the second pass (rows cached). "
        f"Wall time {seconds:.0f} s (a run that found the table, truth, index and codes of an earlier one in its"
        " --work; the first takes ~12 min).",
        "",
        "| nprobe | rows re-scored | recall@10 | FAISS p50 ms | re-scoring p50 ms |",
        "|---|---|---|---|---|",
        *[f"| {r['nprobe']} | {r['rows']:,} | {r['recall']:.3f} | {r['faiss_ms']} | {r['rescore_ms']} |" for r in rows],
        "",
        "An 8-bit PQ of the whole vector between the shortlist and the exact re-score (300 rows re-scored):",
        "",
        "| code bytes | re-ranked from | recall@10 |",
        "|---|---|---|",
        *[f"| {r['code_bytes']} | {r['from']:,} | {r['recall']:.3f} |" for r in middle],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--work", type=Path, required=True, help="where the table and codes go (not the repo)")
    parser.add_argument("--pq-sample", type=int, default=131_072, help="rows the middle stage's 8-bit PQ trains on")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    table = table_of(args.work, args.items)
    q = queries_of(table)
    truth = exact_top(args.work, table, q)
    index = index_of(args.work, table)
    rows = sweep(index, table, q, truth)
    middle = middle_stage(args.work, index, table, q, truth, args.pq_sample)
    seconds = time.perf_counter() - started
    report = {"items": args.items, "queries": QUERIES, "rows": rows, "middle_stage": middle, "seconds": seconds}
    write_report("shortlist_10m", report, markdown(args.items, len(table), rows, middle, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
