"""Local vs Ray indexing, and FAISS vs Milvus Lite search, on the digits collection (this machine).

    .venv/bin/python bench/scale_out.py [--repeats 2] [--postgres URL]

Indexing: the whole demo collection end to end (fresh database each run, medians of the repeats), with
the local executor (decode threads + encoders in this process) and with Ray actors (a local Ray cluster,
one actor per CPU; its start-up is timed apart). Search: p50/p99 over the test queries, every strategy,
with the collection's indexes on FAISS and on Milvus Lite. With --postgres, the Ray run writes its
metadata to that PostgreSQL database instead of SQLite.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import percentiles, write_report

from indexer.demo import DemoSpec, build_digits_manifest, datasets_dir
from indexer.pipeline import Indexer
from indexer.ray_executor import RayExecutor
from retrieval import SearchEngine
from retrieval.fusion import list_strategies, strategy_class
from retrieval.train import TrainConfig

STAGE = "decode+encode+write"


def index_once(url: str, manifest: Path, folder: Path, executor: str, backend: str) -> dict[str, float]:
    indexer = Indexer(url, vector_dir=folder / "vectors", vector_backend=backend, executor=executor)
    indexer.load_encoders()  # the driver's models are loaded before the clock starts, in both modes
    if executor == "ray":
        import ray

        started = time.perf_counter()
        cluster = indexer.executor()
        assert isinstance(cluster, RayExecutor)
        cluster.start()
        startup = time.perf_counter() - started
    else:
        startup = 0.0
    summary = indexer.run(manifest, roots=[datasets_dir()])
    if executor == "ray":
        ray.shutdown()
    return {
        "assets": summary.encoded,
        "seconds": summary.seconds - summary.stages["load encoders"],
        "stage_seconds": summary.stages[STAGE],
        "index_seconds": summary.stages["index"],
        "cluster_start_seconds": startup,
    }


def search_latency(url: str, manifest: Path, folder: Path) -> dict[str, dict[str, float]]:
    import csv

    engine = SearchEngine.open(url)
    engine.load_encoders()
    for name in list_strategies():
        cls = strategy_class(name)
        if cls.learns:
            engine.models.train(
                TrainConfig(name, label_field="digit", epochs=5, seed=0), folder / f"{name}.safetensors"
            )
    rows = [r for r in csv.DictReader(manifest.open()) if r["split"] == "test" and r["image"] and r["audio"]][:100]
    base = manifest.parent
    queries = [{"image": str(base / r["image"]), "audio": str(base / r["audio"])} for r in rows]
    out = {}
    for name in list_strategies():
        engine.search(image=queries[0]["image"], audio=queries[0]["audio"], strategy=name)  # builds its index
        times = []
        for q in queries:
            started = time.perf_counter()
            engine.search(image=q["image"], audio=q["audio"], strategy=name, k=10)
            times.append(time.perf_counter() - started)
        out[name] = percentiles(times)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--limit", type=int, help="digits items (default: all 2,000)")
    parser.add_argument("--postgres", help="SQLAlchemy URL of an empty PostgreSQL database for the Ray runs")
    args = parser.parse_args()
    report: dict = {"indexing": {}, "search": {}}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        manifest = build_digits_manifest(tmp / "digits", spec=DemoSpec(limit=args.limit))
        setups = {
            "local + FAISS + SQLite": ("local", "faiss", None),
            "Ray + FAISS + SQLite": ("ray", "faiss", None),
            "Ray + Milvus Lite + " + ("PostgreSQL" if args.postgres else "SQLite"): ("ray", "milvus", args.postgres),
        }
        for label, (executor, backend, url) in setups.items():
            runs = []
            for n in range(args.repeats):
                folder = tmp / f"{executor}-{backend}-{n}"
                spec = f"milvus:{folder / 'milvus.db'}" if backend == "milvus" else "faiss"
                db = url if url and n == args.repeats - 1 else f"sqlite:///{folder}/db.sqlite"
                runs.append(index_once(db, manifest, folder, executor, spec))
            last = runs[-1]
            med = {k: statistics.median(r[k] for r in runs) for k in last}
            med["assets_per_s"] = last["assets"] / med["seconds"]
            med["stage_assets_per_s"] = last["assets"] / med["stage_seconds"]
            report["indexing"][label] = {k: round(v, 2) for k, v in med.items()}
            print(label, report["indexing"][label], flush=True)
        for backend in ("faiss", "milvus"):
            folder = tmp / f"search-{backend}"
            url = f"sqlite:///{folder}/db.sqlite"
            spec = f"milvus:{folder / 'milvus.db'}" if backend == "milvus" else "faiss"
            Indexer(url, vector_dir=folder / "vectors", vector_backend=spec).run(manifest, roots=[datasets_dir()])
            report["search"][backend] = search_latency(url, manifest, folder)
            print(backend, report["search"][backend], flush=True)
    lines = [
        "# Scale-out: local vs Ray indexing, FAISS vs Milvus Lite search",
        "",
        "Digits demo collection (2,000 items, offline profile), this machine (2 cores). "
        f"Medians of {args.repeats} runs; models loaded before the clock starts.",
        "",
        "| setup | assets | end to end s | assets/s | decode+encode+write s | index s | Ray start s |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in report["indexing"].items():
        lines.append(
            f"| {label} | {r['assets']:.0f} | {r['seconds']:.1f} | {r['assets_per_s']:.0f} | "
            f"{r['stage_seconds']:.1f} | {r['index_seconds']:.1f} | {r['cluster_start_seconds']:.1f} |"
        )
    lines += [
        "",
        "Search, image + audio queries (100), k = 10, end to end through `SearchEngine.search`:",
        "",
        "| strategy | FAISS p50 ms | FAISS p99 ms | Milvus Lite p50 ms | Milvus Lite p99 ms |",
        "|---|---|---|---|---|",
    ]
    for name in report["search"]["faiss"]:
        f, m = report["search"]["faiss"][name], report["search"]["milvus"][name]
        lines.append(f"| {name} | {f['p50_ms']:.1f} | {f['p99_ms']:.1f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} |")
    write_report("scale_out", report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
