"""Command line: `python -m indexer PATH --db URL`, `python -m indexer status|check|demo`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from indexer.demo import DEMO_EPOCHS
from indexer.sources import OUTSIDE
from retrieval import checks
from retrieval.errors import run_command
from retrieval.terminal import plain
from storage.db import DEFAULT_URL as DEFAULT_DB

MAX_BATCH = 4096  # assets per encoder batch: beyond it one batch of decoded media alone outgrows memory


class TqdmProgress:
    """Turns (stage, done, total) callbacks into one tqdm bar per stage."""

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            unit = "epoch" if stage.startswith("train") else "index" if stage == "index" else "asset"
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=unit, file=sys.stderr, leave=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()


def _print_summary(summary, *, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        print(checks.json_text(summary.to_dict()))
        return
    assets = ", ".join(f"{m}: {n}" for m, n in summary.assets.items()) or "none"
    print(f"items: {summary.items}   assets: {assets}")
    print(
        f"encoded: {summary.encoded}   unchanged: {summary.unchanged}   changed: {summary.changed}   "
        f"removed: {summary.removed}" + (f"   missing (use --prune): {summary.missing}" if summary.missing else "")
    )
    if summary.unseen:
        print(f"kept, not seen (a folder or manifest row could not be read; nothing pruned there): {summary.unseen}")
    if summary.problems:
        print(f"skipped: {len(summary.problems)}")
        for problem in summary.problems[:50]:
            print(f"  {plain(problem.path)}: {plain(problem.reason)}")
        if len(summary.problems) > 50:
            print(f"  ... and {len(summary.problems) - 50} more (python -m indexer status)")
        if any(p.reason == OUTSIDE for p in summary.problems):
            print("  (files outside the source's folder are read only from folders given with --allow-root FOLDER)")
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in summary.stages.items())
    print(f"time: {summary.seconds:.1f}s ({stages})")


def cmd_index(args: argparse.Namespace) -> int:
    from indexer.pipeline import Indexer
    from retrieval.profiles import load_profile

    profile = load_profile(args.profile) if args.profile else None
    indexer = Indexer(
        args.db,
        args.collection,
        profile=profile,
        device=args.device,
        batch_size=args.batch_size,
        flush_assets=args.flush_every,
        vector_dir=Path(args.vector_dir) if args.vector_dir else None,
        vector_backend=args.vector_backend,
        executor=args.executor,
        ray_address=args.ray_address,
        migrate=args.migrate,
    )
    roots = [Path(r) for r in args.allow_root] + getattr(args, "extra_roots", [])
    # A manifest given here was written (or chosen) by the person running the command: its paths are read
    # wherever they point unless --confine; a folder's links pointing out stay refused (threat model:
    # docs/reliability.md).
    manifest = Path(args.path).suffix.lower() in (".csv", ".jsonl")
    summary = indexer.run(
        args.path,
        prune=args.prune,
        progress=None if args.quiet else TqdmProgress(),
        roots=roots,
        confined=args.confine or not manifest,
    )
    _print_summary(summary, as_json=args.json)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from indexer.status import collection_status

    status = collection_status(args.db, args.collection)
    if args.json:
        print(checks.json_text(status))
        return 1 if status["vector_problems"] else 0
    print(f"collection {status['collection']!r}: {status['items']} items, generation {status['generation']}")
    print("assets: " + ", ".join(f"{m}: {n}" for m, n in status["assets"].items()))
    print(f"profile: {status['profile'].get('name')} v{status['profile'].get('version', 1)}")
    if status["profile_note"]:
        print(f"note: {status['profile_note']}")
    print("encoders: " + ", ".join(f"{e['name']} ({e['dim']}d)" for e in status["encoders"]))
    print(f"vectors: {status['vector_dir']}   indexes on: {status['vector_backend']}")
    for table in status["vector_tables"]:
        stored = {None: "MISSING", -1: "UNREADABLE"}.get(table["vectors"], f"{table['vectors']} vectors")
        print(f"table {table['field']}: {stored} ({table['expected']} in the database)")
    for build in status["indexes"]:
        print(
            f"index {build['strategy']}/{build['key']}: {build['factory']}, {build['count']} vectors"
            + ("" if build["current"] else " (stale: rebuilt on next search)")
        )
    # files the indexer skipped (their reasons below); damage to the vectors is an error of its own, on stderr
    print(f"skipped files: {len(status['problems'])}")
    for problem in status["problems"]:
        print(f"  {plain(problem['path'])}: {plain(problem['reason'])}")
    for problem in status["vector_problems"]:
        print(f"error: {plain(problem)}", file=sys.stderr)
    if status["vector_problems"]:
        print("run `python -m indexer check` for every difference, and `--repair` to fix what can be", file=sys.stderr)
        return 1
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from indexer.check import check_collection

    report = check_collection(
        args.db, args.collection, repair=args.repair, progress=None if args.quiet else TqdmProgress()
    )
    if args.json:
        print(checks.json_text(report.to_dict()))
        return 1 if report.left else 0
    print(
        f"collection {report.collection!r}: {report.items} items, {report.tables} vector tables, "
        f"{report.indexes} indexes ({report.stale} stale: the next search rebuilds them)"
    )
    if report.busy:
        print("note: an indexer is writing this collection now; differences may be its work in progress")
    for f in report.findings:
        state = "repaired" if f.repaired else ("repairable with --repair" if f.repairable else "NOT repairable")
        print(f"{f.artefact} {plain(f.name)}: {plain(f.problem)}\n  at {plain(f.location)}\n  {state}: {plain(f.fix)}")
    repaired = len(report.findings) - len(report.left)
    print(f"differences: {len(report.findings)}, repaired: {repaired}, left: {len(report.left)}")
    return 1 if report.left else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from indexer.demo import DemoSpec, build_digits_manifest, datasets_dir

    root = datasets_dir(args.datasets, fetch=True)
    manifest = build_digits_manifest(args.out, root, DemoSpec(seed=args.seed, limit=args.limit))
    print(f"wrote {manifest}")
    if args.no_index:
        return 0
    args.path = str(manifest)
    args.extra_roots = [root]
    status = cmd_index(args)
    if status == 0 and not args.no_train:
        _train_demo(args)
    return status


def _train_demo(args: argparse.Namespace) -> None:
    """Train what learns on the demo's train split, so that every strategy answers (tqdm per strategy)."""
    import time

    from indexer.demo import train_demo

    started = time.perf_counter()
    results = train_demo(args.db, args.out, args.collection, args.epochs, None if args.quiet else TqdmProgress())
    out = sys.stderr if args.json else sys.stdout
    for name, result in results.items():
        print(
            f"trained {name} on {result.items} items in {result.seconds:.1f}s "
            f"(loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}): {result.path}",
            file=out,
        )
    print(f"training: {time.perf_counter() - started:.1f}s", file=out)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLAlchemy URL (default {DEFAULT_DB})")
    parser.add_argument(
        "--collection", default="default", type=checks.collection_name, help="collection name inside the database"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _index_options(parser: argparse.ArgumentParser) -> None:
    from indexer.executors import EXECUTORS

    parser.add_argument("--profile", help="offline (default for a new collection), pretrained, or a JSON file")
    parser.add_argument(
        "--migrate",
        action="store_true",
        help="move an existing collection to --profile, or to the current version of its own profile "
        "(re-encodes only the modalities whose encoders changed)",
    )
    parser.add_argument("--prune", action="store_true", help="remove items whose files are gone")
    parser.add_argument("--batch-size", type=checks.positive_int(MAX_BATCH), default=64)
    parser.add_argument(
        "--flush-every",
        "--checkpoint-every",  # its name before 0.12 (a checkpoint is a trained model now)
        dest="flush_every",
        type=checks.positive_int(),
        default=1024,
        metavar="ASSETS",
        help="write vectors and rows together every ASSETS assets (what a crash can cost)",
    )
    parser.add_argument("--device", help="cuda, cpu, ... (default: the best available)")
    parser.add_argument("--vector-dir", help="where vectors and indexes live (default: beside an SQLite file)")
    parser.add_argument(
        "--vector-backend",
        metavar="SPEC",
        help="where a new collection keeps its indexes: faiss (default), milvus:PATH.db (Milvus "
        "Lite) or milvus:http://HOST:19530 (a Milvus server)",
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS.names(),
        default="local",
        help="run decoding and encoding here (local) or as Ray actors (ray)",
    )
    parser.add_argument("--ray-address", help="a Ray cluster to join (default: $RAY_ADDRESS, else a local one)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--allow-root",
        action="append",
        default=[],
        metavar="FOLDER",
        help="also read files under FOLDER (by default only under the folder, or anywhere for a manifest)",
    )
    parser.add_argument(
        "--confine",
        action="store_true",
        help="read a manifest's files only under its own folder (and --allow-root): for a manifest from someone else",
    )


def cmd_copy(args: argparse.Namespace) -> int:
    from storage.copying import copy_database

    vector_dir = Path(args.vector_dir) if args.vector_dir else None
    copy = copy_database(args.db, args.to, vector_dir, None if args.quiet else TqdmProgress())
    print(f"copied {args.db} with its vectors to {copy.url} (its own id {copy.uid[:12]}; the original is untouched)")
    return 0


def cmd_relocate(args: argparse.Namespace) -> int:
    from storage.copying import relocate

    for name, folder in relocate(args.db, Path(args.vector_dir) if args.vector_dir else None):
        print(f"collection {name!r}: vectors at {folder}")
    return 0


def build_parser(command: str) -> argparse.ArgumentParser:
    if command == "copy":
        parser = argparse.ArgumentParser(
            prog="python -m indexer copy",
            description="Copy a database with its vectors into a new database (any SQLAlchemy URL), consistently: "
            "no indexer may write meanwhile (other copies may run). A file copy of a database would share the "
            "original's vectors, and is refused.",
        )
        parser.add_argument("--db", default=DEFAULT_DB, help=f"the database to copy (default {DEFAULT_DB})")
        parser.add_argument("--to", required=True, help="the new database's SQLAlchemy URL (empty or not there yet)")
        parser.add_argument("--vector-dir", help="where the copy's vectors go (default: beside an SQLite file)")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
        parser.set_defaults(func=cmd_copy)
    elif command == "relocate":
        parser = argparse.ArgumentParser(
            prog="python -m indexer relocate",
            description="After moving a database (and, with it, its vector folders): pair it with its folders "
            "again, found where they were recorded or in --vector-dir (default: beside an SQLite file).",
        )
        parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLAlchemy URL (default {DEFAULT_DB})")
        parser.add_argument("--vector-dir", help="the folder the vector folders were moved into")
        parser.set_defaults(func=cmd_relocate)
    elif command == "status":
        parser = argparse.ArgumentParser(
            prog="python -m indexer status", description="What is indexed, and what was skipped."
        )
        _common(parser)
        parser.set_defaults(func=cmd_status)
    elif command == "check":
        parser = argparse.ArgumentParser(
            prog="python -m indexer check",
            description="Compare the database rows, the vector tables and every index of a collection; "
            "with --repair, fix what can be rebuilt from what is stored. Exit status 1 while differences remain.",
        )
        _common(parser)
        parser.add_argument("--repair", action="store_true", help="fix what can be rebuilt (takes the writer lock)")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
        parser.set_defaults(func=cmd_check)
    elif command == "demo":
        parser = argparse.ArgumentParser(
            prog="python -m indexer demo", description="Build the digits demo collection and index it."
        )
        _common(parser)
        _index_options(parser)
        parser.add_argument("--out", default="data/digits", help="where the manifest is written")
        parser.add_argument(
            "--datasets",
            help="the digits datasets' folder (default: ../shared/datasets, else data/datasets, fetched there once)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--limit", type=checks.positive_int(), help="number of items (default: all 2,000)")
        parser.add_argument("--no-index", action="store_true", help="only write the manifest")
        parser.add_argument(
            "--no-train", action="store_true", help="do not train gated, cross_attention and learned early"
        )
        parser.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"training epochs (default {DEMO_EPOCHS})")
        parser.set_defaults(func=cmd_demo)
    else:
        parser = argparse.ArgumentParser(
            prog="python -m indexer",
            description=(
                "Index a folder or a manifest (.csv/.jsonl). Other commands: `status`, `check`, `demo`, `copy`, "
                "`relocate`."
            ),
        )
        parser.add_argument("path", help="a folder, or a manifest with id,image,audio,text columns")
        _common(parser)
        _index_options(parser)
        parser.set_defaults(func=cmd_index)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in ("status", "check", "demo", "copy", "relocate") else "index"
    args = build_parser(command).parse_args(argv[1:] if command != "index" else argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
