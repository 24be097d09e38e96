"""Planning: each chunk of the source's items gets its rows (new items inserted at once) and the work of the
assets whose content changed, or whose vectors are missing. What pruning needs of the chunk is kept, small."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, selectinload

from indexer.report import IndexSummary, ProgressFn
from indexer.sources import AssetSpec, ItemSpec
from indexer.target import Target
from indexer.work import WorkItem
from retrieval.media import MediaError
from storage import Asset, Item, VectorTable

# Files whose hash a run remembers from chunk to chunk (by device, inode, size and time; ~0.2 KB each): a
# file named on many rows is read once.
FILES_REMEMBERED = 16_384

Digest = str | OSError | MediaError  # an asset's content hash, or why it could not be read


@dataclass
class Seen:
    """What the source listed, kept from chunk to chunk for pruning, small per row: each listed item's id
    (8 bytes) and, of items it lists, the assets it no longer lists."""

    items: list[np.ndarray] = field(default_factory=list)
    unlisted_assets: set[tuple[int, str]] = field(default_factory=set)

    def add(self, existing: dict[str, Item], listed: list[ItemSpec]) -> None:
        self.items.append(np.fromiter((i.id for i in existing.values()), np.int64, len(existing)))
        for spec in listed:
            item = existing.get(spec.key)
            if item is not None:
                self.unlisted_assets.update((item.id, a.modality) for a in item.assets if a.modality not in spec.assets)

    def item_ids(self) -> np.ndarray:
        """Every listed item's id, sorted."""
        return np.sort(np.concatenate(self.items)) if self.items else np.zeros(0, np.int64)


class Planner:
    """Plans one run's chunks into one collection; `seen` gathers what pruning needs."""

    def __init__(self, target: Target, tables: dict[str, VectorTable]) -> None:
        self.target, self.tables = target, tables
        self.seen = Seen()
        self.hashed: OrderedDict[tuple[int, ...], str] = OrderedDict()

    def plan(
        self, listed: list[ItemSpec], specs: list[ItemSpec], summary: IndexSummary, progress: ProgressFn | None
    ) -> tuple[list[WorkItem], set[int]]:
        """Upsert one chunk's item rows and pick the assets whose content changed (or whose vectors are
        missing); returns the work and the items made. `listed` is the chunk before confinement."""
        # Every file is read before the transaction opens: inserting items takes the database's write
        # lock, and a slow disk (or a file that never ends) must not hold it and stall every other writer.
        digests = self._hash(specs, progress)
        work: list[WorkItem] = []
        with self.target.db.session() as session:
            existing = self._existing(session, [s.key for s in listed])
            self.seen.add(existing, listed)
            fresh = self._insert(session, [s for s in specs if s.key not in existing])
            self.seen.items.append(np.fromiter(fresh.values(), np.int64, len(fresh)))
            for spec in specs:
                item = existing.get(spec.key)
                if item is not None and item.meta != spec.metadata:
                    item.meta = spec.metadata
                current = {a.modality: a for a in item.assets} if item is not None else {}
                item_id = item.id if item is not None else fresh[spec.key]
                for modality, asset in spec.assets.items():
                    digest = digests[(spec.key, modality)]
                    work_item = self._plan_asset(item_id, asset, digest, current.get(modality), summary)
                    if work_item is not None:
                        work.append(work_item)
        return work, set(fresh.values())

    def _existing(self, session: Session, keys: list[str]) -> dict[str, Item]:
        """The collection's items named by `keys`, with their assets: 500 keys a query, well under every
        database's limit of bound parameters."""
        found: dict[str, Item] = {}
        for start in range(0, len(keys), 500):
            query = (
                select(Item)
                .where(Item.collection_id == self.target.collection.id, Item.key.in_(keys[start : start + 500]))
                .options(selectinload(Item.assets))
            )
            found.update((i.key, i) for i in session.scalars(query))
        return found

    def _insert(self, session: Session, new: list[ItemSpec]) -> dict[str, int]:
        """One multi-row INSERT for every new item, their ids returned with it (no ORM objects to build)."""
        if not new:
            return {}
        rows = [{"collection_id": self.target.collection.id, "key": s.key, "meta": s.metadata} for s in new]
        return {key: item_id for item_id, key in session.execute(insert(Item).returning(Item.id, Item.key), rows)}

    def _hash(self, specs: list[ItemSpec], progress: ProgressFn | None) -> dict[tuple[str, str], Digest]:
        """Each asset's content hash, or the error that kept it from being read (a FIFO is refused unopened)."""
        total = sum(len(s.assets) for s in specs)
        digests: dict[tuple[str, str], Digest] = {}
        done = 0
        for spec in specs:
            for modality, asset in spec.assets.items():
                try:
                    digests[(spec.key, modality)] = self._sha256(asset)
                except (MediaError, OSError) as exc:
                    digests[(spec.key, modality)] = exc
                done += 1
                if progress and (done % 256 == 0 or done == total):
                    progress("hash", done, total)
        return digests

    def _sha256(self, asset: AssetSpec) -> str:
        """The asset's hash; a file met before (same inode, size, time) is not read again."""
        same = _file_identity(asset)
        if same is None:
            return asset.sha256()
        if same in self.hashed:
            self.hashed.move_to_end(same)
            return self.hashed[same]
        digest = self.hashed[same] = asset.sha256()
        if len(self.hashed) > FILES_REMEMBERED:
            self.hashed.popitem(last=False)
        return digest

    def _plan_asset(
        self, item_id: int, spec: AssetSpec, digest: Digest, row: Asset | None, summary: IndexSummary
    ) -> WorkItem | None:
        if row is not None and isinstance(digest, str) and row.sha256 == digest:
            row.path = spec.display  # same content under a new name: no re-encoding
            fields = [f for f in self.target.profile.fields if f.modality == spec.modality]
            if row.status == "error" or all(item_id in self.tables[f.key] for f in fields):
                summary.unchanged += 1
                return None
        if row is not None and row.status == "ok":
            summary.changed += 1
        if not isinstance(digest, str):
            reason = digest.reason if isinstance(digest, MediaError) else (digest.strerror or str(digest))
            return WorkItem(item_id, spec, None, error=f"cannot read file ({reason})")
        return WorkItem(item_id, spec, digest)


def _file_identity(asset: AssetSpec) -> tuple[int, ...] | None:
    """What makes two paths the same unchanged file: device, inode, size, modification time."""
    try:
        info = os.stat(asset.path) if asset.inline_text is None else None
    except OSError:  # reading it says why, in the reader's words
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) if info else None
