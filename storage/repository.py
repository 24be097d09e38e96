"""The queries the application runs, in one place, always through bound parameters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, joinedload

from storage.models import Asset, CheckpointRecord, Collection, IndexBuild, Item, Preset, TranscriptRow


def get_collection(session: Session, name: str) -> Collection | None:
    return session.scalar(select(Collection).where(Collection.name == name))


def items_by_ids(session: Session, ids: Iterable[int]) -> dict[int, Item]:
    """Items with their assets for a page of results, in one SQL query (a join)."""
    wanted = [int(i) for i in ids]
    if not wanted:
        return {}
    rows = session.scalars(select(Item).where(Item.id.in_(wanted)).options(joinedload(Item.assets))).unique()
    return {item.id: item for item in rows}


def ok_ids_by_modality(session: Session, collection_id: int) -> dict[str, set[int]]:
    """Which items hold a good asset of each modality: the truth the vector tables must agree with."""
    rows = session.execute(
        select(Asset.modality, Asset.item_id)
        .join(Item)
        .where(Item.collection_id == collection_id, Asset.status == "ok")
    )
    out: dict[str, set[int]] = {}
    for modality, item_id in rows:
        out.setdefault(modality, set()).add(item_id)
    return out


def unencoded_items(session: Session, collection_id: int) -> int:
    """Items with no asset row at all: listed by a run that stopped before reaching them (every item a source
    lists has at least one asset, recorded good or failed once it is read). An item whose other modality was
    reached is not counted: without its source, nothing says it had one."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Item)
            .where(Item.collection_id == collection_id, ~select(Asset.id).where(Asset.item_id == Item.id).exists())
        )
        or 0
    )


def latest_checkpoint(session: Session, collection_id: int, strategy: str) -> CheckpointRecord | None:
    return session.scalar(
        select(CheckpointRecord)
        .where(CheckpointRecord.collection_id == collection_id, CheckpointRecord.strategy == strategy)
        .order_by(CheckpointRecord.created_at.desc(), CheckpointRecord.id.desc())
        .limit(1)
    )


def checkpoint_records(session: Session, collection_id: int, strategy: str) -> list[CheckpointRecord]:
    """Every record of `strategy`'s checkpoints on the collection, the newest first (the first answers)."""
    return list(
        session.scalars(
            select(CheckpointRecord)
            .where(CheckpointRecord.collection_id == collection_id, CheckpointRecord.strategy == strategy)
            .order_by(CheckpointRecord.created_at.desc(), CheckpointRecord.id.desc())
        )
    )


def checkpoint_by_file(session: Session, collection_id: int, file: str) -> CheckpointRecord | None:
    """The newest record of this checkpoint file on the collection (a file retrained in place is registered again)."""
    return session.scalar(
        select(CheckpointRecord)
        .where(CheckpointRecord.collection_id == collection_id, CheckpointRecord.file == file)
        .order_by(CheckpointRecord.created_at.desc(), CheckpointRecord.id.desc())
        .limit(1)
    )


def item_metadata(session: Session, collection_id: int) -> dict[int, dict]:
    """Every item's metadata by id (filters on free-form JSON are done by the caller, type-safely)."""
    return dict(session.execute(select(Item.id, Item.meta).where(Item.collection_id == collection_id)).all())


def get_preset(session: Session, collection_id: int, name: str) -> Preset | None:
    return session.scalar(select(Preset).where(Preset.collection_id == collection_id, Preset.name == name))


def list_presets(session: Session, collection_id: int) -> list[Preset]:
    return list(session.scalars(select(Preset).where(Preset.collection_id == collection_id).order_by(Preset.name)))


def save_preset(
    session: Session, collection_id: int, name: str, strategy: str, params: dict, weights: dict, report: dict
) -> Preset:
    row = get_preset(session, collection_id, name) or Preset(collection_id=collection_id, name=name)
    row.strategy, row.params, row.weights, row.report = strategy, dict(params), dict(weights), dict(report)
    session.add(row)
    return row


def collection_names(session: Session) -> list[str]:
    return list(session.scalars(select(Collection.name).order_by(Collection.name)))


def set_collection(session: Session, collection_id: int, **values: object) -> None:
    """Update columns of one collection row (e.g. its root folder)."""
    session.execute(update(Collection).where(Collection.id == collection_id).values(**values))


def bump_generation(session: Session, collection_id: int, tables: dict[str, str | None] | None = None) -> None:
    """Mark every index of the collection stale (they are stamped with the generation they were built at), and
    record the digests of the vector tables written since (`VectorStorage.take_written`)."""
    session.execute(
        update(Collection).where(Collection.id == collection_id).values(generation=Collection.generation + 1)
    )
    record_tables(session, collection_id, tables or {})


def record_tables(session: Session, collection_id: int, tables: dict[str, str | None]) -> None:
    """Record each table's digest (None: the table was removed), in the transaction of the rows it goes with."""
    if not tables:
        return
    recorded: dict[str, Any] = dict(
        session.scalar(select(Collection.tables).where(Collection.id == collection_id)) or {}
    )
    for key, digest in tables.items():
        if digest is None:
            recorded.pop(key, None)
        else:
            recorded[key] = digest
    session.execute(update(Collection).where(Collection.id == collection_id).values(tables=recorded))


def index_build(session: Session, collection_id: int, strategy: str, key: str) -> IndexBuild | None:
    return session.scalar(
        select(IndexBuild).where(
            IndexBuild.collection_id == collection_id, IndexBuild.strategy == strategy, IndexBuild.key == key
        )
    )


def stored_transcripts(session: Session, model: str, digests: Iterable[str]) -> dict[str, TranscriptRow]:
    """The transcripts `model` made of these file contents, by sha256 (those it has not made are absent)."""
    wanted = sorted(set(digests))
    out: dict[str, TranscriptRow] = {}
    for start in range(0, len(wanted), 500):  # bound the IN list (SQLite's host-parameter limit)
        part = wanted[start : start + 500]
        rows = session.scalars(
            select(TranscriptRow).where(TranscriptRow.model == model, TranscriptRow.sha256.in_(part))
        )
        out.update({row.sha256: row for row in rows})
    return out
