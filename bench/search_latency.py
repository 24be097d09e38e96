"""Search latency of every strategy next to a raw FAISS search over the same vectors, in the same run.

Synthetic clustered vectors, d = 512, three modalities (each missing for 20 % of items), 200 queries
carrying all three. Single-index strategies are compared with one raw search of the same index type;
late fusion over c channels with the sum of c raw searches.

    .venv/bin/python bench/search_latency.py [--sizes 10000 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from common import FIELDS, clustered, percentiles, synthetic_space, write_report

from retrieval.fusion import create_strategy  # noqa: E402
from retrieval.fusion.concat import concat_index, concat_query  # noqa: E402
from retrieval.space import EncodedQuery  # noqa: E402
from retrieval.train import TrainConfig, train  # noqa: E402


def queries(count: int, dim: int) -> list[EncodedQuery]:
    parts = [clustered(count, dim, 100 + i) for i in range(3)]
    return [EncodedQuery({(f.modality, f.encoder): parts[i][q] for i, f in enumerate(FIELDS)}) for q in range(count)]


def raw_times(index, vectors: list[np.ndarray], k: int) -> list[float]:  # noqa: ANN001
    out = []
    for v in vectors:
        started = time.perf_counter()
        index.search(v, k)
        out.append(time.perf_counter() - started)
    return out


def measure(n: int, count: int, k: int, work: Path) -> dict:
    space = synthetic_space(work / f"n{n}", n)
    qs = queries(count, 512)
    fields = list(FIELDS)
    dims = [512] * 3
    checkpoints = {}
    sample = space.item_ids()[: min(n, 4000)]
    for kind in ("gated", "cross_attention"):
        config = TrainConfig(kind, epochs=1, out_dim=128, hidden=128, width=64, heads=2, layers=1)
        checkpoints[kind] = str(train(space, sample, None, config, work / f"{kind}-{n}.safetensors").path)
    strategies = {"late": {}, "early": {}, "hybrid": {}, "gated": {"checkpoint": checkpoints["gated"]},
                  "cross_attention": {"checkpoint": checkpoints["cross_attention"]}}
    result: dict = {"items": n, "queries": count, "k": k, "strategies": {}}
    for name, params in strategies.items():
        strategy = create_strategy(name, **params)
        build = time.perf_counter()
        strategy.prepare(space)
        build = time.perf_counter() - build
        for q in qs[:5]:
            strategy.search(space, q, k)  # warm caches
        times = []
        for q in qs:
            started = time.perf_counter()
            strategy.search(space, q, k)
            times.append(time.perf_counter() - started)
        result["strategies"][name] = {**percentiles(times), "prepare_s": round(build, 2)}
    # raw FAISS over the same vectors, same index types, same run
    per_field = [raw_times(space.field_index(f), [q.vectors[(f.modality, f.encoder)] for q in qs], 100)
                 for f in fields]
    late_raw = [sum(t) for t in zip(*per_field)]
    early_index = concat_index(space, fields)
    early_raw = raw_times(early_index, [concat_query(fields, dims, q) for q in qs], k)
    learned = create_strategy("gated", checkpoint=checkpoints["gated"])
    learned_index = learned._index(space)
    learned_raw = raw_times(learned_index, [learned.fused_query(q) for q in qs], k)
    result["raw"] = {"one field (k=100)": percentiles(per_field[0]), "late: sum of 3 (k=100)": percentiles(late_raw),
                     "early index": percentiles(early_raw), "learned index": percentiles(learned_raw),
                     "factories": {"field": space.field_index(fields[0]).factory, "early": early_index.factory,
                                   "learned": learned_index.factory}}
    base = {"late": late_raw, "hybrid": late_raw, "early": early_raw, "gated": learned_raw,
            "cross_attention": learned_raw}
    for name, values in result["strategies"].items():
        reference = percentiles(base[name])["p50_ms"]
        values["raw_p50_ms"] = reference
        values["ratio_p50"] = round(values["p50_ms"] / reference, 2) if reference else None
    return result


def markdown(results: list[dict]) -> str:
    lines = ["# Search latency against raw FAISS", "",
             "Synthetic clustered vectors, d = 512, three modalities (20 % missing each), queries with all three, "
             "k = 10. Raw reference: late/hybrid = the sum of the three per-field FAISS searches (k = 100 "
             "candidates, as late fusion asks); early = one search of the concatenated index; gated and "
             "cross-attention = one search of the learned index. Target ratio <= 1.3.", "",
             "| items | strategy | p50 ms | p99 ms | raw p50 ms | ratio |", "|---|---|---|---|---|---|"]
    for r in results:
        for name, v in r["strategies"].items():
            lines.append(f"| {r['items']:,} | {name} | {v['p50_ms']} | {v['p99_ms']} | {v['raw_p50_ms']} | "
                         f"{v['ratio_p50']} |")
    lines.append("")
    for r in results:
        lines.append(f"Index types at {r['items']:,}: {r['raw']['factories']}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = [measure(n, args.queries, args.k, Path(folder)) for n in args.sizes]
    write_report("search_latency", {"results": results}, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
