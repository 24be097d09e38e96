"""Indexing: each strategy's indexes built from the tables (derived data, stamped with the collection's
generation, so a stale one is rebuilt, never trusted), and the run's summary read back from the database."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from indexer.report import IndexSummary, ProgressFn
from indexer.sources import Problem
from indexer.target import Target
from retrieval.fusion import create_strategy
from retrieval.space import VectorSpace
from storage import Asset, Collection, IndexCatalog, Item, SkippedFile


def build_indexes(target: Target, strategies: tuple[str, ...], progress: ProgressFn | None) -> None:
    collection = target.collection
    with target.db.session() as session:
        generation = session.scalar(select(Collection.generation).where(Collection.id == collection.id)) or 0
    dims = {name: e.dim for name, e in target.encoders.items()}
    catalog = IndexCatalog.for_collection(target.db, collection)
    space = VectorSpace(target.profile.fields, target.storage, generation, catalog, dims=dims)
    for number, name in enumerate(strategies, start=1):
        create_strategy(name).prepare(space)
        if progress:
            progress("index", number, len(strategies))


def summarise(target: Target, summary: IndexSummary, scan_problems: list[Problem]) -> None:
    """Record the files the scan skipped; count items and assets, and list the files that failed."""
    collection_id = target.collection.id
    with target.db.session() as session:
        session.execute(delete(SkippedFile).where(SkippedFile.collection_id == collection_id))
        session.add_all(SkippedFile(collection_id=collection_id, path=p.path, reason=p.reason) for p in scan_problems)
        in_collection = Item.collection_id == collection_id
        summary.items = session.scalar(select(func.count()).select_from(Item).where(in_collection)) or 0
        counts = session.execute(
            select(Asset.modality, func.count())
            .join(Item)
            .where(in_collection, Asset.status == "ok")
            .group_by(Asset.modality)
        )
        summary.assets = dict(sorted((m, n) for m, n in counts))
        errors = session.execute(
            select(Asset.path, Asset.error).join(Item).where(in_collection, Asset.status == "error").order_by(Asset.id)
        )
        summary.problems += [Problem(path, error or "error") for path, error in errors]
