"""A collection's learned models (`Models`): training, the saved checkpoints of a strategy, which answers.

The newest record of a strategy answers for it in Search and Evaluate. Choosing an earlier model registers its
file again, as the newest record, with its own training date, items, split and loss kept (`trained_at` in the
record's config): the schema is unchanged, and a database read by an older version still answers with the
model chosen. Records under a strategy's former name (learned early's, `early`, before 0.19.0) are read as
its own and never rewritten."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from retrieval.errors import NotFoundError
from retrieval.fusion.registry import checkpoint_strategy, recorded_names
from retrieval.results import CheckpointInfo
from retrieval.space import VectorSpace
from storage import CheckpointRecord, Database
from storage.repository import checkpoint_by_file, checkpoint_records, item_metadata, latest_checkpoint

if TYPE_CHECKING:  # training brings torch: imported by `Models.train`, not by every search
    from sqlalchemy.orm import Session

    from retrieval.train import TrainConfig, TrainResult


def record_info(record: CheckpointRecord) -> CheckpointInfo:
    """What a checkpoint record says of its model; the training date kept from before a restore."""
    config = record.config or {}
    trained = config.get("trained_at")
    return CheckpointInfo(
        checkpoint_strategy(record.strategy),
        record.file,
        datetime.fromisoformat(trained) if trained else record.created_at,
        record.items,
        record.final_loss,
        tuple(record.encoders or ()),
        tuple(sorted((str(k), str(v)) for k, v in (config.get("where") or {}).items())),
    )


def strategy_records(session: Session, collection_id: int, strategy: str) -> list[CheckpointRecord]:
    """Every record of `strategy`'s checkpoints, under its name or a former one, the newest first."""
    records = [r for name in recorded_names(strategy) for r in checkpoint_records(session, collection_id, name)]
    return sorted(records, key=lambda r: (r.created_at, r.id), reverse=True)


def saved_checkpoints(db: Database, collection_id: int, strategy: str) -> list[CheckpointInfo]:
    """The models of `strategy` saved on the collection whose file is still there, the one answering first,
    then the others by training date, newest first; each file once, as its newest record says (a file trained
    again in place holds only its last weights)."""
    with db.session() as session:
        records = strategy_records(session, collection_id, strategy)
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
        record = next((r for r in strategy_records(session, collection_id, strategy) if r.file == file), None)
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


class Models:
    """A collection's learned models: train one, list them, say which answers, choose another.
    `SearchEngine.models` hands one out."""

    def __init__(self, db: Database, collection_id: int, collection_name: str, space: VectorSpace) -> None:
        self.db, self.collection_id, self.collection_name, self.space = db, collection_id, collection_name, space
        self._infos: dict[tuple[str, int], CheckpointInfo | None] = {}

    def latest(self, strategy: str) -> str | None:
        """The file of the model that answers for `strategy` (its newest record), if any."""
        with self.db.session() as session:
            found = [latest_checkpoint(session, self.collection_id, name) for name in recorded_names(strategy)]
            records = [r for r in found if r is not None]
            return max(records, key=lambda r: (r.created_at, r.id)).file if records else None

    def info(self, file: str) -> CheckpointInfo | None:
        """What the collection recorded of this checkpoint file (None for a file trained elsewhere); kept per
        file and modification time: training again into the same file registers it again."""
        try:
            key = (file, Path(file).stat().st_mtime_ns)
        except OSError:
            key = (file, -1)
        if key not in self._infos:
            with self.db.session() as session:
                record = checkpoint_by_file(session, self.collection_id, file)
                self._infos[key] = None if record is None else record_info(record)
        return self._infos[key]

    def saved(self, strategy: str) -> list[CheckpointInfo]:
        """The saved models of `strategy`, the one answering first (`saved_checkpoints`)."""
        return saved_checkpoints(self.db, self.collection_id, strategy)

    def use(self, strategy: str, file: str) -> CheckpointInfo:
        """Make `file`, a saved model of `strategy` (one of `saved`), the one Search and Evaluate use."""
        return use_checkpoint(self.db, self.collection_id, strategy, file)

    def train(self, config: TrainConfig, out: str | Path, progress: Any = None) -> TrainResult:
        """Fit a learned strategy on the collection's stored vectors and register the checkpoint."""
        from retrieval.train import select_items, train

        self.db.require_writable("register a trained checkpoint in it")  # before the hours of training
        with self.db.session() as session:
            metadata = item_metadata(session, self.collection_id)
        ids, labels = select_items(metadata, self.space, config)
        meta = {"collection": self.collection_name, "database": self.db.url}
        result = train(self.space, ids, labels, config, out, progress, meta=meta)
        with self.db.session() as session:
            session.add(
                CheckpointRecord(
                    collection_id=self.collection_id,
                    strategy=config.strategy,
                    file=str(Path(result.path).resolve()),
                    encoders=sorted({f.encoder for f in self.space.fields}),
                    config=vars(config) | {"where": config.where},
                    items=result.items,
                    final_loss=result.losses[-1] if result.losses else None,
                )
            )
        return result
