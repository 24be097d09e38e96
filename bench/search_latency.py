"""Search latency of every strategy next to a raw FAISS search over the same vectors, in the same run.

Synthetic clustered vectors, d = 512, three modalities (each missing for 20 % of items), 200 queries
carrying all three. Every page of the tables a search reads (the fields, a learned strategy's fused
vectors) is mapped before the timed queries, as in a process that has served a while: unmapped, each
query's first touch of its rows' pages was timed with it (late at 100k items, a query's gathers 4.7 ms
against 0.4 ms mapped, on a shared 2-core machine). Single-index strategies are compared with one raw
search of the same index type; late fusion over c channels with c raw searches made one after another
for each query (as a caller would), k = 100 candidates each. Indexes are dropped between strategies that
do not share them, so 1M items fit in memory.

    .venv/bin/python bench/search_latency.py [--sizes 10000 100000 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING, Any

import numpy as np
from common import FIELDS, ROOT, clustered, percentiles, stamp, synthetic_space, write_report

from retrieval.fusion import create_strategy
from retrieval.fusion.concat import concat_index, concat_query
from retrieval.fusion.learned import LearnedFusion
from retrieval.space import EncodedQuery
from retrieval.train import TrainConfig, train

if TYPE_CHECKING:
    from retrieval.fusion.base import FusionStrategy
    from retrieval.space import VectorSpace
    from storage import VectorStore


def queries(count: int, dim: int) -> list[EncodedQuery]:
    parts = [clustered(count, dim, 100 + i) for i in range(3)]
    return [EncodedQuery({(f.modality, f.encoder): parts[i][q] for i, f in enumerate(FIELDS)}) for q in range(count)]


def map_pages(strategy: FusionStrategy, space: VectorSpace) -> None:
    """Touch one value a row of every table the strategy's searches read, so every page of them is mapped."""
    tables = list(space.tables.values())
    if isinstance(strategy, LearnedFusion):
        tables.append(strategy.fused_table(space))
    for table in tables:
        float(np.asarray(table.vectors[:, 0], np.float32).sum())


def timed_searches(
    strategy: FusionStrategy, space: VectorSpace, qs: list[EncodedQuery], k: int
) -> tuple[list[float], list[float]]:
    """Each query's wall time, and its CPU time (this process's, all threads)."""
    for q in qs[:5]:
        strategy.search(space, q, k)  # warm caches
    times, cpu = [], []
    for q in qs:
        started, used = time.perf_counter(), time.process_time()
        strategy.search(space, q, k)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - used)
    return times, cpu


def measure(n: int, count: int, k: int, work: Path, written: dict[str, str], only: list[str] | None = None) -> dict:
    space = synthetic_space(work / f"n{n}", n)
    qs = queries(count, 512)
    fields = list(FIELDS)
    dims = [512] * 3
    checkpoints = {}
    sample = space.item_ids()[: min(n, 4000)]
    for kind in ("gated", "cross_attention"):
        config = TrainConfig(kind, epochs=1, out_dim=128, hidden=128, width=64, heads=2, layers=1)
        checkpoints[kind] = str(train(space, sample, None, config, work / f"{kind}-{n}.safetensors").path)
    # strategy label -> (strategy, params); each phase builds, measures, then drops its indexes
    phases: dict[str, tuple[str, dict[str, Any]]] = {
        "late": ("late", {}),
        "late (rescore=False)": ("late", {"rescore": False}),
        "hybrid": ("hybrid", {}),
        "early": ("early", {}),
        "gated": ("gated", {"checkpoint": checkpoints["gated"]}),
        "cross_attention": ("cross_attention", {"checkpoint": checkpoints["cross_attention"]}),
    }
    result: dict = {"items": n, "queries": count, "k": k, "strategies": {}, "raw": {}, "factories": {}, **written}
    index: VectorStore | None
    indexes: list[VectorStore] | None
    strategy: FusionStrategy | None
    for label, (name, params) in phases.items():
        if only and label not in only:
            continue
        strategy = create_strategy(name, **params)
        build = time.perf_counter()
        strategy.prepare(space)
        build = time.perf_counter() - build
        map_pages(strategy, space)
        times, cpu = timed_searches(strategy, space, qs, k)
        if name in ("late", "hybrid"):  # one raw search per unit, one after another, k = 100 each
            units = [[f] for f in fields] if name == "late" else [fields[:2], fields[2:]]
            indexes = [concat_index(space, unit) for unit in units]
            pairs = [
                [timed_raw(i, concat_query(unit, [512] * len(unit), q), 100) for i, unit in zip(indexes, units)]
                for q in qs
            ]
            reference = "late: 3 field searches (k=100)" if name == "late" else "hybrid: image+audio and text (k=100)"
            result["factories"][name] = indexes[0].factory
        elif name == "early":
            index = concat_index(space, fields)
            pairs = [[timed_raw(index, concat_query(fields, dims, q), k)] for q in qs]
            reference, result["factories"]["early"] = "early index", index.factory
        else:
            assert isinstance(strategy, LearnedFusion)
            index = strategy.fused_index(space)
            pairs = [[timed_raw(index, strategy.fused_query(q), k)] for q in qs]
            reference, result["factories"]["learned"] = "learned index", index.factory
        # per query: the wall and CPU time of its raw searches together
        raw, raw_cpu = [sum(w for w, _ in p) for p in pairs], [sum(c for _, c in p) for p in pairs]
        result["raw"][reference] = percentiles(raw)
        values = {**percentiles(times), "prepare_s": round(build, 2), "raw_p50_ms": percentiles(raw)["p50_ms"]}
        values["ratio_p50"] = round(values["p50_ms"] / values["raw_p50_ms"], 2)
        values["overhead_p50_ms"] = round(values["p50_ms"] - values["raw_p50_ms"], 3)
        # CPU time per query: what a busy machine's waits for a core leave out of the comparison
        values["cpu_ms"], values["raw_cpu_ms"] = round(1000 * mean(cpu), 3), round(1000 * mean(raw_cpu), 3)
        values["cpu_ratio"] = round(values["cpu_ms"] / values["raw_cpu_ms"], 2)
        result["strategies"][label] = values
        print(n, label, values, flush=True)
        index = indexes = strategy = None  # the raw references hold indexes too
        if label not in ("late", "late (rescore=False)"):  # the next phase reuses the field indexes
            space.drop_indexes()
            gc.collect()
    return result


