"""Flat search and exact re-scoring on a GPU (torch), next to the CPU, at 1M and 10M 512-d float16 vectors.

The lent GPU machine has torch and CUDA but no FAISS and no network, so this needs only torch and numpy.
Clustered unit vectors like bench/scale_10m.py's (1,000 centres, σ 0.35) are made on each device a chunk at a
time, stored as float16 as the tables are, and
- searched by brute force: one matrix product and a top-k per batch of queries, what FAISS's IndexFlatIP
  does (on a GPU, its GpuIndexFlatIP); a single query's p50/p99 and the throughput of batches;
- re-scored: a gather of a shortlist's rows and a product, what every strategy does after a compressed
  index (300 rows: a 512-d field's shortlist; 1,200: a 128-d learned index's; 3,000: the most);
- checked: recall@10 of float16 scoring against float32 scoring of the same vectors on a sample of queries.

    python bench/gpu_search.py [--sizes 1000000 10000000] [--devices cuda cpu] [--seconds 3] [--out FILE.json]

Prints JSON and a markdown table. With --out the JSON goes there (the GPU machine returns only $OUT); on this
machine the report goes to docs/benchmarks/gpu_search.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

DIM, CLUSTERS, SPREAD, CHUNK, K = 512, 1000, 0.35, 1 << 20, 10
RESCORED = (300, 1200, 3000)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_table(n: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """n unit vectors around CLUSTERS centres, float16, made a chunk at a time on `device`."""
    generator = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(CLUSTERS, DIM, generator=generator, device=device)
    table = torch.empty(n, DIM, dtype=torch.float16, device=device)
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        which = torch.randint(0, CLUSTERS, (rows,), generator=generator, device=device)
        x = centres[which] + SPREAD * torch.randn(rows, DIM, generator=generator, device=device)
        table[start : start + rows] = torch.nn.functional.normalize(x, dim=1).half()
    return table


def queries(table: torch.Tensor, count: int, seed: int = 1) -> torch.Tensor:
    """Queries near items: an item's vector plus N(0, 0.1²) a dimension, as scale_10m's."""
    generator = torch.Generator(device=table.device).manual_seed(seed)
    rows = torch.randint(0, len(table), (count,), generator=generator, device=table.device)
    noise = torch.randn(count, DIM, generator=generator, device=table.device)
    return torch.nn.functional.normalize(table[rows].float() + 0.1 * noise, dim=1)


def flat_search(table: torch.Tensor, q: torch.Tensor, k: int = K, fp32: bool = False) -> torch.Tensor:
    """Ids of the best k for each query: float16 products where the device has them, a chunk of rows at a
    time (a float32 copy of 10M rows would take 20 GB), the running best k merged after each chunk."""
    use_half = table.device.type == "cuda" and not fp32
    asked = q.half() if use_half else q.float()
    best_scores = torch.empty((len(q), 0), device=table.device)
    best_ids = torch.zeros((len(q), 0), dtype=torch.long, device=table.device)
    for start in range(0, len(table), CHUNK):
        block = table[start : start + CHUNK]
        scores = (asked @ (block if use_half else block.float()).T).float()
        top = scores.topk(min(k, scores.shape[1]), dim=1)
        merged = torch.cat([best_scores, top.values], 1)
        ids = torch.cat([best_ids, top.indices + start], 1)
        keep = merged.topk(k, dim=1).indices
        best_scores, best_ids = merged.gather(1, keep), ids.gather(1, keep)
    return best_ids


def rescore(table: torch.Tensor, q: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Exact scores of a shortlist: gather its rows, cast, one product (as `VectorTable.similarities`)."""
    return table[rows].float() @ q.float()


def timed(device: torch.device, fn: Callable[[], Any], seconds: float, least: int = 3) -> list[float]:
    """Seconds of each call of `fn`, after one warm-up call, for about `seconds` (at least `least` calls)."""
    fn()
    synchronise(device)
    out: list[float] = []
    started = time.perf_counter()
    while len(out) < least or time.perf_counter() - started < seconds:
        t = time.perf_counter()
        fn()
        synchronise(device)
        out.append(time.perf_counter() - t)
    return out


def ms(values: list[float]) -> dict[str, float]:  # common.percentiles, whose module imports FAISS (absent there)
    ordered = sorted(values)
    return {
        "p50_ms": round(1000 * float(np.median(ordered)), 3),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 3),
    }


def measure(n: int, device: torch.device, seconds: float) -> dict[str, Any]:
    started = time.perf_counter()
    table = make_table(n, device)
    synchronise(device)
    row: dict[str, Any] = {"items": n, "device": device.type, "make_s": round(time.perf_counter() - started, 1)}
    qs = queries(table, 256)
    position = iter(range(1 << 30))

    def single() -> torch.Tensor:  # a different query each call
        i = next(position) % len(qs)
        return flat_search(table, qs[i : i + 1])

    row["single"] = ms(timed(device, single, seconds))
    batch = timed(device, lambda: flat_search(table, qs), seconds, least=1)
    row["batch_256_qps"] = round(256 / float(np.median(batch)), 1)
    sample = qs[:20]
    exact = flat_search(table, sample, fp32=True)
    fast = flat_search(table, sample)
    row["recall@10_fp16_vs_fp32"] = round(
        float(np.mean([len(set(a.tolist()) & set(b.tolist())) / K for a, b in zip(fast.cpu(), exact.cpu())])), 4
    )
    generator = torch.Generator(device=device).manual_seed(2)
    for count in RESCORED:
        rows = torch.randint(0, n, (count,), generator=generator, device=device).sort().values
        row[f"rescore_{count}"] = ms(timed(device, partial(rescore, table, qs[0], rows), seconds / 3))
    if device.type == "cuda":
        row["gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
        row["gpu"] = torch.cuda.get_device_name(device)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Flat search and exact re-scoring on a GPU, next to the CPU (torch)",
        "",
        f"{DIM}-d float16 unit vectors ({CLUSTERS} clusters), made on the device; one query's flat search (matrix "
        "product and top-10), batches of 256, re-scoring a shortlist's rows, and float16 against float32 "
        "top 10. `bench/gpu_search.py`.",
        "",
        "| items | device | single query p50 / p99 ms | batch of 256: queries/s | re-score 300 / 1,200 / 3,000 "
        "rows, p50 ms | recall@10 fp16 vs fp32 | device memory GB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rescored = " / ".join(str(r[f"rescore_{c}"]["p50_ms"]) for c in RESCORED)
        lines.append(
            f"| {r['items']:,} | {r.get('gpu', r['device'])} | {r['single']['p50_ms']} / {r['single']['p99_ms']} | "
            f"{r['batch_256_qps']} | {rescored} | {r['recall@10_fp16_vs_fp32']} | {r.get('gpu_memory_gb', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--devices", nargs="+", default=["cuda", "cpu"])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement")
    parser.add_argument("--out", type=Path, help="write the JSON here (default: docs/benchmarks/gpu_search.json)")
    args = parser.parse_args()
    devices = [torch.device(d) for d in args.devices if d != "cuda" or torch.cuda.is_available()]
    rows = []
    for n in args.sizes:
        for device in devices:
            rows.append(measure(n, device, args.seconds))  # its table is freed on return
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": torch.get_num_threads()},
        "rows": rows,
    }
    out = args.out or Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "gpu_search.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
