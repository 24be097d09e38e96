"""The product's search on a Milvus server beside FAISS: index build time and late/early search p50/p99.

    .venv/bin/python bench/milvus_server.py --uri http://127.0.0.1:19530 [--items 2000] [--queries 50]
    [--consistency Strong] [--name milvus_server] [--server-pid PID]

Synthetic clustered vectors (three 512-d fields, each missing for 20 % of items; bench/common.py), searched
through the strategies' own `search` (query vectors made once, outside the timings) on a space whose
catalog keeps its indexes in FAISS files, then in a fresh database on the Milvus server. `--consistency`
forces one level on every Milvus search (Strong: what every search asked for before issue 39), to measure
the before beside the after. Build time is the strategy's `prepare` (the indexes made and recorded).
Agreement: the share of FAISS's top k that the server's search returns, over every query. Recall: the share
of the exact top k (the same strategy on exact FAISS indexes, factory Flat) that each backend returns. On
the server, late is timed twice, alternating query by query: its units' searches sent together (the
product) and one at a time (before). Memory: this
process's resident memory after each backend's runs, and the server's (`--server-pid`: its process tree,
e.g. `$(cat /tmp/retrieval-milvus/launcher.pid)` for scripts/milvus.sh's) after its indexes are loaded.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from common import memory, percentiles, stamp, synthetic_space, write_report
from search_latency import queries

import storage.milvus_store as milvus_store
from retrieval.fusion import create_strategy
from retrieval.fusion.base import FusionStrategy
from retrieval.space import EncodedQuery, VectorSpace
from storage import Collection, Database
from storage.catalog import IndexCatalog
from storage.vector_store import open_backend


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, MiB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0) / 1024
    return round(total)


def measure(
    spec: str, work: Path, items: int, count: int, k: int, server_pid: int | None = None, factory: str | None = None
) -> dict:
    space = synthetic_space(work / "vectors", items)
    space.factory = factory
    db = Database(f"sqlite:///{work}/bench-{uuid.uuid4().hex[:6]}.db")
    with db.session() as session:
        session.add(Collection(id=1, name="bench", vector_dir=str(work / "vectors")))
    space.catalog = IndexCatalog(db, 1, open_backend(spec, work / "indexes"))
    qs = queries(count, 512)
    result: dict = {}
    for name in ("late", "early"):
        strategy = create_strategy(name)
        started = time.perf_counter()
        strategy.prepare(space)
        build = time.perf_counter() - started
        for q in qs[:3]:
            strategy.search(space, q, k)  # warm: the first search after a build
        times, one_at_a_time, top = [], [], []
        for q in qs:
            if name == "late" and spec.startswith("milvus:"):
                one_at_a_time.append(_sequential(strategy, space, q, k))
            started = time.perf_counter()
            hits = strategy.search(space, q, k)
            times.append(time.perf_counter() - started)
            top.append(_ids(hits))
        result[name] = {"build_s": round(build, 2), **percentiles(times), "top": top}
        if one_at_a_time:
            result["late, one search at a time"] = {"build_s": None, **percentiles(one_at_a_time), "top": top}
    result["memory"] = {"search_host_rss_mb": memory()["vmrss_mb"]}
    if server_pid is not None and spec.startswith("milvus:"):
        result["memory"]["server_rss_mb"] = tree_rss_mb(server_pid)
    return result


def _sequential(strategy: FusionStrategy, space: VectorSpace, q: EncodedQuery, k: int) -> float:
    """One search with its units' searches sent one at a time (as before they were sent together)."""
    milvus_store.MilvusStore.remote = False
    try:
        started = time.perf_counter()
        strategy.search(space, q, k)
        return time.perf_counter() - started
    finally:
        milvus_store.MilvusStore.remote = True


def _share(found: list[list[int]], reference: list[list[int]]) -> float:
    """The share of `reference`'s ids, query by query, that `found` holds."""
    return round(sum(len(set(a) & set(b)) for a, b in zip(found, reference)) / max(1, sum(map(len, reference))), 4)


def _ids(hits: list) -> list[int]:
    return [int(h.item_id) for h in hits]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help="the Milvus server, http://HOST:PORT")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--consistency", help="force this level on every Milvus search (the before)")
    parser.add_argument("--server-pid", type=int, help="the server's process, to report its resident memory")
    parser.add_argument(
        "--name",
        default="milvus_server",
        help="report name under docs/benchmarks (milvus_server_before with --consistency Strong)",
    )
    args = parser.parse_args()
    if args.consistency:
        milvus_store.CONSISTENCY.update(search=args.consistency, first_search=args.consistency)
    from pymilvus import MilvusClient

    database = f"bench_{uuid.uuid4().hex[:8]}"
    admin = MilvusClient(args.uri)
    admin.create_database(database)
    try:
        runs = {}
        server = f"milvus:{args.uri.rstrip('/')}/{database}"
        for label, spec, factory in (
            ("exact", "faiss", "Flat"),
            ("faiss", "faiss", None),
            ("milvus server", server, None),
        ):
            work = Path(tempfile.mkdtemp(prefix="milvus-server-"))
            runs[label] = measure(spec, work, args.items, args.queries, args.k, args.server_pid, factory)
    finally:
        inside = MilvusClient(args.uri, db_name=database)
        for collection in inside.list_collections():
            inside.drop_collection(collection)
        admin.drop_database(database)
    exact = runs.pop("exact")
    same = {s: runs["faiss"][s]["top"] == runs["milvus server"][s]["top"] for s in ("late", "early")}
    agreement = {s: _share(runs["milvus server"][s]["top"], runs["faiss"][s]["top"]) for s in ("late", "early")}
    recall = {
        label: {s: _share(run[s]["top"], exact[s]["top"]) for s in ("late", "early")} for label, run in runs.items()
    }
    report = {
        **stamp(),
        "items": args.items,
        "queries": args.queries,
        "k": args.k,
        "server": admin.get_server_version(),
        "consistency": args.consistency or dict(milvus_store.CONSISTENCY),
        "same_top_k": same,
        "agreement_with_faiss": agreement,
        "recall_of_exact_top_k": recall,
        "memory": {label: run.pop("memory") for label, run in runs.items()},
        "runs": {
            label: {s: {k: v for k, v in r.items() if k != "top"} for s, r in run.items()}
            for label, run in runs.items()
        },
    }
    lines = [
        f"# The product's search on a Milvus server ({report['server']}) beside FAISS",
        "",
        f"{args.items:,} items, three 512-d fields, {args.queries} queries, k = {args.k}; search consistency: "
        f"{args.consistency or 'per operation (Strong first, then Bounded)'}. Same top {args.k} as FAISS: {same}; "
        f"share of FAISS's top {args.k} found: {agreement}; share of the exact top {args.k} found: {recall}. "
        f"Resident memory after the runs: {report['memory']}.",
        "",
        f"Written by `{report['command']}` at {report['commit']} on {report['date']}.",
        "",
        "| backend | strategy | build s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
        *[
            f"| {label} | {s} | {'' if r['build_s'] is None else r['build_s']} | {r['p50_ms']} | {r['p99_ms']} |"
            for label, run in report["runs"].items()
            for s, r in run.items()
        ],
        "",
    ]
    print("\n".join(lines))
    write_report(args.name, report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
