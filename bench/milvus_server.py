"""The product's search on a Milvus server beside FAISS: index build time and late/early search p50/p99.

    .venv/bin/python bench/milvus_server.py --uri http://127.0.0.1:19530 [--items 2000] [--queries 50]
    [--consistency Strong] [--name milvus_server] [--server-pid PID] [--before CHECKOUT]

Synthetic clustered vectors (three 512-d fields, each missing for 20 % of items; bench/common.py), searched
through the strategies' own `search` (query vectors made once, outside the timings) on a space whose
catalog keeps its indexes in FAISS files, then in a fresh database on the Milvus server. `--consistency`
forces one level on every Milvus search (Strong: what every search asked for before issue 39), to measure
the before beside the after. Build time is the strategy's `prepare` (the indexes made and recorded).
Agreement: the share of FAISS's top k that the server's search returns, over every query. Recall: the share
of the exact top k (the same strategy on exact FAISS indexes, factory Flat) that each backend returns. On
the server, late is timed twice, alternating query by query: its units' searches sent together (the
product) and one at a time (before). On every backend, what a late search waits for without its fusion:
its index searches for 100 candidates, one field's alone and all three at once (`bare_searches`).
`--before CHECKOUT` (a checkout of the code before a change, e.g. `git worktree add /tmp/before main`) times
that code's search on the server too, in a process of its own, alternating query by query with this
checkout's (the machine's load moves both alike); the page gives the load average at the start and the end.
Memory: this
process's resident memory after each backend's runs, and the server's (`--server-pid`: its process tree,
e.g. `$(cat /tmp/retrieval-milvus/launcher.pid)` for scripts/milvus.sh's) after its indexes are loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import memory, percentiles, stamp, synthetic_space, write_report
from search_latency import queries

import storage.milvus_store as milvus_store
from retrieval.fusion import create_strategy
from retrieval.fusion.base import FusionStrategy
from retrieval.fusion.late import search_pool
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


def bench_space(spec: str, work: Path, items: int, factory: str | None = None) -> VectorSpace:
    """The synthetic space under `work`, its indexes kept by the backend `spec`."""
    space = synthetic_space(work / "vectors", items)
    space.factory = factory
    db = Database(f"sqlite:///{work}/bench-{uuid.uuid4().hex[:6]}.db")
    with db.session() as session:
        session.add(Collection(id=1, name="bench", vector_dir=str(work / "vectors")))
    space.catalog = IndexCatalog(db, 1, open_backend(spec, work / "indexes"))
    return space


class Before:
    """The same search in another checkout (`--before`: the code before a change), in a process of its own
    that serves it query by query (`--serve`), so that its searches alternate with this checkout's."""

    def __init__(self, checkout: Path, spec: str, items: int, count: int, k: int) -> None:
        command = [sys.executable, __file__, "--serve", spec, "--items", str(items), "--queries", str(count)]
        env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
        self.process = subprocess.Popen(
            [*command, "--k", str(k)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.build: dict[str, float] = json.loads(self._line())
        self.commit = subprocess.run(
            ["git", "-C", str(checkout), "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip()
        self.times: dict[str, list[float]] = {}
        self.top: dict[str, list[list[int]]] = {}

    def _line(self) -> str:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            raise RuntimeError(f"the --before checkout's search process stopped (exit {self.process.wait()})")
        return line

    def search(self, name: str, query: int) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{name} {query}\n")
        self.process.stdin.flush()
        answer = json.loads(self._line())
        self.times.setdefault(name, []).append(answer["s"])
        self.top.setdefault(name, []).append(answer["top"])

    def result(self) -> dict:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()
        return {
            name: {"build_s": round(self.build[name], 2), **percentiles(times), "top": self.top[name]}
            for name, times in self.times.items()
        }


def serve(spec: str, items: int, count: int, k: int) -> int:
    """`--serve`: build the space on `spec`, prepare late and early, then answer "STRATEGY QUERY" lines with
    the search's seconds and top ids (JSON), one line each: `Before`'s other end."""
    space = bench_space(spec, Path(tempfile.mkdtemp(prefix="milvus-server-before-")), items)
    qs = queries(count, 512)
    strategies, build = {}, {}
    for name in ("late", "early"):
        strategies[name] = create_strategy(name)
        started = time.perf_counter()
        strategies[name].prepare(space)
        build[name] = time.perf_counter() - started
        for q in qs[:3]:
            strategies[name].search(space, q, k)  # warm: the first search after a build
    print(json.dumps(build), flush=True)
    for line in sys.stdin:
        name, query = line.split()
        started = time.perf_counter()
        hits = strategies[name].search(space, qs[int(query)], k)
        print(json.dumps({"s": time.perf_counter() - started, "top": _ids(hits)}), flush=True)
    return 0


def measure(
    spec: str,
    work: Path,
    items: int,
    count: int,
    k: int,
    server_pid: int | None = None,
    factory: str | None = None,
    before: Before | None = None,
) -> dict:
    """Build time and search p50/p99 of late and early on `spec`; on a server also late with its searches one
    at a time and, with `before`, the other checkout's search, each alternating with the product's query by
    query (which goes first alternates too)."""
    space = bench_space(spec, work, items, factory)
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
        for n, q in enumerate(qs):
            if before is not None and n % 2:
                before.search(name, n)
            if name == "late" and spec.startswith("milvus:"):
                one_at_a_time.append(_sequential(strategy, space, q, k))
            started = time.perf_counter()
            hits = strategy.search(space, q, k)
            times.append(time.perf_counter() - started)
            top.append(_ids(hits))
            if before is not None and not n % 2:
                before.search(name, n)
        result[name] = {"build_s": round(build, 2), **percentiles(times), "top": top}
        if one_at_a_time:
            result["late, one search at a time"] = {"build_s": None, **percentiles(one_at_a_time), "top": top}
    result.update(bare_searches(space, qs))
    result["memory"] = {"search_host_rss_mb": memory()["vmrss_mb"]}
    if server_pid is not None and spec.startswith("milvus:"):
        result["memory"]["server_rss_mb"] = tree_rss_mb(server_pid)
    return result


def bare_searches(space: VectorSpace, qs: list[EncodedQuery], n: int = 100) -> dict[str, dict]:
    """What a late search waits for, without fusion: its units' index searches for `n` candidates (late's
    list), one field's alone and all three at once (as late sends them to a server), alternating."""
    stores = [space.loaded_indexes[("field", f.key)] for f in space.fields]
    one, together = [], []
    for q in qs:
        vectors = [q.vectors[(f.modality, f.encoder)] for f in space.fields]
        started = time.perf_counter()
        stores[0].search(vectors[0], n)
        one.append(time.perf_counter() - started)
        started = time.perf_counter()
        list(search_pool().map(lambda store, vector: store.search(vector, n), stores, vectors))
        together.append(time.perf_counter() - started)
    return {
        "one field's index search alone": {"build_s": None, **percentiles(one)},
        "three fields' index searches at once": {"build_s": None, **percentiles(together)},
    }


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
    parser.add_argument("--uri", help="the Milvus server, http://HOST:PORT")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--consistency", help="force this level on every Milvus search (the before)")
    parser.add_argument("--server-pid", type=int, help="the server's process, to report its resident memory")
    parser.add_argument("--before", type=Path, help="a checkout of the code before a change, timed alternately")
    parser.add_argument("--serve", metavar="SPEC", help=argparse.SUPPRESS)  # `Before`'s search process
    parser.add_argument(
        "--name",
        default="milvus_server",
        help="report name under docs/benchmarks (milvus_server_before with --consistency Strong)",
    )
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.items, args.queries, args.k)
    if not args.uri:
        parser.error("--uri is required")
    if args.consistency:
        milvus_store.CONSISTENCY.update(search=args.consistency, first_search=args.consistency)
    load = os.getloadavg()[0]
    runs, server = run_all(args)
    report = summary(args, runs, server)
    report["load_average"] = {"start": round(load, 2), "end": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}
    write_report(args.name, report, page(args, report))
    return 0


def run_all(args: argparse.Namespace) -> tuple[dict[str, dict], str]:
    """Exact FAISS, FAISS and the server (and the `--before` checkout's search on it), each on a database of
    its own on the server, dropped afterwards; also the server's version."""
    from pymilvus import MilvusClient

    admin = MilvusClient(args.uri)
    databases = [f"bench_{uuid.uuid4().hex[:8]}" for _ in range(2 if args.before else 1)]
    for database in databases:
        admin.create_database(database)
    specs = [f"milvus:{args.uri.rstrip('/')}/{database}" for database in databases]
    try:
        before = Before(args.before, specs[1], args.items, args.queries, args.k) if args.before else None
        runs = {}
        for label, spec, factory in (
            ("exact", "faiss", "Flat"),
            ("faiss", "faiss", None),
            ("milvus server", specs[0], None),
        ):
            work = Path(tempfile.mkdtemp(prefix="milvus-server-"))
            on_server = before if spec == specs[0] else None
            runs[label] = measure(spec, work, args.items, args.queries, args.k, args.server_pid, factory, on_server)
        if before is not None:
            runs[f"milvus server, before ({before.commit})"] = before.result()
    finally:
        for database in databases:
            inside = MilvusClient(args.uri, db_name=database)
            for collection in inside.list_collections():
                inside.drop_collection(collection)
            admin.drop_database(database)
    return runs, admin.get_server_version()


def summary(args: argparse.Namespace, runs: dict[str, dict], server: str) -> dict:
    exact = runs.pop("exact")
    strategies = ("late", "early")
    on_server = [label for label in runs if label != "faiss"]
    same = {label: {s: runs["faiss"][s]["top"] == runs[label][s]["top"] for s in strategies} for label in on_server}
    agreement = {
        label: {s: _share(runs[label][s]["top"], runs["faiss"][s]["top"]) for s in strategies} for label in on_server
    }
    recall = {label: {s: _share(run[s]["top"], exact[s]["top"]) for s in strategies} for label, run in runs.items()}
    return {
        **stamp(),
        "items": args.items,
        "queries": args.queries,
        "k": args.k,
        "server": server,
        "consistency": args.consistency or dict(milvus_store.CONSISTENCY),
        "same_top_k": same,
        "agreement_with_faiss": agreement,
        "recall_of_exact_top_k": recall,
        "memory": {label: run.pop("memory") for label, run in runs.items() if "memory" in run},
        "runs": {
            label: {s: {k: v for k, v in r.items() if k != "top"} for s, r in run.items()}
            for label, run in runs.items()
        },
    }


def page(args: argparse.Namespace, report: dict) -> str:
    lines = [
        f"# The product's search on a Milvus server ({report['server']}) beside FAISS",
        "",
        f"{args.items:,} items, three 512-d fields, {args.queries} queries, k = {args.k}; search consistency: "
        f"{args.consistency or 'per operation (Strong first, then Bounded)'}. Same top {args.k} as FAISS: "
        f"{report['same_top_k']}; share of FAISS's top {args.k} found: {report['agreement_with_faiss']}; share of "
        f"the exact top {args.k} found: {report['recall_of_exact_top_k']}. Resident memory after the runs: "
        f"{report['memory']}. The machine's load average (1 min): {report['load_average']}.",
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
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