def timed_raw(index: VectorStore, vector: np.ndarray, k: int) -> tuple[float, float]:
    """One raw search's wall time and CPU time."""
    started, used = time.perf_counter(), time.process_time()
    index.search(vector, k)
    return time.perf_counter() - started, time.process_time() - used


def markdown(results: list[dict]) -> str:
    lines = [
        "# Search latency against raw FAISS",
        "",
        "Synthetic clustered vectors, d = 512, three modalities (20 % missing each), queries with all three, "
        "k = 10; the tables' pages mapped before timing (a serving process's state). Raw reference, same run: "
        "late/hybrid = the three per-field FAISS searches one after another (k = 100 candidates, as late fusion "
        "asks); early = one search of the concatenated index; gated and cross-attention = one search of the "
        "learned index. Target ratio <= 1.3. Overhead = p50 - raw p50. CPU: this process's CPU time per query "
        "(mean), the strategy's and the raw searches', and their ratio: on a shared machine the wall times also "
        "hold the waits for a core.",
        "",
        "| items | strategy | p50 ms | p99 ms | raw p50 ms | ratio | overhead ms | CPU ms | raw CPU ms | CPU ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for name, v in r["strategies"].items():
            lines.append(
                f"| {r['items']:,} | {name} | {v['p50_ms']} | {v['p99_ms']} | {v['raw_p50_ms']} | "
                f"{v['ratio_p50']} | {v['overhead_p50_ms']} | {v.get('cpu_ms', '-')} | {v.get('raw_cpu_ms', '-')} | "
                f"{v.get('cpu_ratio', '-')} |"
            )
    lines.append("")
    for r in results:
        lines.append(f"Index types at {r['items']:,}: {r['factories']}.")
    lines.append("")
    for r in results:  # rows of other sizes are kept from earlier runs: each size says what wrote it
        written = (
            f"{r['date']} at commit {r['commit']} by `{r['command']}`"
            if "commit" in r
            else "2026-11-27, before the adaptive defaults (not re-run since: ~20 min at 1M)"
        )
        lines.append(f"- {r['items']:,} items: measured {written}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--strategies", nargs="+", help="measure only these labels (e.g. early gated)")
    parser.add_argument("--note", help="what the page should say of this run's machine (e.g. shared with other work)")
    args = parser.parse_args()
    # sizes measured in earlier runs are kept (a 1M run takes ~20 minutes here): results merge by size
    previous = ROOT / "docs" / "benchmarks" / "search_latency.json"
    kept = json.loads(previous.read_text()).get("results", []) if previous.exists() else []
    results = [r for r in kept if r["items"] not in args.sizes]
    written = stamp()
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            result = measure(n, args.queries, args.k, Path(folder), written, args.strategies)
            if args.note:
                result["note"] = args.note
            earlier = next((r for r in kept if r["items"] == n), None)
            if args.strategies and earlier:  # add to the rows measured before for this size
                for key in ("strategies", "raw", "factories"):
                    result[key] = {**earlier.get(key, {}), **result[key]}
            results.append(result)
    # written once, at the end: a page written after each size made every later size's stamp "-dirty"
    results.sort(key=lambda r: r["items"])
    write_report("search_latency", {"results": results}, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
