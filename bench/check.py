"""What `python -m indexer check` costs, and what a search pays to refuse a missing vector table.

A synthetic collection per size (three 512-d fields, each missing 20% of the items; item and asset rows in
SQLite; late and early fusion's indexes built), then: `python -m indexer check` in its own process (wall
time including start-up, its peak resident memory), and the lookup a `SearchEngine` makes when it opens
(`check_tables_present`: file existence only, one SQL count when a file is gone).

    .venv/bin/python bench/check.py [--sizes 10000,50000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import FIELDS, ROOT, clustered, timed, write_report
from sqlalchemy import insert

from retrieval.fusion import create_strategy
from retrieval.space import VectorSpace
from storage import Asset, Collection, Database, EncoderRecord, IndexCatalog, Item, VectorStorage, collection_folder
from storage.catalog import check_tables_present, collection_storage

DIM = 512


def build(folder: Path, n: int) -> tuple[str, Collection]:
    url = f"sqlite:///{folder}/bench.db"
    db = Database(url)
    profile = {"name": "bench", "encoders": {f.modality: [f.encoder] for f in FIELDS}}
    with db.session() as session:
        row = Collection(name="default", profile=profile, vector_dir="")
        session.add(row)
        session.flush()
        row.vector_dir = str(collection_folder(folder, "default", db.uid, row.id))
        for f in FIELDS:
            session.add(EncoderRecord(collection_id=row.id, name=f.encoder, dim=DIM, modalities=[f.modality]))
        session.execute(insert(Item), [{"collection_id": row.id, "key": f"item-{i}", "meta": {}} for i in range(n)])
    storage = collection_storage(db, row)
    kept = np.random.default_rng(0).random((len(FIELDS), n)) >= 0.2
    kept[0, ~kept.any(axis=0)] = True  # every item has a vector: `check` reports one that has none, as it should
    assets = []
    for i, f in enumerate(FIELDS):
        ids = np.arange(1, n + 1)[kept[i]]
        table = storage.load(f.key, dim=DIM, encoder=f.encoder)
        table.upsert(ids, clustered(len(ids), DIM, i))
        storage.save(f.key, table)
        assets += [
            {"item_id": int(j), "modality": f.modality, "path": f"{j}.{f.modality}", "status": "ok"} for j in ids
        ]
    with db.session() as session:
        session.execute(insert(Asset), assets)
    space = VectorSpace(FIELDS, storage, 0, IndexCatalog.for_collection(db, row), dims={f.encoder: DIM for f in FIELDS})
    for name in ("late", "early"):
        create_strategy(name).prepare(space)
    return url, row


def measure(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url, row = build(Path(tmp), n)
        started = time.perf_counter()
        command = [sys.executable, "-m", "indexer", "check", "--db", url, "--quiet", "--json"]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds = time.perf_counter() - started
        report = json.loads(done.stdout)
        assert done.returncode == 0 and not report["findings"], done.stderr[-2000:]
        db = Database(url)
        storage = collection_storage(db, row)
        pairs: list[tuple[str, str]] = [(f.key, f.modality) for f in FIELDS]
        opened = min(timed(lambda: check_tables_present(db, row, storage, pairs)) for _ in range(20))
        storage.path_for(FIELDS[0].key).unlink()
        missing = min(timed(lambda: _refused(db, row, storage, pairs)) for _ in range(5))
    return {
        "items": n,
        "indexes": report["indexes"],
        "check_s": round(seconds, 3),
        "check_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "search_open_check_ms": round(1000 * opened, 3),
        "missing_table_refusal_ms": round(1000 * missing, 3),
    }


def _refused(db: Database, row: Collection, storage: VectorStorage, pairs: list[tuple[str, str]]) -> None:
    try:
        check_tables_present(db, row, storage, pairs)
    except Exception:
        return
    raise AssertionError("a missing table must be refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    args = parser.parse_args()
    rows = [measure(int(n)) for n in args.sizes.split(",")]
    table = (
        "| items | indexes | check (s) | check's peak RSS (MB) | search open: tables present (ms) | refusal (ms) |\n"
    )
    table += "|---|---|---|---|---|---|\n" + "".join(
        f"| {r['items']:,} | {r['indexes']} | {r['check_s']} | {r['check_peak_rss_mb']} | {r['search_open_check_ms']} "
        f"| {r['missing_table_refusal_ms']} |\n"
        for r in rows
    )
    markdown = (
        "# `python -m indexer check`\n\nThree 512-d fields (20% of items missing each), late and early fusion's "
        "indexes (Flat below 10k, IVF from 10k). `check` runs as its own process (start-up included: about "
        "0.5 GB and a few seconds are imports) and reads every table and every index whole.\n\n" + table
    )
    write_report("check", {"rows": rows}, markdown)


if __name__ == "__main__":
    main()
