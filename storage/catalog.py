"""Named indexes of a collection, each recorded in `index_builds` with the generation it was built at.

An index is derived data: when its generation differs from the collection's (vectors changed since,
or a crash came between the two), it is stale and the caller rebuilds it from the vector tables. Where
the index lives (FAISS files, Milvus) is the backend's business; the catalog only remembers the location.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import CursorResult, func, select, update

from storage.db import Database
from storage.errors import ReadOnlyDatabaseError, StorageError
from storage.faiss_store import Rows
from storage.models import Asset, Collection, IndexBuild, Item
from storage.pairing import check_pair, moved_advice, vector_folder
from storage.vector_store import StoreBackend, VectorStore, open_backend
from storage.vectors import VectorStorage


def owner_of(db: Database, collection_id: int) -> str:
    """What vector tables and indexes are stamped with: this database's id and the collection's."""
    return f"{db.uid}/{collection_id}"


def collection_storage(db: Database, collection: Collection, write: bool = False) -> VectorStorage:
    """A collection's vector tables, refusing any that another collection or database wrote, and refusing a
    copy of the database that owns them (`storage.pairing`); a writer pairs a folder made before pairing."""
    folder = folder_of(db, collection, write)
    check_pair(db, folder, collection.name, write)
    recorded = dict(collection.tables or {})
    return VectorStorage(folder, owner=owner_of(db, collection.id), recorded=recorded)


def folder_of(db: Database, collection: Collection, write: bool = False) -> Path:
    """The collection's vector folder as `storage.pairing.vector_folder` finds it (a writer never makes a
    folder the database records tables in)."""
    records_tables = any((collection.tables or {}).values())
    return vector_folder(db, collection.name, Path(collection.vector_dir), records_tables, write)


class MissingVectorsError(StorageError):
    """A vector table is gone while the database says items have vectors in it."""


def ok_counts(db: Database, collection_id: int) -> dict[str, int]:
    """How many items hold a good asset of each modality (each has a vector in every field of it)."""
    with db.session() as session:
        rows = session.execute(
            select(Asset.modality, func.count())
            .join(Item)
            .where(Item.collection_id == collection_id, Asset.status == "ok")
            .group_by(Asset.modality)
        )
        return {modality: int(count) for modality, count in rows}


def check_tables_present(
    db: Database, collection: Collection, storage: VectorStorage, fields: list[tuple[str, str]]
) -> None:
    """Refuse to go on when a field's table (`fields`: key, modality) is missing but the database says
    items have vectors in it: a search would silently miss them. Only a missing file costs a query."""
    missing = [(key, modality) for key, modality in fields if not storage.exists(key)]
    if not missing:
        return
    counts = ok_counts(db, collection.id)
    lost = [(key, modality, counts[modality]) for key, modality in missing if counts.get(modality)]
    if not lost:
        return
    key, modality, count = lost[0]
    more = f" (and {len(lost) - 1} more tables are missing)" if len(lost) > 1 else ""
    where = ""
    if not storage.root.is_absolute():
        where = f" (its folder was recorded relative to where the indexer ran, not {Path.cwd()}: run from there)"
    elif not storage.root.is_dir():  # moved, most likely: nothing is lost yet
        raise MissingVectorsError(
            f"{db.url}: collection {collection.name!r}: the database says {count} items have {modality} "
            f"vectors, but {moved_advice(db, storage.root)}"
        )
    raise MissingVectorsError(
        f"{storage.path_for(key)}: the vector table of {key} is missing{where}, but the database says "
        f"{count} items have {modality} vectors in it{more}; see `python -m indexer check --db URL --collection "
        f"{collection.name}`, and index the collection again to re-encode what was lost"
    )


EVERY_GENERATION = 2**62  # `drop_older` than this: every build of a name


class IndexCatalog:
    def __init__(self, db: Database, collection_id: int, backend: StoreBackend) -> None:
        self.db, self.collection_id, self.backend = db, collection_id, backend
        self.owner = owner_of(db, collection_id)
        self.moved: tuple[Path, Path] | None = None  # (recorded, found): a pair moved, read before `relocate`

    @classmethod
    def for_collection(cls, db: Database, collection: Collection) -> IndexCatalog:
        """The catalog of a collection row, on the backend the collection was created with, in the folder its
        vectors are found in (`folder_of`)."""
        folder = folder_of(db, collection)
        catalog = cls(db, collection.id, open_backend(collection.vector_backend, folder / "indexes"))
        if folder != Path(collection.vector_dir):
            catalog.moved = (Path(collection.vector_dir), folder)
        return catalog

    def location(self, recorded: str) -> str:
        """Where a recorded index file is now: moved along with the vectors, where they were found elsewhere."""
        if self.moved is None or not Path(recorded).is_relative_to(self.moved[0]):
            return recorded
        return str(self.moved[1] / Path(recorded).relative_to(self.moved[0]))

    def _row(self, session: Any, strategy: str, key: str) -> IndexBuild | None:
        return session.scalar(
            select(IndexBuild).filter_by(collection_id=self.collection_id, strategy=strategy, key=key)
        )

    def get(self, strategy: str, key: str, generation: int, encoders: list[str]) -> VectorStore | None:
        """The stored index if it is current and made by `encoders`; None when it must be (re)built."""
        with self.db.session() as session:
            row = self._row(session, strategy, key)
            if row is None or row.generation != generation or list(row.encoders) != list(encoders):
                return None
            location = self.location(row.file)
        store = self.backend.open(location, {"encoders": encoders})
        if store is not None and (
            store.header.get("owner") not in (None, self.owner)
            or store.header.get("generation") not in (None, generation)
        ):
            return None  # another collection's index, or an older copy of this one: rebuilt, never trusted
        return store

    def forget(self, encoders: set[str]) -> None:
        """Remove every index built from any of `encoders` (they left the collection's profile)."""
        with self.db.session() as session:
            rows = session.scalars(select(IndexBuild).filter_by(collection_id=self.collection_id)).all()
            gone = [row for row in rows if encoders & set(row.encoders)]
            names = [self._name(row.strategy, row.key) for row in gone]
            for row in gone:
                session.delete(row)
        for name in names:
            self.backend.drop_older(name, EVERY_GENERATION)

    def _name(self, strategy: str, key: str) -> str:
        # the database's id in the name too: two databases may share a Milvus server or an index folder
        return f"{self.db.uid[:12]}-c{self.collection_id}-{strategy}-{key}"

    def create(
        self,
        strategy: str,
        key: str,
        ids: np.ndarray,
        vectors: Rows,
        generation: int,
        factory: str | None = None,
        header: dict[str, Any] | None = None,
    ) -> VectorStore:
        """Build the index, persist it on the backend, then record it (in that order: crash-safe).

        A build never replaces a newer one: a search that rebuilt a stale index while an indexer wrote the
        next generation used to record its older index over the indexer's (test_reliability's concurrent
        search and write). The row is updated only where its generation is not newer, in one statement.
        """
        started = time.perf_counter()
        header = {**(header or {}), "strategy": strategy, "owner": self.owner, "generation": generation}
        name = self._name(strategy, key)
        store, location = self.backend.create(name, generation, ids, vectors, factory, header)
        if location is None:
            return store
        values = {
            "encoders": list(store.header.get("encoders", [])),
            "factory": store.factory,
            "count": len(store),
            "file": location,
            "generation": generation,
            "seconds": time.perf_counter() - started,
        }
        try:
            recorded = self._record(strategy, key, generation, values)
        except ReadOnlyDatabaseError:  # a role that may only read searches with what it built, recording nothing
            recorded = False
        if recorded:
            self.backend.drop_older(name, generation)
        else:
            self.backend.release(location)  # overtaken, or not ours to record: only this process searches with it
        return store

    def _record(self, strategy: str, key: str, generation: int, values: dict[str, Any]) -> bool:
        """Record a build unless a newer one is on record (then False)."""
        with self.db.session() as session:
            row = self._row(session, strategy, key)
            if row is None:
                session.add(IndexBuild(collection_id=self.collection_id, strategy=strategy, key=key, **values))
                return True
            not_newer = (IndexBuild.id == row.id) & (IndexBuild.generation <= generation)
            done = cast(CursorResult[Any], session.execute(update(IndexBuild).where(not_newer).values(**values)))
            return done.rowcount == 1
