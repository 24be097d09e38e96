"""Writing: encoded batches into the vector tables, then the rows that point at them, at each flush point;
vectors that no row backs dropped at the start of a run, and items the source no longer has at its end.

Crash-safe: vectors are saved (atomically) *before* the database rows that point at them are committed,
and each run starts by dropping vectors that no committed row backs (`reconcile`), so any interruption
leaves the database and the vector files consistent and the next run finishes the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import delete, insert, select, update

from indexer.executors import EncodedBatch
from indexer.plan import Seen
from indexer.report import IndexSummary, ProgressFn
from indexer.sources import Problem, Scan
from indexer.target import Target
from indexer.unusable import drop_unusable
from indexer.work import Decoded
from storage import Asset, Item, VectorTable
from storage.models import utcnow
from storage.repository import bump_generation, ok_ids_by_modality

# Named points where tests inject a crash: `FAULTS[name] = callable` (monkeypatch.setitem), a no-op otherwise.
FAULTS: dict[str, Callable[[], None]] = {}


def fault(point: str) -> None:
    hook = FAULTS.get(point)
    if hook is not None:
        hook()


class Writer:
    """Writes one run into one collection's tables (held here, from `Target.tables`) and rows."""

    def __init__(self, target: Target, flush_assets: int, flush_seconds: float) -> None:
        self.target = target
        self.tables: dict[str, VectorTable] = target.tables()
        # How much work a crash may cost: vectors and rows are written together at every flush point.
        # ("Flush", not "checkpoint": a checkpoint is a trained fusion model.)
        self.flush_assets, self.flush_seconds = flush_assets, flush_seconds

    def reconcile(self) -> None:
        """Drop vectors that no committed 'ok' asset backs, and those a table's last write changed when the
        database never recorded that write (a crash between the two writes, or the database restored from a
        backup over newer tables): the run then encodes those items again from their files."""
        with self.target.db.session() as session:
            ok = ok_ids_by_modality(session, self.target.collection.id)
        for f in self.target.profile.fields:
            table = self.tables[f.key]
            stray = table.ids[~np.isin(table.ids, np.fromiter(ok.get(f.modality, ()), np.int64))]
            stray = np.union1d(stray, self.target.storage.ahead(f.key, table))
            if len(stray):
                table.remove(stray)
                self.target.storage.save(f.key, table)
        if self.target.storage.written:
            with self.target.db.session() as session:
                bump_generation(session, self.target.collection.id, self.target.storage.take_written())

    def write(
        self, batches: Iterable[EncodedBatch], total: int, summary: IndexSummary, progress: ProgressFn | None
    ) -> None:
        """Collect encoded batches; at every flush point, merge them into the tables, save the touched tables,
        then commit their rows. Merging once per flush, not per batch, keeps a run linear: each
        merge copies a whole table (at 20k items, 20 MB per field per batch of 64). The last batch is
        followed by a flush, so what a chunk encoded is in the tables for the next chunk's copies."""
        done, pending, staged = 0, [], []
        last_flush = time.monotonic()
        for batch in batches:
            staged.append(batch)
            pending += batch.decoded
            done += len(batch.decoded)
            summary.encoded += sum(d.error is None for d in batch.decoded)
            if len(pending) >= self.flush_assets or time.monotonic() - last_flush > self.flush_seconds:
                self._flush(pending, self._merge(staged))
                pending, staged, last_flush = [], [], time.monotonic()
            if progress:
                progress("encode", done, total)
        if pending:
            self._flush(pending, self._merge(staged))

    def _merge(self, batches: list[EncodedBatch]) -> dict[str, np.ndarray]:
        """New vectors into the in-memory tables, failed assets' old vectors out; returns the fields touched
        and the items changed in each."""
        touched: dict[str, np.ndarray] = {}
        for f in self.target.profile.fields:
            parts = [b.vectors[f.key] for b in batches if f.key in b.vectors]
            if parts:
                ids = np.concatenate([ids for ids, _ in parts])
                self.tables[f.key].upsert(ids, np.concatenate([v for _, v in parts]))
                touched[f.key] = ids
            failed = np.concatenate([b.failed(f.modality) for b in batches]) if batches else np.zeros(0, np.int64)
            if len(failed) and self.tables[f.key].remove(failed):
                touched[f.key] = np.union1d(touched.get(f.key, np.zeros(0, np.int64)), failed)
        return touched

    def _flush(self, pending: list[Decoded], touched: dict[str, np.ndarray]) -> None:
        """A flush point: vector tables first (atomically), then the rows that point at them, in one commit
        (new rows in one multi-row INSERT, changed ones in one executemany UPDATE). The assets' time of encoding
        is taken before the tables are written: a table written later holds their vectors (`indexer check`
        tells a restored older table by the items encoded after it was written)."""
        encoded_at = utcnow()
        for key in sorted(touched):  # each says which items it changed, until the rows below record it
            self.target.storage.save(key, self.tables[key], touched[key])
        fault("flush:tables-saved")  # a crash here leaves tables ahead of rows: the next run heals it
        with self.target.db.session() as session:
            item_ids = sorted({d.work.item_id for d in pending})
            existing = {
                (item_id, modality): asset_id
                for asset_id, item_id, modality in session.execute(
                    select(Asset.id, Asset.item_id, Asset.modality).where(Asset.item_id.in_(item_ids))
                )
            }
            rows = [self._asset_row(d, encoded_at) for d in pending]
            new = [r for r in rows if (r["item_id"], r["modality"]) not in existing]
            changed = [
                {"id": existing[(r["item_id"], r["modality"])], **r}
                for r in rows
                if (r["item_id"], r["modality"]) in existing
            ]
            if new:
                session.execute(insert(Asset), new)
            if changed:
                session.execute(update(Asset), changed)
            bump_generation(session, self.target.collection.id, self.target.storage.take_written())

    @staticmethod
    def _asset_row(decoded: Decoded, encoded_at: datetime) -> dict[str, Any]:
        work, ok = decoded.work, decoded.error is None
        return {
            "item_id": work.item_id,
            "modality": work.spec.modality,
            "path": work.spec.display,
            "sha256": work.sha256,
            "size_bytes": decoded.size_bytes,
            "status": "ok" if ok else "error",
            "error": decoded.error,
            "width": decoded.width,
            "height": decoded.height,
            "duration_s": decoded.duration_s,
            "encoded_at": encoded_at if ok else None,
            "preview": decoded.value if isinstance(decoded.value, str) else None,
        }

    def drop_unusable(self, created: set[int]) -> list[Problem]:
        """The items a chunk made with no usable file are not kept (`indexer.unusable`); their files' reasons."""
        with self.target.db.session() as session:
            problems = drop_unusable(session, self.target.collection.id, created)
            if problems:
                bump_generation(session, self.target.collection.id, self.target.storage.take_written())
        return problems

    def prune(self, seen: Seen, found: Scan, summary: IndexSummary, prune: bool) -> None:
        """Remove items (and assets) the source no longer has; never one the scan could not see (under a
        folder it could not list, or named by a manifest row it could not read): those are counted as kept."""
        listed = seen.item_ids()
        gone_items: set[int] = set()
        gone_assets: list[tuple[int, str]] = []
        hidden: set[int] = set()
        with self.target.db.session() as session:  # plain rows, not ORM objects: this reads the whole collection
            rows = session.execute(
                select(Item.id, Item.key, Asset.modality)
                .outerjoin(Asset)
                .where(Item.collection_id == self.target.collection.id)
            )
            for item_id, key, modality in rows:
                unlisted = not _holds(listed, item_id)
                incomplete = unlisted or (modality is not None and (item_id, modality) in seen.unlisted_assets)
                if incomplete and found.unseen and found.may_hide(key):
                    hidden.add(item_id)
                    continue
                if unlisted:
                    gone_items.add(item_id)
                if modality is not None and incomplete:
                    gone_assets.append((item_id, modality))
        summary.unseen = len(hidden)
        if not prune:
            summary.missing = len(gone_items)
            return
        for f in self.target.profile.fields:
            ids = np.array([i for i, m in gone_assets if m == f.modality], np.int64)
            if len(ids) and self.tables[f.key].remove(ids):
                self.target.storage.save(f.key, self.tables[f.key])
        with self.target.db.session() as session:
            for item_id, modality in gone_assets:
                session.execute(delete(Asset).where(Asset.item_id == item_id, Asset.modality == modality))
            if gone_items:
                session.execute(delete(Item).where(Item.id.in_(sorted(gone_items))))
            if gone_items or gone_assets:
                bump_generation(session, self.target.collection.id, self.target.storage.take_written())
        summary.removed = len(gone_items)


def _holds(sorted_ids: np.ndarray, item_id: int) -> bool:
    at = int(np.searchsorted(sorted_ids, item_id))
    return at < len(sorted_ids) and int(sorted_ids[at]) == item_id
