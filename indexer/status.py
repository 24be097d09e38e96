"""What a collection holds: counts, encoders, index builds, and every skipped file with its reason."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select

from retrieval.errors import NotFoundError
from storage import Asset, Database, IndexBuild, Item, SkippedFile
from storage.repository import get_collection


def collection_status(url: str, name: str = "default") -> dict[str, Any]:
    db = Database(url)
    with db.session() as session:
        collection = get_collection(session, name)
        if collection is None:
            raise NotFoundError(f"no collection {name!r} in {url}")
        items = session.scalar(select(func.count()).select_from(Item).where(Item.collection_id == collection.id))
        rows = session.execute(
            select(Asset.modality, Asset.status, Asset.path, Asset.error)
            .join(Item)
            .where(Item.collection_id == collection.id)
        ).all()
        skipped = session.scalars(select(SkippedFile).where(SkippedFile.collection_id == collection.id)).all()
        builds = session.scalars(select(IndexBuild).where(IndexBuild.collection_id == collection.id)).all()
        return {
            "collection": name,
            "items": items,
            "generation": collection.generation,
            "profile": collection.profile,
            "vector_dir": collection.vector_dir,
            "vector_backend": collection.vector_backend,
            "assets": dict(sorted(Counter(m for m, s, _, _ in rows if s == "ok").items())),
            "encoders": [
                {"name": e.name, "dim": e.dim, "weights": e.weights, "preprocessing": e.preprocessing}
                for e in collection.encoders
            ],
            "indexes": [
                {
                    "strategy": b.strategy,
                    "key": b.key,
                    "factory": b.factory,
                    "count": b.count,
                    "file": b.file,
                    "current": b.generation == collection.generation,
                }
                for b in builds
            ],
            "problems": [{"path": p, "reason": e} for _, s, p, e in rows if s == "error"]
            + [{"path": s.path, "reason": s.reason} for s in skipped],
        }
