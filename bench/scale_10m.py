"""Ten million items on one machine: build time, bytes per item, latency, recall and memory per strategy.

    PYTHONPATH=. .venv/bin/python bench/scale_10m.py --items 1000000 --work /tmp/n1m [--strategies late early]
        [--compress-from 500000]  # PYTHONPATH=.: this checkout, not the editable install's

Synthetic clustered unit vectors, three 512-d fields, each missing for 20 % of the items, written a
chunk at a time into memory-mapped float16 tables (never all in memory). Queries carry all three
modalities, each near one item's vectors. Every strategy runs in processes of its own: one builds (and
stores) its indexes, a fresh one searches, so "first search" is what a new search process pays (open the
tables, load the index, fuse the query, answer) and peak RSS is that process's own. Recall@10 is
against exact search (the strategy's own score over every item) on a sample of queries. Results are
appended to docs/benchmarks/scale_10m.json and .md as each strategy finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from common import FIELDS, memory, percentiles, reports_dir, running_top, write_report

from storage import VectorStorage
from storage.faiss_store import FaissBackend, FaissStore, Rows
from storage.paging import scanning

if TYPE_CHECKING:  # imported where used: building the tables needs neither torch nor the strategies
    from retrieval.fusion.base import FusionStrategy
    from retrieval.space import EncodedQuery, VectorSpace

DIM, MISSING, CLUSTERS, SPREAD, CHUNK = 512, 0.2, 1000, 0.35, 131_072
# agreeing fields: each is its item's latent plus noise of its own as large as the item's own deviation from
# its cluster (SPREAD), so the fields agree on an item's neighbours about half as well as on its cluster
LATENT, FIELD_NOISE = 1000, SPREAD
TRAIN_EPOCHS = 20  # the learned strategies' (make_strategy); rows before 2026-11-29 had 1
# late, early and hybrid with raw cosines summed (not their defaults, which standardise and weigh
# channels per query): their exact score is then Σ cosine over every item, so one exact search defines
# recall for all three
RAW_SUM = {"normalisation": "none", "weighting": "fixed"}
STRATEGIES: dict[str, dict[str, Any]] = {
    "late": {"params": RAW_SUM},
    "early": {"params": {"standardise": False}},
    "hybrid": {"params": {**RAW_SUM, "standardise": False}},
    "gated": {"learned": True},
}


# -- data ------------------------------------------------------------------------------------------------
def around(centres: np.ndarray, rng: np.random.Generator, rows: int) -> np.ndarray:
    """`rows` points, each a random centre plus N(0, SPREAD²) a dimension."""
    return centres[rng.integers(0, CLUSTERS, rows)] + SPREAD * rng.standard_normal((rows, DIM), np.float32)


def field_chunks(n: int, keep: np.ndarray, field: int, seed: int, fields: str) -> Iterator[np.ndarray]:
    """The kept items' unit vectors of one field, a chunk at a time (each chunk from its own seed).

    independent: every field draws its own cluster for every item, so an item near the query in one field
    is no nearer in another (the worst case for late fusion). agreeing: the fields are views of one latent
    per item (its cluster's centre plus its own deviation), each with noise of its own, as a photo and a
    recording of one thing are alike; the latent and the noise are drawn per chunk of items, never whole."""
    if fields == "independent":  # kept rows in chunks of CHUNK: the tables of every earlier run
        n_kept = int(keep.sum())
        centres = np.random.default_rng((seed, field)).normal(size=(CLUSTERS, DIM)).astype(np.float32)
        for number, start in enumerate(range(0, n_kept, CHUNK)):
            x = around(centres, np.random.default_rng((seed, field, number)), min(CHUNK, n_kept - start))
            yield x / np.linalg.norm(x, axis=1, keepdims=True)
        return
    centres = np.random.default_rng((seed, LATENT)).normal(size=(CLUSTERS, DIM)).astype(np.float32)
    for number, start in enumerate(range(0, n, CHUNK)):
        rows = min(CHUNK, n - start)
        latent = around(centres, np.random.default_rng((seed, LATENT, number)), rows)
        kept = keep[start : start + rows]
        own = np.random.default_rng((seed, field, number)).standard_normal((int(kept.sum()), DIM), np.float32)
        x = latent[kept] + FIELD_NOISE * own
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def generate(work: Path, n: int, queries: int, fields: str, seed: int = 0) -> dict[str, Any]:
    storage = VectorStorage(work / "vectors")
    made = work / "fields.txt"  # which kind of fields the tables hold (one kind a folder; before it, independent)
    held = made.read_text() if made.exists() else "independent" if storage.exists(FIELDS[0].key) else fields
    if held != fields:
        raise SystemExit(f"{work} holds {held} fields, not {fields}: use another --work")
    made.write_text(fields)
    started = time.perf_counter()
    for i, f in enumerate(FIELDS):
        if storage.exists(f.key):
            continue
        keep = np.random.default_rng((seed, i, 99)).random(n) >= MISSING
        ids = np.arange(1, n + 1)[keep]
        storage.write(f.key, ids, DIM, field_chunks(n, keep, i, seed, fields), {"encoder": f.encoder})
        print(f"wrote {f.key}: {len(ids):,} vectors", flush=True)
    seconds = time.perf_counter() - started
    rng = np.random.default_rng(seed + 7)
    tables = [storage.load(f.key, dim=DIM) for f in FIELDS]
    # independent: any item, and a random vector for a field it lacks (the runs before agreeing fields);
    # agreeing: an item with a field at least, and a query of the fields it has, as a person asks with what
    # they hold (a random vector is a noise input, whose cosines the exact sum would count: issue 13's case)
    pool = np.arange(1, n + 1) if fields == "independent" else np.unique(np.concatenate([t.ids for t in tables]))
    items = rng.choice(pool, queries, replace=False)
    vectors, has = {}, {}
    for f, table in zip(FIELDS, tables):
        base, present = table.lookup(items)
        noise = rng.standard_normal(base.shape).astype(np.float32)
        base[~present] = noise[~present]
        q = base + 0.1 * noise
        vectors[f.key] = q / np.linalg.norm(q, axis=1, keepdims=True)
        has[f.key] = present if fields == "agreeing" else np.ones(len(items), bool)
    arrays = {k.replace("@", "__"): v for k, v in vectors.items()}
    arrays.update({"has_" + k.replace("@", "__"): v for k, v in has.items()})
    np.savez(work / "queries.npz", **arrays)
    disk = sum(p.stat().st_size for p in (work / "vectors").glob("*.safetensors"))
    return {"generate_s": round(seconds, 1), "tables_bytes": disk, "fields": fields}


def load_queries(work: Path) -> list[EncodedQuery]:
    from retrieval.space import EncodedQuery

    saved = np.load(work / "queries.npz")
    parts = {f.key: saved[f.key.replace("@", "__")] for f in FIELDS}
    count = len(next(iter(parts.values())))
    has = {f.key: saved.get("has_" + f.key.replace("@", "__"), np.ones(count, bool)) for f in FIELDS}
    return [
        EncodedQuery({(f.modality, f.encoder): parts[f.key][q] for f in FIELDS if has[f.key][q]}) for q in range(count)
    ]


# -- a catalog of index files, without a database -----------------------------------------------------------
class FileCatalog:
    """What VectorSpace asks of IndexCatalog, kept in files: the index of (strategy, key) beside the tables."""

    def __init__(self, folder: Path) -> None:
        self.backend = FaissBackend(folder)

    def get(self, strategy: str, key: str, generation: int, encoders: list[str]) -> FaissStore | None:
        path = self.backend.path_for(f"{strategy}-{key}", generation)
        return self.backend.open(str(path), {"encoders": encoders}) if path.exists() else None

    def create(
        self,
        strategy: str,
        key: str,
        ids: np.ndarray,
        vectors: Rows,
        generation: int,
        factory: str | None = None,
        header: dict[str, Any] | None = None,
    ) -> FaissStore:
        return self.backend.create(f"{strategy}-{key}", generation, ids, vectors, factory, header or {})[0]


def open_space(work: Path) -> VectorSpace:
    # a search service has torch loaded by its encoders, so re-scoring casts with it (storage/vectors.py)
    import torch  # noqa: F401

    import storage.faiss_store as faiss_store
    from retrieval.space import VectorSpace

    if os.environ.get("SCALE_COMPRESS_FROM"):  # compressed indexes from this many vectors (1M: compare both)
        faiss_store.COMPRESS_FROM = int(os.environ["SCALE_COMPRESS_FROM"])
    if os.environ.get("SCALE_CODE_BITS"):  # PQ code bits a dimension of the indexes it builds (bench/code_bits.py)
        faiss_store.CODE_BITS = int(os.environ["SCALE_CODE_BITS"])
    tables, factory = VectorStorage(work / "vectors"), os.environ.get("SCALE_FACTORY") or None
    catalog = FileCatalog(work / "indexes")
    nprobe = int(os.environ.get("SCALE_NPROBE") or 0) or None
    rescore_bytes = int(os.environ.get("SCALE_RESCORE_BYTES") or 0) or None  # the shortlist's byte budget
    return VectorSpace(FIELDS, tables, 1, catalog, factory, nprobe=nprobe, rescore_bytes=rescore_bytes)  # type: ignore[arg-type]


def make_strategy(name: str, work: Path) -> FusionStrategy:
    from retrieval.fusion import create_strategy

    if not STRATEGIES[name].get("learned"):
        extra = json.loads(os.environ.get("SCALE_PARAMS") or "{}")  # --params: the same for every strategy
        return create_strategy(name, **{**STRATEGIES[name].get("params", {}), **extra})
    checkpoint = work / f"{name}.safetensors"
    if not checkpoint.exists():
        from retrieval.train import TrainConfig, train

        space = open_space(work)
        sample = np.random.default_rng(3).choice(space.item_ids(), 4000, replace=False)
        # TRAIN_EPOCHS (9 s at 4,000 items): after one (16 steps) the fused vectors had nearly one direction
        # (mean cosine to their mean 0.96), a query's top 1,000 scored within 0.004 and the exact top 10 was a
        # near-tie that no index could find (200k agreeing items: recall@10 0.12; 0.99 after 20 epochs)
        config = TrainConfig(name, epochs=TRAIN_EPOCHS, out_dim=128, hidden=128, width=64, heads=2, layers=1)
        train(space, np.sort(sample), None, config, checkpoint)
    return create_strategy(name, checkpoint=str(checkpoint))


# -- phases, each in a process of its own ----------------------------------------------------------------------
def phase_build(work: Path, name: str) -> dict[str, Any]:
    strategy = make_strategy(name, work)
    space = open_space(work)
    started = time.perf_counter()
    strategy.prepare(space)
    return {"build_s": round(time.perf_counter() - started, 1), "build_memory": memory()}


def phase_search(work: Path, name: str, k: int, truth_count: int) -> dict[str, Any]:
    started = time.perf_counter()
    qs = load_queries(work)
    space = open_space(work)
    strategy = make_strategy(name, work)
    first = strategy.search(space, qs[0], k)
    first_s = time.perf_counter() - started
    times, found = [], []
    for q in qs:
        t = time.perf_counter()
        found.append([r.item_id for r in strategy.search(space, q, k)])
        times.append(time.perf_counter() - t)
    truth = json.loads((work / f"truth-{name}.json").read_text()) if (work / f"truth-{name}.json").exists() else []
    recall = [len(set(f) & set(t)) / k for f, t in zip(found, truth[:truth_count])]
    index_bytes = sum(s.stat().st_size for s in (work / "indexes").glob("*"))
    return {
        "first_search_s": round(first_s, 2),
        "first_results": len(first),
        **percentiles(times),
        "recall@10": round(float(np.mean(recall)), 4) if recall else None,
        "recall_queries": len(recall),
        "memory": memory(),
        "index_bytes_all_strategies": index_bytes,
    }


def phase_truth(work: Path, name: str, k: int, count: int) -> dict[str, Any]:
    """Exact top k of the strategy's own score over every item, for the first `count` queries."""
    from retrieval.fusion.adaptive import screened
    from retrieval.fusion.learned import LearnedFusion

    started = time.perf_counter()
    qs = load_queries(work)[:count]
    space = open_space(work)
    strategy = make_strategy(name, work)
    ids = space.item_ids()
    if getattr(strategy.params, "screen", False):  # early and gated search without a flat input: so does the truth
        qs = [screened(space, q) for q in qs]
    if isinstance(strategy, LearnedFusion):
        table = strategy.fused_table(space)
        parts = [(table, np.stack([strategy.fused_query(q) for q in qs]))]
    else:  # late, early and hybrid (sum, no normalisation) all score Σ cosine over the channels
        zero = np.zeros(DIM, np.float32)
        parts = [
            (space.tables[f.key], np.stack([q.vectors.get((f.modality, f.encoder), zero) for q in qs])) for f in FIELDS
        ]
    best_ids, best = np.zeros((len(qs), 0), np.int64), np.zeros((len(qs), 0), np.float32)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        total = np.zeros((len(qs), len(chunk)), np.float32)
        for table, queries in parts:
            lo, hi = np.searchsorted(table.ids, [chunk[0], chunk[-1] + 1])
            rows = np.searchsorted(chunk, table.ids[lo:hi])
            with scanning(table.vectors[lo:hi]) as block:
                total[:, rows] += queries @ np.asarray(block, np.float32).T
        best_ids, best = running_top(best_ids, best, chunk, total, k)
    (work / f"truth-{name}.json").write_text(json.dumps(best_ids.tolist()))
    return {"truth_s": round(time.perf_counter() - started, 1)}


def child(args: argparse.Namespace, phase: str, name: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--phase", phase, "--strategy", name, "--work", str(args.work)]
    command += ["--k", str(args.k), "--truth-queries", str(args.truth_queries)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        print(done.stderr[-3000:], flush=True)
        return {f"{phase}_error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    args.work.mkdir(parents=True, exist_ok=True)
    n = args.items
    print(f"{n:,} items in {args.work}", flush=True)
    data = generate(args.work, n, args.queries, args.fields)
    print(data, flush=True)
    report_path = reports_dir() / "scale_10m.json"
    rows = json.loads(report_path.read_text()).get("rows", []) if report_path.exists() else []
    rows = [
        r
        for r in rows
        if not (
            r["items"] == n
            and r["strategy"] in args.strategies
            and r.get("factory_forced") == args.factory
            and r.get("nprobe") == args.nprobe
            and r.get("fields", "independent") == args.fields
            and r.get("params") == args.params
            and r.get("rescore_bytes") == args.rescore_bytes
        )
    ]
    for name in args.strategies:
        row: dict[str, Any] = {"items": n, "strategy": name, "factory_forced": args.factory, **data}
        if args.nprobe:
            row["nprobe"] = args.nprobe
        if args.params:
            row["params"] = args.params
        if args.rescore_bytes:
            row["rescore_bytes"] = args.rescore_bytes
        if STRATEGIES[name].get("learned"):
            row["train_epochs"] = TRAIN_EPOCHS
        for phase in ("build", "truth", "search"):
            row.update(child(args, phase, name))
            print(name, phase, row, flush=True)
        row["factories"] = index_factories(args.work)
        rows.append(row)
        write_report("scale_10m", {"rows": rows}, markdown(rows))
    return 0


def index_factories(work: Path) -> dict[str, str]:
    from storage.artifacts import read_layout

    out = {}
    for path in sorted((work / "indexes").glob("*.safetensors")):
        header = json.loads(read_layout(path)[0]["__metadata__"]["header"])
        out[path.name.rsplit("-", 1)[0]] = f"{header['factory']} ({path.stat().st_size / 1e6:.0f} MB)"
    return out


def label(row: dict[str, Any]) -> str:
    notes = [f"nprobe {row['nprobe']}"] if row.get("nprobe") else []
    notes += ["agreeing fields"] if row.get("fields") == "agreeing" else []
    notes += [f"{key} {value}" for key, value in row.get("params", {}).items()]
    notes += [f"re-scores {row['rescore_bytes'] / 1e6:g} MB a shortlist"] if row.get("rescore_bytes") else []
    if STRATEGIES[row["strategy"]].get("learned"):
        epochs = row.get("train_epochs", 1)
        notes += [f"trained {epochs} epoch{'s' if epochs > 1 else ''}"]
    return f"{row['strategy']} ({', '.join(notes)})" if notes else row["strategy"]


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Ten million items on one machine",
        "",
        f"Synthetic clustered unit vectors ({CLUSTERS} centres), three {DIM}-d float16 fields, 20 % missing per "
        "field. Independent fields (the default) draw each field's cluster apart and give a query all three "
        "modalities, each near one item's vector (a random one where the item lacks the field); agreeing fields "
        "(`--fields agreeing`) are views of one latent per item, and a query carries the fields its item has. "
        "k = 10. Each strategy is built in one process and searched in a fresh one; a build of 0-2 s reused the "
        "indexes of an earlier run. Recall@10 against exact search of the strategy's own score over every item "
        "(a sample of queries). Bytes per item: tables (all fields, and a learned strategy's stored fused "
        "vectors where they existed) and the indexes on disk; "
        "RAM: the search process's peak resident set (VmHWM), of which file pages (RssFile, reclaimable page "
        "cache of the mapped tables) at the end.",
        "",
        "| items | strategy | build s | table B/item | index B/item | p50 ms | p99 ms | recall@10 | first search s "
        "| peak RSS MB | RssFile MB | RssAnon MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r.get("memory", {})
        lines.append(
            f"| {r['items']:,} | {label(r)} | {r.get('build_s', '')} | {r['tables_bytes'] / r['items']:.0f} | "
            f"{r.get('index_bytes_all_strategies', 0) / r['items']:.0f} | {r.get('p50_ms', '')} | "
            f"{r.get('p99_ms', '')} | {r.get('recall@10', '')} | {r.get('first_search_s', '')} | "
            f"{m.get('peak_rss_mb', '')} | {m.get('rssfile_mb', '')} | {m.get('rssanon_mb', '')} |"
        )
    lines += ["", "Indexes (factory, size on disk) after each size's run:", ""]
    for r in rows:
        forced = f" (forced {r['factory_forced']})" if r.get("factory_forced") else ""
        lines.append(f"- {r['items']:,} {label(r)}{forced}: {r.get('factories', {})}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, required=True, help="where tables and indexes go (not the repo)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--truth-queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--timeout", type=int, default=6 * 3600)
    parser.add_argument("--factory", help="one FAISS factory for every index (default: by size and dimension)")
    parser.add_argument("--compress-from", type=int, help="compressed indexes from this many vectors")
    parser.add_argument("--nprobe", type=int, help="lists an inverted file visits per search (default: its rule)")
    parser.add_argument(
        "--fields",
        choices=["independent", "agreeing"],
        default="independent",
        help="independent clusters per field (the worst case), or fields that agree on each item (field_chunks)",
    )
    parser.add_argument(
        "--params", type=json.loads, help="strategy parameters over the defaults, as JSON: '{\"candidates\": 300}'"
    )
    parser.add_argument("--rescore-bytes", type=int, help="a shortlist's budget of float16 rows (RESCORE_BYTES)")
    parser.add_argument(
        "--code-bits",
        type=int,
        help="PQ code bits a dimension of every compressed index it builds (CODE_BITS; 1 makes the 512-d fields "
        "1-bit too, which the defaults before 2-bit concatenations did not)",
    )
    parser.add_argument("--phase", choices=["build", "truth", "search"], help=argparse.SUPPRESS)
    parser.add_argument("--strategy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.factory:  # the children inherit it
        os.environ["SCALE_FACTORY"] = args.factory
    if args.nprobe:
        os.environ["SCALE_NPROBE"] = str(args.nprobe)
    if args.params:
        os.environ["SCALE_PARAMS"] = json.dumps(args.params)
    if args.rescore_bytes:
        os.environ["SCALE_RESCORE_BYTES"] = str(args.rescore_bytes)
    if args.compress_from:
        os.environ["SCALE_COMPRESS_FROM"] = str(args.compress_from)
        args.factory = args.factory or f"default, compressed from {args.compress_from:,}"
    if args.code_bits:
        os.environ["SCALE_CODE_BITS"] = str(args.code_bits)
        args.factory = args.factory or f"default, {args.code_bits}-bit codes"
    if args.phase is None:
        return run(args)
    handlers = {
        "build": lambda: phase_build(args.work, args.strategy),
        "truth": lambda: phase_truth(args.work, args.strategy, args.k, args.truth_queries),
        "search": lambda: phase_search(args.work, args.strategy, args.k, args.truth_queries),
    }
    result = handlers[args.phase]()
    result[f"{args.phase}_cpu_s"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_utime, 1)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
