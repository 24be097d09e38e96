"""A collection's stored vectors, field by field, and the channels a query can use on them.

Words: a *field* is the vectors one encoder made of one item modality (`image@hog`); a *channel* is a
(query modality, field) pair that shares an encoder, so a similarity exists between them: text→image
in CLIP, audio→audio in MFCC, text→text in MiniLM. There is no image→audio channel unless a learned
strategy makes one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from retrieval.linalg import l2_normalise
from retrieval.profiles import Field
from storage import FaissStore, IndexCatalog, VectorStorage, VectorStore, VectorTable, field_key
from storage.faiss_store import Rows
from storage.paging import ROWS_AT_A_TIME

log = logging.getLogger(__name__)


class FieldRows:
    """Several fields' vectors side by side for `ids` (zero blocks where an item lacks a field), made a
    slice at a time: what a concatenated index is built from. At 1M items a whole float32 concatenation
    held 6 GB (1,536-d); at 10M it would hold 61 GB, so an index takes it ROWS_AT_A_TIME rows at a time."""

    def __init__(self, tables: list[VectorTable], ids: np.ndarray) -> None:
        self.tables, self.ids = tables, ids
        self.shape = (len(ids), sum(t.dim for t in tables))

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        ids = self.ids[rows]
        return np.concatenate([t.lookup(ids)[0] for t in self.tables], axis=1)


@dataclass(frozen=True)
class Channel:
    query_modality: str
    field: Field

    @property
    def label(self) -> str:
        return f"{self.query_modality}→{self.field.modality}" + f" [{self.field.encoder}]"

    @property
    def vector_key(self) -> tuple[str, str]:
        """The key of the query vector this channel scores with: (query modality, encoder)."""
        return (self.query_modality, self.field.encoder)


class HeldRows:
    """Some items' vectors, gathered from each field's float16 table once and held as float32 (zero rows
    where an item lacks the field): a fixed sample that every query scores, or one query's candidates,
    which its re-scoring, its adaptive weights and its contributions all read. A `subset` reads its
    parent's rows where the parent has gathered them, else gathers only its own."""

    def __init__(self, tables: dict[str, VectorTable], ids: np.ndarray, parent: HeldRows | None = None) -> None:
        self.ids, self._tables = ids, tables
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._scored: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._located: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._parent, self._at = parent, np.zeros(0, np.int64)

    def rows(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Every held item's vector in field `key` (gathered on first use), and which items have one."""
        if key not in self._rows:
            if self._parent is not None and self._parent._holds(key):
                vectors, present = self._parent.rows(key)
                self._rows[key] = (vectors[self._at], present[self._at])
            else:
                self._rows[key] = self._tables[key].gather(*self.located(key))
        return self._rows[key]

    def _holds(self, key: str) -> bool:
        """Whether field `key`'s rows are gathered here or can be shared from a parent that gathered them."""
        return key in self._rows or (self._parent is not None and self._parent._holds(key))

    def located(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """Each held item's row in field `key`'s table and whether it has one (found once per field)."""
        if key not in self._located:
            if self._parent is not None:
                pos, present = self._parent.located(key)
                self._located[key] = (pos[self._at], present[self._at])
            else:
                self._located[key] = self._tables[key].locate(self.ids)
        return self._located[key]

    def scores(self, key: str, vector: np.ndarray) -> np.ndarray:
        """Inner products of `vector` with every held item's vector in field `key` (0 where absent). The last
        vector's are kept per field: a held sample is scored by each query vector two or three times
        (screening, then each predictor), and query vectors are never changed in place."""
        last = self._scored.get(key)
        if last is not None and last[0] is vector:
            return last[1]
        scores = self.rows(key)[0] @ np.asarray(vector, np.float32)
        self._scored[key] = (vector, scores)
        return scores

    def channel_scores(
        self, query: EncodedQuery, channel: Channel, negative: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """`VectorSpace.channel_scores` over the held items."""
        key = channel.field.key
        return self.scores(key, query_vector(query, channel, negative)), self.rows(key)[1]

    def subset(self, at: np.ndarray) -> HeldRows:
        """The held items at positions `at`: rows this one has gathered are shared, the others are gathered
        for those items alone when asked for."""
        out = HeldRows(self._tables, self.ids[at], self)
        out._at = at
        return out


def query_vector(query: EncodedQuery, channel: Channel, negative: bool = False) -> np.ndarray:
    """The vector a channel scores with: the query's own for its modality and encoder, or the negative one."""
    key = channel.vector_key
    return query.vectors[key] if key in query.vectors and not negative else query.negatives[key]


@dataclass
class EncodedQuery:
    """A query after encoding: one vector per (query modality, encoder), and a weight per modality."""

    vectors: dict[tuple[str, str], np.ndarray]
    weights: dict[str, float] = field(default_factory=dict)
    negatives: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    negative_weight: float = 1.0
    # vectors of inputs their encoder found nothing in (a recording without a voice): screened as flat ones
    empty: frozenset[tuple[str, str]] = frozenset()

    @property
    def modalities(self) -> list[str]:
        return sorted({m for m, _ in self.vectors})

    def weight(self, modality: str) -> float:
        return float(self.weights.get(modality, 1.0))

    def reweighted(self, weights: dict[str, float]) -> EncodedQuery:
        """The same query with `weights` (a method's) over its own: encoded once, searched per method."""
        if not weights:
            return self
        return replace(self, weights={**self.weights, **weights})


class VectorSpace:
    """All fields of one collection in memory, plus their indexes (kept by the catalog's backend when given)."""

    def __init__(
        self,
        fields: list[Field],
        storage: VectorStorage,
        generation: int,
        catalog: IndexCatalog | None = None,
        factory: str | None = None,
        dims: dict[str, int] | None = None,
        nprobe: int | None = None,
        rescore_bytes: int | None = None,
    ) -> None:
        self.fields = fields
        # How hard a compressed index searches (None: the defaults). `nprobe`: lists an inverted file visits
        # (docs/benchmarks/notes/scale_10m.md: early at 1M, 0.76 -> 0.97 from 128 to 2,048); `rescore_bytes`: the
        # float16 rows its shortlist re-scores exactly (late at 10M, 0.794 -> 0.894 from 300 KB to 1 MB).
        self.nprobe, self.rescore_bytes = nprobe, rescore_bytes
        self.storage = storage
        self.generation = generation
        self.catalog = catalog
        self.factory = factory
        self.tables: dict[str, VectorTable] = {}
        for f in fields:
            dim = (dims or {}).get(f.encoder)
            if storage.exists(f.key) or dim is not None:
                self.tables[f.key] = storage.load(f.key, dim=dim, encoder=f.encoder)
        self._indexes: dict[tuple[str, str], VectorStore] = {}
        self.index_prefix = ""
        self._centred: VectorSpace | None = None
        self._item_ids: np.ndarray | None = None
        self._derived: dict[str, VectorTable] = {}
        self._verified: set[str] = set()

    def centred(self) -> VectorSpace:
        """The same fields with each field's mean vector subtracted and rows re-normalised.

        Contrastive encoders leave a gap between modalities (all CLIP image vectors share a direction that
        text vectors lack); centring each field removes it before vectors of different fields are mixed.
        """
        if self._centred is None:
            view = object.__new__(VectorSpace)
            view.__dict__.update(self.__dict__)
            view.tables, view._indexes, view.index_prefix, view._centred = {}, {}, "centred-", None
            view._derived = {}
            self.means = {}
            for key, table in self.tables.items():
                mean = table.as_float32().mean(axis=0) if len(table) else np.zeros(table.dim, np.float32)
                self.means[key] = mean
                centred = VectorTable(dim=table.dim, header=dict(table.header))
                if len(table):
                    centred.upsert(table.ids, l2_normalise(table.as_float32() - mean))
                view.tables[key] = centred
            view.means = self.means
            self._centred = view
        return self._centred

    def centre_query(self, query: EncodedQuery) -> EncodedQuery:
        """Centre each query vector by the mean of its own (modality, encoder) field, else of its encoder's."""
        means = self.centred().means

        def centre(vectors: dict[tuple[str, str], np.ndarray]) -> dict[tuple[str, str], np.ndarray]:
            out = {}
            for (modality, encoder), vector in vectors.items():
                mean = means.get(field_key(modality, encoder))
                if mean is None:
                    same = [m for k, m in means.items() if k.split("@", 1)[1] == encoder]
                    mean = same[0] if same else np.zeros_like(vector)
                out[(modality, encoder)] = l2_normalise((vector - mean)[None, :])[0]
            return out

        return replace(query, vectors=centre(query.vectors), negatives=centre(query.negatives))

    def table(self, f: Field) -> VectorTable | None:
        return self.tables.get(f.key)

    def item_ids(self) -> np.ndarray:
        """Every item with at least one vector (computed once: a space's tables do not change)."""
        if self._item_ids is None:
            parts = [t.ids for t in self.tables.values()]
            self._item_ids = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        return self._item_ids

    def channels(self, query: EncodedQuery, negative: bool = False) -> list[Channel]:
        """The query's channels (or those of its negative terms) that reach stored vectors."""
        vectors = query.negatives if negative else query.vectors
        return [
            Channel(qm, f)
            for (qm, enc) in sorted(vectors)
            for f in self.fields
            if f.encoder == enc and f.key in self.tables and len(self.tables[f.key])
        ]

    def index(
        self, strategy: str, key: str, encoders: list[str], build: Callable[[], tuple[np.ndarray, Rows]]
    ) -> VectorStore:
        """The index named (strategy, key): from memory, from the backend if current, else built and kept."""
        strategy = self.index_prefix + strategy
        cached = self._indexes.get((strategy, key))
        if cached is not None:
            return cached
        store = self.catalog.get(strategy, key, self.generation, encoders) if self.catalog else None
        if store is None:
            self._verify([f.key for f in self.fields if f.encoder in encoders and f.key in self.tables])
            ids, vectors = build()
            header = {"encoders": encoders, "strategy": strategy}
            if self.catalog is not None:
                store = self.catalog.create(strategy, key, ids, vectors, self.generation, self.factory, header)
            else:
                store = FaissStore.build(ids, vectors, self.factory, header)
        if self.nprobe:
            store.set_nprobe(self.nprobe)
        store.rescore_bytes = self.rescore_bytes
        store.to_gpu()
        self._indexes[(strategy, key)] = store
        return store

    @property
    def loaded_indexes(self) -> Mapping[tuple[str, str], VectorStore]:
        """The indexes this space holds in memory, by (strategy, key), as `index` named them (read-only)."""
        return MappingProxyType(self._indexes)

    def drop_indexes(self) -> None:
        """Forget the indexes held in memory (the next search opens or builds them again), freeing them."""
        self._indexes.clear()

    def _verify(self, keys: list[str]) -> None:
        """Every table an index is built from, checked block by block once per process: an index built from
        a damaged table would answer with other items' vectors, and its build reads the table whole anyway
        (one more pass at CRC-32's speed, ~0.3 s a GB here)."""
        for key in keys:
            if key not in self._verified:
                self.storage.verify(key)
                self._verified.add(key)

    def field_index(self, f: Field) -> VectorStore:
        table = self.tables[f.key]
        return self.index("field", f.key, [f.encoder], lambda: (table.ids, table.vectors))

    def derived_table(self, key: str, width: int, compute: Callable[[np.ndarray], np.ndarray]) -> VectorTable:
        """A vector per item computed from the fields (a learned strategy's fused vectors), `compute`d a
        chunk of items at a time, stored beside the fields once per generation and memory-mapped by every
        later process: a new search process no longer re-fuses every item (bench/scale_10m.py measures its
        first search). Where the folder cannot be written, the table is kept in memory for this process."""
        table = self._derived.get(key)
        if table is not None:
            return table
        name, ids = f"derived:{self.index_prefix}{key}", self.item_ids()
        if self.storage.exists(name):
            table = self.storage.load(name)
            if table.header.get("generation") == self.generation and table.dim == width and len(table) == len(ids):
                self._derived[key] = table
                return table
        step = ROWS_AT_A_TIME
        chunks = (compute(ids[start : start + step]) for start in range(0, len(ids), step))
        try:
            self.storage.write(name, ids, width, chunks, {"generation": self.generation, "encoder": key})
            table = self.storage.load(name)
        except OSError as exc:
            log.warning("keeping %s in memory: %s", name, exc)
            table = VectorTable(dim=width, header={"generation": self.generation})
            table.upsert(ids, np.concatenate([compute(ids[s : s + step]) for s in range(0, len(ids), step)]))
        self._derived[key] = table
        return table

    def item_blocks(self, fields: list[Field], dims: list[int], ids: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Each field's vectors for `ids` (zeros where absent) and the presence mask, items x fields."""
        blocks, mask = [], np.zeros((len(ids), len(fields)), bool)
        for i, (f, dim) in enumerate(zip(fields, dims)):
            table = self.tables.get(f.key)
            if table is None:
                blocks.append(np.zeros((len(ids), dim), np.float32))
                continue
            vectors, present = table.lookup(ids)
            blocks.append(vectors)
            mask[:, i] = present
        return blocks, mask

    @staticmethod
    def query_blocks(
        fields: list[Field], vectors: dict[tuple[str, str], np.ndarray], dims: list[int]
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """A query as one row of field blocks: the query's (modality, encoder) vector fills that field."""
        blocks, mask = [], np.zeros((1, len(fields)), bool)
        for i, (f, dim) in enumerate(zip(fields, dims)):
            vector = vectors.get((f.modality, f.encoder))
            blocks.append((vector if vector is not None else np.zeros(dim, np.float32))[None, :].astype(np.float32))
            mask[0, i] = vector is not None
        return blocks, mask

    def channel_scores(
        self, query: EncodedQuery, channel: Channel, ids: np.ndarray, negative: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosine of the query with each item's field vector, and which items have that field."""
        return self.tables[channel.field.key].similarities(ids, query_vector(query, channel, negative))

    def held_rows(self, ids: np.ndarray) -> HeldRows:
        """The vectors of `ids`, each field's gathered once, when first asked for (`HeldRows`)."""
        return HeldRows(self.tables, ids)


@contextmanager
def indexes_used(space: VectorSpace) -> Iterator[list[tuple[str, str]]]:
    """Record which (strategy, key) indexes the space serves while the block runs."""
    used: list[tuple[str, str]] = []
    original = space.index

    def index(strategy: str, key: str, *args: Any, **kwargs: Any) -> Any:
        used.append((space.index_prefix + strategy, key))
        return original(strategy, key, *args, **kwargs)

    space.index = index  # type: ignore[method-assign]
    try:
        yield used
    finally:
        del space.index
