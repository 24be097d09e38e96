"""What a collection holds: counts, encoders, index builds, and every skipped file with its reason."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, make_url, select

from retrieval.errors import NotFoundError
from retrieval.profiles import Profile, migration_hint
from storage import Asset, Collection, CorruptArtifactError, Database, IndexBuild, Item, SkippedFile
from storage.artifacts import map_file
from storage.catalog import collection_storage
from storage.lock import writer_active
from storage.repository import get_collection, unencoded_items


def vector_tables(db: Database, collection: Collection, ok: Counter[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each field's table: its file, how many vectors it holds (from its header: nothing else is read)
    and how many the database expects; plus a sentence for each table that is missing or disagrees."""
    storage = collection_storage(db, collection)
    tables, problems = [], []
    for f in Profile.from_dict(collection.profile).fields:
        path, expected = storage.path_for(f.key), ok.get(f.modality, 0)
        header: dict[str, Any] = {}
        digest: str | None = None
        try:
            _, header, integrity = map_file(path)  # the header only: the arrays are mapped, not read
            stored: int | None = int(header.get("count", 0))
            digest = integrity.digest if integrity else None
        except FileNotFoundError:
            stored = None
        except CorruptArtifactError:
            stored = -1
        tables.append({"field": f.key, "file": str(path), "vectors": stored, "expected": expected})
        owner = header.get("owner")
        if owner not in (None, storage.owner):
            problems.append(f"{path}: written by another collection or database ({owner}, this is {storage.owner})")
        elif stored is not None and stored >= 0 and not storage.matches_record(f.key, digest, header):
            problems.append(
                f"{path}: not the table the database recorded (a backup restored over newer vectors, or the "
                "database over newer tables); search refuses it"
            )
        elif stored is None and expected:
            problems.append(f"{path}: missing, but {expected} items have {f.modality} vectors in the database")
        elif stored == -1:
            problems.append(f"{path}: cannot be read")
        elif stored is not None and stored != expected and not writer_active(storage.root):
            problems.append(f"{path}: holds {stored} vectors, the database expects {expected}")
    return tables, problems


def reindex_command(url: str, collection: Collection, source: str | None = None) -> str:
    """The command that indexes `source` (default: the collection's last) again into this database (its
    password hidden)."""
    shown = make_url(url).render_as_string(hide_password=True)
    return f"python -m indexer {source or collection.root or 'SOURCE'} --db {shown} --collection {collection.name}"


def unfinished_message(count: int, collection: Collection, url: str) -> str:
    return (
        f"{count} items have nothing encoded yet (an indexing run stopped before reaching them; searches do not "
        f"find them): run the indexer on the same source again to complete them ({reindex_command(url, collection)})"
    )


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
        ok = Counter(m for m, s, _, _ in rows if s == "ok")
        tables, table_problems = vector_tables(db, collection, ok)
        unencoded = unencoded_items(session, collection.id)
        if unencoded and not writer_active(Path(collection.vector_dir)):
            table_problems.append(unfinished_message(unencoded, collection, url))
        return {
            "collection": name,
            "items": items,
            "unencoded_items": unencoded,
            "generation": collection.generation,
            "profile": collection.profile,
            "profile_note": migration_hint(Profile.from_dict(collection.profile), name),
            "vector_dir": collection.vector_dir,
            "vector_backend": collection.vector_backend,
            "assets": dict(sorted(ok.items())),
            "vector_tables": tables,
            # differences between the database and the vector tables (`python -m indexer check` says more)
            "vector_problems": table_problems,
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
