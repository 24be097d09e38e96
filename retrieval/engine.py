"""SearchEngine: the Python API. Open a collection, search it with any mix of image, text and audio."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders import Encoder, create_encoder
from retrieval.fusion import create_strategy
from retrieval.media import MediaInput, load_audio, load_image, load_text
from retrieval.profiles import Profile
from retrieval.space import EncodedQuery, VectorSpace
from storage import Database, EncoderMismatchError, IndexCatalog, VectorStorage
from storage.repository import get_collection, items_by_ids


class CollectionNotFoundError(LookupError):
    pass


@dataclass
class Hit:
    rank: int
    item_id: int
    key: str
    score: float
    contributions: dict[str, float]
    metadata: dict[str, Any]
    assets: dict[str, str]
    text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "item_id": self.item_id, "key": self.key, "score": round(self.score, 6),
                "contributions": {m: round(v, 6) for m, v in self.contributions.items()},
                "metadata": self.metadata, "assets": self.assets, "text": self.text}


@dataclass
class SearchResult:
    strategy: str
    hits: list[Hit]
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueryInput:
    """What the user asked with, before decoding; `describe()` is what JSON output shows."""

    text: str | None = None
    image: MediaInput | None = None
    audio: MediaInput | None = None
    weights: dict[str, float] = field(default_factory=dict)

    def present(self) -> list[str]:
        return [m for m in ("image", "audio", "text") if getattr(self, m) is not None]

    def describe(self) -> dict[str, Any]:
        def show(value: Any) -> Any:
            return value if isinstance(value, str) or value is None else f"<{type(value).__name__}>"
        return {"text": self.text, "image": show(self.image if not isinstance(self.image, Path) else str(self.image)),
                "audio": show(self.audio if not isinstance(self.audio, Path) else str(self.audio)),
                "weights": self.weights}


class SearchEngine:
    """One collection, opened once: its profile's encoders, its vectors, its indexes."""

    def __init__(self, db: Database, collection: str, device: str | None = None) -> None:
        self.db, self.device, self.collection_name = db, device, collection
        with db.session() as session:
            row = get_collection(session, collection)
            if row is None:
                raise CollectionNotFoundError(
                    f"no collection {collection!r} in {db.url}; index one first: python -m indexer PATH --db {db.url}")
            self.collection_id, self.generation = row.id, row.generation
            self.profile = Profile.from_dict(row.profile)
            self.records = {e.name: e for e in row.encoders}
            vector_dir = Path(row.vector_dir)
        self._encoders: dict[str, Encoder] = {}
        dims = {name: rec.dim for name, rec in self.records.items()}
        catalog = IndexCatalog(db, self.collection_id, vector_dir / "indexes")
        self.space = VectorSpace(self.profile.fields, VectorStorage(vector_dir), self.generation, catalog, dims=dims)

    @classmethod
    def open(cls, url: str, collection: str = "default", device: str | None = None) -> SearchEngine:
        return cls(Database(url), collection, device)

    def encoder(self, name: str) -> Encoder:
        """The encoder `name`, created on first use and checked against what made the stored vectors."""
        if name not in self._encoders:
            encoder = create_encoder(name, self.device)
            record = self.records.get(name)
            if record is not None and (record.dim != encoder.dim or record.preprocessing != encoder.preprocessing):
                raise EncoderMismatchError(
                    f"collection {self.collection_name!r} was indexed with {name} (dimension {record.dim}, "
                    f"preprocessing {record.preprocessing}); the encoder now gives dimension {encoder.dim}, "
                    f"preprocessing {encoder.preprocessing}. Re-index with --reencode.")
            self._encoders[name] = encoder
        return self._encoders[name]

    def encode_query(self, query: QueryInput) -> EncodedQuery:
        if not query.present():
            raise ValueError("empty query: give at least one of text, image or audio")
        vectors: dict[tuple[str, str], np.ndarray] = {}
        for modality in query.present():
            for name in self.profile.encoders.get(modality, ()):
                encoder = self.encoder(name)
                vectors[(modality, name)] = encoder.encode(modality, [self._decode(modality, query, encoder)])[0]
        return EncodedQuery(vectors=vectors, weights=dict(query.weights))

    @staticmethod
    def _decode(modality: str, query: QueryInput, encoder: Encoder) -> Any:
        value = getattr(query, modality)
        if modality == "image":
            return load_image(value)
        if modality == "audio":
            if isinstance(value, tuple):  # (samples, sample_rate): arrays carry no rate of their own
                return load_audio(np.asarray(value[0]), encoder.sample_rate, input_rate=int(value[1]))
            return load_audio(value, encoder.sample_rate)
        return load_text(value)

    def search(self, text: str | None = None, image: MediaInput | None = None, audio: MediaInput | None = None,
               strategy: str = "late", k: int = 10, weights: dict[str, float] | None = None,
               **params: Any) -> SearchResult:
        """Search with any non-empty mix of text, image and audio.

        Images and audio may be paths, bytes or arrays; give audio arrays as `(samples, sample_rate)`
        (a bare array is taken to be at the encoder's own rate).
        """
        query = QueryInput(text, image, audio, dict(weights or {}))
        return self.search_many(query, [strategy], k=k, params={strategy: params})[strategy]

    def search_many(self, query: QueryInput, strategies: list[str], k: int = 10,
                    params: dict[str, dict[str, Any]] | None = None) -> dict[str, SearchResult]:
        """Encode once, search with each strategy: what comparisons are made of."""
        encoded = self.encode_query(query)
        results: dict[str, SearchResult] = {}
        for name in strategies:
            started = time.perf_counter()
            strategy = create_strategy(name, **(params or {}).get(name, {}))
            scored = strategy.search(self.space, encoded, k)
            hits = self._hits(scored)
            results[name] = SearchResult(name, hits, time.perf_counter() - started, vars(strategy.params))
        return results

    def _hits(self, scored: list) -> list[Hit]:
        with self.db.session() as session:
            items = items_by_ids(session, [s.item_id for s in scored])
            hits = []
            for s in scored:
                item = items.get(s.item_id)
                if item is None:  # removed since the vectors were loaded
                    continue
                assets = {a.modality: a.path for a in item.assets if a.status == "ok"}
                text = next((a.preview for a in item.assets if a.modality == "text" and a.status == "ok"), None)
                hits.append(Hit(len(hits) + 1, s.item_id, item.key, s.score, s.contributions, dict(item.meta),
                                assets, text))
        return hits

    def prepare(self, strategies: list[str]) -> None:
        for name in strategies:
            create_strategy(name).prepare(self.space)
