"""The saved checkpoints of a learned strategy on a collection, and which of them answers.

The newest record of a strategy answers for it in Search and Evaluate. Choosing an earlier model registers its
file again, as the newest record, with its own training date, items, split and loss kept (`trained_at` in the
record's config): the schema is unchanged, and a database read by an older version still answers with the
model chosen."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from retrieval.errors import NotFoundError
from retrieval.results import CheckpointInfo
from storage import CheckpointRecord, Database
from storage.repository import checkpoint_records


def record_info(record: CheckpointRecord) -> CheckpointInfo:
    """What a checkpoint record says of its model; the training date kept from before a restore."""
    config = record.config or {}
    trained = config.get("trained_at")
    return CheckpointInfo(
        record.strategy,
        record.file,
        datetime.fromisoformat(trained) if trained else record.created_at,
        record.items,
        record.final_loss,
        tuple(record.encoders or ()),
        tuple(sorted((str(k), str(v)) for k, v in (config.get("where") or {}).items())),
    )


def saved_checkpoints(db: Database, collection_id: int, strategy: str) -> list[CheckpointInfo]:
    """The models of `strategy` saved on the collection whose file is still there, the one answering first,
    then the others by training date, newest first; each file once, as its newest record says (a file trained
    again in place holds only its last weights)."""
    with db.session() as session:
        records = checkpoint_records(session, collection_id, strategy)
        seen: dict[str, CheckpointInfo] = {}
        for record in records:
            if record.file not in seen and Path(record.file).is_file():
                seen[record.file] = record_info(record)
    infos = list(seen.values())
    return infos[:1] + sorted(infos[1:], key=lambda info: info.trained_at, reverse=True)


def use_checkpoint(db: Database, collection_id: int, strategy: str, file: str) -> CheckpointInfo:
    """Make `file`, a saved model of `strategy` on this collection, the one that answers for it."""
    db.require_writable(f"choose the model that answers for {strategy}")
    with db.session() as session:
        record = next((r for r in checkpoint_records(session, collection_id, strategy) if r.file == file), None)
        if record is None or not Path(file).is_file():
            raise NotFoundError(f"{file} is not a saved model of {strategy} on this collection (see its list)")
        info = record_info(record)
        config = dict(record.config or {}) | {"trained_at": info.trained_at.isoformat()}
        session.add(
            CheckpointRecord(
                collection_id=collection_id,
                strategy=strategy,
                file=record.file,
                encoders=list(record.encoders or []),
                config=config,
                items=record.items,
                final_loss=record.final_loss,
            )
        )
    return info
