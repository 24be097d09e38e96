"""Typed ORM rows for collections, items, assets, encoders and index builds.

Vectors are deliberately *not* here: they live in float16 files beside the database
(`storage.vectors`) so that fused indexes can be rebuilt without re-encoding anything and
without pushing megabytes of blobs through SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

SCHEMA_VERSION = 4  # 2: collections.vector_backend; 3: transcripts; 4: collections.tables
TEXT_PREVIEW = 2000

# SQLite only auto-increments INTEGER PRIMARY KEY; BigInteger keeps ids 64-bit elsewhere (they are FAISS ids).
IdType = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[str]: JSON}


class SchemaInfo(Base):
    """One row: the schema version this database was written with (newer ones are refused)."""

    __tablename__ = "schema_info"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class DatabaseIdentity(Base):
    """One row: a random id made when the database was created. Vector folders, vector tables and index
    names carry it (with the collection id), so two databases sharing a `--vector-dir` never mix."""

    __tablename__ = "database_identity"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(32))


class Collection(Base):
    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    root: Mapped[str | None] = mapped_column(Text, default=None)
    vector_dir: Mapped[str] = mapped_column(Text)
    # Where the collection's indexes live: "faiss" (files under vector_dir) or "milvus:URI".
    vector_backend: Mapped[str] = mapped_column(String(500), default="faiss", server_default="faiss")
    profile: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Bumped whenever stored vectors change; an index built at another generation is stale.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    # Each vector table's digest as last written (field key -> `Integrity.digest`), committed with the rows that
    # describe it: a table restored from a backup (or a database restored over newer tables) is told apart.
    tables: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    items: Mapped[list[Item]] = relationship(back_populates="collection", cascade="all, delete-orphan")
    encoders: Mapped[list[EncoderRecord]] = relationship(cascade="all, delete-orphan")


class Item(Base):
    """One searchable thing: up to one asset per modality, plus free metadata (e.g. a label)."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("collection_id", "key"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(500))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    collection: Mapped[Collection] = relationship(back_populates="items")
    assets: Mapped[list[Asset]] = relationship(back_populates="item", cascade="all, delete-orphan", lazy="selectin")


class Asset(Base):
    """One file of one modality of one item; a bad file keeps its row with status 'error' and the reason."""

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("item_id", "modality"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    modality: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), default=None)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, default=None)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | ok | error
    error: Mapped[str | None] = mapped_column(Text, default=None)
    duration_s: Mapped[float | None] = mapped_column(Float, default=None)
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    encoded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    # For text assets, the text itself (up to TEXT_PREVIEW characters), so results can show it.
    preview: Mapped[str | None] = mapped_column(Text, default=None)

    item: Mapped[Item] = relationship(back_populates="assets")


class TranscriptRow(Base):
    """What a recording says, by the model that heard it and the file's content: made once per database,
    whichever collection or run meets the same file again."""

    __tablename__ = "transcripts"
    __table_args__ = (UniqueConstraint("model", "sha256"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    confidence: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SkippedFile(Base):
    """A file (or manifest row) that never became an asset: unknown type, a path pointing nowhere."""

    __tablename__ = "skipped_files"
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EncoderRecord(Base):
    """Which encoder made a collection's vectors; opening it with another one is refused."""

    __tablename__ = "encoders"
    __table_args__ = (UniqueConstraint("collection_id", "name"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(300))
    weights: Mapped[str | None] = mapped_column(Text, default=None)
    dim: Mapped[int] = mapped_column(Integer)
    modalities: Mapped[list[str]] = mapped_column(JSON, default=list)
    preprocessing: Mapped[str] = mapped_column(String(100), default="1")


class IndexBuild(Base):
    """An index built for a strategy (a FAISS file or a Milvus collection: `file` is its location);
    `generation` ties it to the vectors it was built from."""

    __tablename__ = "index_builds"
    __table_args__ = (UniqueConstraint("collection_id", "strategy", "key"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    strategy: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(300))
    encoders: Mapped[list[str]] = mapped_column(JSON, default=list)
    factory: Mapped[str] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer)
    file: Mapped[str] = mapped_column(Text)
    generation: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    built_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CheckpointRecord(Base):
    """A trained fusion checkpoint registered with the collection it was trained on."""

    __tablename__ = "checkpoints"
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    strategy: Mapped[str] = mapped_column(String(100))
    file: Mapped[str] = mapped_column(Text)
    encoders: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    items: Mapped[int] = mapped_column(Integer, default=0)
    final_loss: Mapped[float | None] = mapped_column(Float, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Preset(Base):
    """A named method (strategy, parameters, query weights), e.g. chosen by tuning on labelled queries."""

    __tablename__ = "presets"
    __table_args__ = (UniqueConstraint("collection_id", "name"),)
    id: Mapped[int] = mapped_column(IdType, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    strategy: Mapped[str] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    weights: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
