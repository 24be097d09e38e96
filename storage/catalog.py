"""Named FAISS indexes of a collection on disk, each recorded in `index_builds` with its generation.

An index is derived data: when its generation differs from the collection's (vectors changed since,
or a crash came between the two), it is stale and the caller rebuilds it from the vector tables.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from sqlalchemy import select

from storage.db import Database
from storage.errors import CorruptArtifactError
from storage.faiss_store import VectorStore
from storage.models import IndexBuild

log = logging.getLogger(__name__)


class IndexCatalog:
    def __init__(self, db: Database, collection_id: int, index_dir: Path) -> None:
        self.db, self.collection_id, self.index_dir = db, collection_id, Path(index_dir)

    def path_for(self, strategy: str, key: str) -> Path:
        name = f"{strategy}-{key}"
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60]
        return self.index_dir / f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}.faiss.safetensors"

    def get(self, strategy: str, key: str, generation: int, encoders: list[str]) -> VectorStore | None:
        """The stored index if it is current and made by `encoders`; None when it must be (re)built."""
        with self.db.session() as session:
            row = session.scalar(select(IndexBuild).filter_by(
                collection_id=self.collection_id, strategy=strategy, key=key))
            if row is None or row.generation != generation or not Path(row.file).exists():
                return None
            path = Path(row.file)
        try:
            return VectorStore.load(path, expect={"encoders": encoders})
        except CorruptArtifactError as exc:
            log.warning("rebuilding %s/%s: %s", strategy, key, exc)
            return None

    def put(self, strategy: str, key: str, store: VectorStore, generation: int, seconds: float) -> Path:
        path = self.path_for(strategy, key)
        store.save(path)
        with self.db.session() as session:
            row = session.scalar(select(IndexBuild).filter_by(
                collection_id=self.collection_id, strategy=strategy, key=key))
            if row is None:
                row = IndexBuild(collection_id=self.collection_id, strategy=strategy, key=key)
                session.add(row)
            row.encoders = list(store.header.get("encoders", []))
            row.factory, row.count, row.file = store.factory, len(store), str(path)
            row.generation, row.seconds = generation, seconds
        return path
