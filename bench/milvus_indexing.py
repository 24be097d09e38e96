"""The product's indexing command on the digits demo (2,000 items) into FAISS files and into a Milvus server.

    .venv/bin/python bench/milvus_indexing.py --uri http://127.0.0.1:19530 [--repeats 2]

Each run is `python -m indexer MANIFEST --db sqlite:///NEW.db --vector-backend faiss|milvus:URI/DB --json`
as a user types it (process start and model loading included), on a fresh database, vector folder and
Milvus database, FAISS and the server alternating. Reported: wall seconds (median of the repeats), their
ratio, and the indexer's own stages: its `index` stage builds the default strategies' indexes, the
collections on the server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import ROOT, stamp, write_report

from indexer.demo import build_digits_manifest, datasets_dir


def index_once(manifest: Path, work: Path, backend: str) -> dict:
    """One run of the indexing command; its wall seconds and the summary it prints."""
    command = [sys.executable, "-m", "indexer", str(manifest), "--db", f"sqlite:///{work}/bench.db"]
    command += ["--vector-dir", str(work / "vectors"), "--vector-backend", backend, "--json", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    summary = json.loads(done.stdout)
    return {"wall_s": round(wall, 2), "items": summary["items"], "stages": summary["stages"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help="the Milvus server, http://HOST:PORT")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--name", default="milvus_indexing", help="report name under docs/benchmarks")
    args = parser.parse_args()
    from pymilvus import MilvusClient

    admin = MilvusClient(args.uri)
    manifest = build_digits_manifest(tempfile.mkdtemp(prefix="milvus-indexing-"))
    runs: dict[str, list[dict]] = {"faiss": [], "milvus server": []}
    for _ in range(args.repeats):
        for label in runs:
            work = Path(tempfile.mkdtemp(prefix="milvus-indexing-"))
            database = f"bench_{uuid.uuid4().hex[:8]}"
            if label == "faiss":
                runs[label].append(index_once(manifest, work, "faiss"))
                continue
            admin.create_database(database)
            try:
                runs[label].append(index_once(manifest, work, f"milvus:{args.uri.rstrip('/')}/{database}"))
            finally:
                inside = MilvusClient(args.uri, db_name=database)
                for collection in inside.list_collections():
                    inside.drop_collection(collection)
                admin.drop_database(database)
    wall = {label: statistics.median(r["wall_s"] for r in rs) for label, rs in runs.items()}
    report = {**stamp(), "server": admin.get_server_version(), "datasets": str(datasets_dir()), "runs": runs}
    report.update(wall_s=wall, ratio=round(wall["milvus server"] / wall["faiss"], 2))
    write_report(args.name, report, page(report, args.repeats))
    return 0


def page(report: dict, repeats: int) -> str:
    """The report as markdown: per backend, each run's wall seconds and its encode and index stages."""

    def stage(r: dict, name: str) -> str:
        return f"{r['stages'].get(name, 0.0):.1f}"

    runs = report["runs"]
    lines = [
        f"# The indexing command on the digits demo: FAISS files vs a Milvus server ({report['server']})",
        "",
        f"{runs['faiss'][0]['items']:,} items; `python -m indexer MANIFEST --vector-backend ...`, end to end, "
        f"{repeats} runs each, alternating. Written by `{report['command']}` at {report['commit']} on "
        f"{report['date']}. The encode stage (decode+encode+write) is the same work on either backend: where it "
        "moves between runs, the machine was busy, and the index stage (the strategies' indexes: the "
        "collections on the server) is the backend's own cost.",
        "",
        "| backend | run | wall s | encode stage s | index stage s |",
        "|---|---|---|---|---|",
        *[
            f"| {label} | {n} | {r['wall_s']} | {stage(r, 'decode+encode+write')} | {stage(r, 'index')} |"
            for label, rs in runs.items()
            for n, r in enumerate(rs, start=1)
        ],
        "",
        f"Median wall: FAISS {report['wall_s']['faiss']:.1f} s, server {report['wall_s']['milvus server']:.1f} s; "
        f"server / FAISS {report['ratio']}x.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
