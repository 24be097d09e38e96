"""The vector store interface, and the backends that keep a collection's indexes.

A `VectorStore` is what fusion strategies search: item ids and unit vectors, inner product, add and
remove. A `StoreBackend` is where a collection's stores live between runs: FAISS files beside the
vectors (the embedded default) or a Milvus server (Milvus Lite in one file, or a cluster). A backend is
named by one string, like a FAISS factory string names an index: `faiss`, `milvus:./data/milvus.db`,
`milvus:http://milvus:19530`. A new backend is one file plus one line registering it in `BACKENDS`.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from storage.errors import EncoderMismatchError, StorageError
from storage.registry import Registry

if TYPE_CHECKING:
    from storage.faiss_store import Rows

BACKENDS: Registry[Callable[..., StoreBackend]] = Registry("vector backend")
BACKENDS.register("faiss", "storage.faiss_store:FaissBackend", "FAISS files beside the vectors (the default)")
BACKENDS.register(
    "milvus", "storage.milvus_store:MilvusBackend", "milvus:PATH (Milvus Lite) or milvus:http://HOST:19530"
)
DEFAULT_BACKEND = "faiss"
# A compressed index's shortlist: max(RESCORE_FACTOR x wanted, RESCORE_MIN) candidates, re-scored exactly.
# ~800k clustered 512-d vectors, IVF2048,PQ256x4fs (the default code size), 20 queries
# (docs/benchmarks/notes/shortlist_recall.md): recall@10 0.94 from 300 candidates (5 ms a query with the
# re-scoring), 0.99 from 1,000 (12 ms). End to end at 1M (docs/benchmarks/notes/scale_10m.md), 1,000 bought late
# 0.344 -> 0.35 and early 0.764 -> 0.768 recall@10 for 25 -> 56 and 16 -> 40 ms p50, so 300 stays.
# Late fusion's units want 100 each, so 3 x 100 keeps that ratio.
RESCORE_FACTOR, RESCORE_MIN = 3, 300
# ... and at least the rows that fit in the bytes of RESCORE_MIN float16 rows of 512-d (300 KB), at most
# RESCORE_MAX: a narrow vector is cheap to re-score, so a narrow index gets a longer shortlist. Gated's 128-d
# fused vectors at 10M (agreeing fields, docs/benchmarks/notes/scale_10m.md), shortlist 300 / 1,000 / 3,000:
# recall@10 0.88 / 0.96 / 0.994, p50 with the rows cached 10.5 / 12.3 / 17.1 ms. Early's 1536-d index at
# 3,000 rows: 0.974 at 82 ms cached against 40 ms at 300 (9 MB a query read from disk where rows are not
# in memory), hence a budget in bytes and not in rows. A 1 MB budget (1,000 rows a 512-d field) lifts one
# field alone 0.888 -> 0.974 (bench/shortlist_10m.py) but late end to end only 0.794 -> 0.894 (62 -> 85 ms
# p50, one process), and reads 3x the rows of a cold table, so 300 KB stays; `rescore_bytes` (VectorSpace,
# --rescore-bytes) buys more where the tables are in memory (docs/benchmarks/notes/scale_10m.md, ninth session).
RESCORE_BYTES, RESCORE_MAX = RESCORE_MIN * 512 * 2, 3000
# ... and at least a share of the index's vectors (at most RESCORE_MAX), by how coarse its codes are: the more
# vectors, the more of them the codes' error lifts above the true top 10, so the shortlist grows with the
# collection. SHORTLIST_SHARES: (codes under this many bits a dimension, rows a vector), first match.
# Under 2 bits, 3 in 10,000: today's 300 at 1M, where early's 1-bit codes found 0.942 of its exact top 10
# (agreeing fields); at 10M 300 rows found 0.566 and 3,000 rows 0.97, hybrid's 1-bit 1,024-d group 0.908 ->
# 0.986. From 2 bits (the default codes, `faiss_store.CODE_BITS`), 1 in 10,000: early's 2-bit 1,536-d index at
# 10M found 0.908 from 300 rows, 0.992 from 992, 0.998 from 1,984; late's 2-bit fields 0.982 from their 960
# rows a field; gated's 2-bit 128-d index 0.962 from its 1,200 (docs/benchmarks/notes/scale_10m.md, tenth and
# eleventh sessions). 4 bits and more were not measured at scale: no share. A Milvus store never counts its
# collection a search (a round trip; `counts_locally`), so it keeps its byte budget whatever its codes.
SHORTLIST_SHARES: tuple[tuple[float, float], ...] = ((2.0, 3 / 10_000), (4.0, 1 / 10_000))
# Inverted files search a sixteenth of their lists, but a large compressed index at most the lists that hold
# about SCAN_VECTORS vectors (never fewer than 16): what 1M items scan (128 of 2,048 lists of ~400), so a
# query's scan stops growing with the collection and its recall comes from re-scoring longer lists instead.
# 10M agreeing fields, p50 of a first / second pass (docs/benchmarks/notes/scale_10m.md, ninth session): 16 of
# 2,048 lists found what 128 did, late with 300 candidates 0.98 at 31 / 39 against 71 / 99 ms, early from
# 3,000 rows 0.974 at 75 / 42 against 169 / 82 ms. Exact inverted files (IVF,Flat, below COMPRESS_FROM) keep
# their sixteenth: nothing re-scores after them.
SCAN_VECTORS = 65_536


def shortlist_share(bits: float | None) -> float:
    """Rows a vector a shortlist of codes of `bits` a dimension also holds (SHORTLIST_SHARES; None: exact or
    scalar codes, none)."""
    return next((share for below, share in SHORTLIST_SHARES if bits is not None and bits < below), 0.0)


def default_nprobe(nlist: int, count: int = 0) -> int:
    """Lists an inverted file searches: a sixteenth, at least 16 (all of them when fewer), and in a compressed
    index of `count` vectors at most those holding about SCAN_VECTORS vectors (`count` 0: exact or unknown, no
    such cap; Milvus indexes each segment of at most ~1 GB apart, so its lists do not grow with the collection)."""
    share = max(16, nlist // 16)
    if count:
        share = min(share, max(16, SCAN_VECTORS * nlist // count))
    return min(nlist, share)


class VectorStore(ABC):
    """An index of item vectors, searched by inner product (cosine on unit vectors)."""

    dim: int
    factory: str  # the FAISS factory string that names the index kind (each backend maps it to its own)
    header: dict[str, Any]
    rescore_bytes: int | None = None  # a shortlist's budget of float16 rows (None: RESCORE_BYTES)
    counts_locally = True  # whether len() is free; a shortlist's share of the index is only for those that are
    remote = False  # whether a search is a round trip to a server: a query's several searches then go out together

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove these ids; returns how many were there."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Every item id in the store."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids (queries x k), best first; -1 ids pad when fewer than `k` vectors exist."""

    @property
    def exact_scores(self) -> bool:
        """Whether a search returns exact inner products: the index keeps whole vectors (Flat, IVF…,Flat,
        HNSW) or re-ranks with them (…,RFlat); compressed codes (PQ, SQ) give approximate scores."""
        return not re.search(r"PQ|SQ|LSH|RaBitQ", self.factory) or self.factory.endswith("RFlat")

    def shortlist(self, n: int) -> int:
        """How many candidates to ask for so that re-scoring them exactly from the tables finds the best
        `n`: `n` itself when scores are exact, more from compressed codes, the more the narrower its vectors,
        and under codes of under 4 bits a dimension the more the more vectors it holds (RESCORE_FACTOR,
        RESCORE_BYTES, SHORTLIST_SHARES; `rescore_bytes`, when set, is the budget whatever the index's size)."""
        if self.exact_scores:
            return n
        rows = (RESCORE_BYTES if self.rescore_bytes is None else self.rescore_bytes) // (2 * self.dim)  # float16
        # a share of the index only at the default budget, and never where len() is a round trip (Milvus)
        share = shortlist_share(self.code_bits()) if self.rescore_bytes is None and self.counts_locally else 0.0
        if share:
            rows = max(rows, round(len(self) * share))
        return max(n * RESCORE_FACTOR, RESCORE_MIN, min(rows, RESCORE_MAX))

    def code_bits(self) -> float | None:
        """Bits of code a dimension: PQ's (IVF2048,PQ256x4fs at 512-d: 256 codes of 4 bits, 2; the last PQ
        of a factory, not an OPQ rotation's), 1 for RaBitQ and LSH; None for other kinds (exact, or scalar
        codes of 4 bits and more)."""
        found = re.findall(r"(?<![A-Za-z])PQ(\d+)(?:x(\d+))?", self.factory)
        if found:
            codes, bits = found[-1]
            return int(codes) * int(bits or 8) / self.dim
        return 1.0 if re.search(r"RaBitQ|LSH", self.factory) else None

    def to_gpu(self) -> bool:
        """Move to a GPU when the backend can use one here; returns whether it did."""
        return False

    def set_nprobe(self, nprobe: int | None = None) -> None:
        """Inverted files: how many lists a search visits (None: `default_nprobe`); other kinds ignore it."""
        return None

    def check_dim(self, vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise EncoderMismatchError(
                f"vectors of dimension {vectors.shape[-1]} given to an index of dimension {self.dim} "
                f"(built by {self.header.get('encoders', 'unknown encoders')})"
            )


class StoreBackend(ABC):
    """Creates stores that outlive the process, and opens them again by their location."""

    spec: str

    @abstractmethod
    def create(
        self,
        name: str,
        generation: int,
        ids: np.ndarray,
        vectors: Rows,
        factory: str | None,
        header: dict[str, Any],
    ) -> tuple[VectorStore, str | None]:
        """Build and persist the store `name` at `generation`, under a location of its own (another
        generation's is never touched); returns it and its location (None when it could only be kept in
        memory). The catalog then records it, or drops it when another process recorded a newer one."""

    @abstractmethod
    def open(self, location: str, expect: dict[str, Any]) -> VectorStore | None:
        """The store at `location` if it is there, readable, and its header matches `expect`; else None."""

    @abstractmethod
    def release(self, location: str) -> None:
        """The store at `location` will not be recorded (another process recorded a newer generation first):
        remove it once the process that built it no longer needs it, or at the next `drop_older`."""

    @abstractmethod
    def drop_older(self, name: str, generation: int) -> None:
        """Remove the stores of `name` older than `generation` (and orphans of crashed builds at them)."""


def open_backend(spec: str | None, index_dir: Path) -> StoreBackend:
    """`faiss` keeps files under `index_dir`; `milvus:URI` talks to Milvus Lite (a file) or a server."""
    spec = spec or DEFAULT_BACKEND
    kind, _, target = spec.partition(":")
    if kind not in BACKENDS:
        raise StorageError(f"unknown vector backend {spec!r}; use one of: faiss, milvus:PATH_OR_URI")
    try:
        backend_cls = BACKENDS.get(kind)
    except ImportError as exc:
        raise StorageError(
            f"vector backend {kind!r} needs a package that is not installed ({exc.name}); "
            "pip install -r requirements.txt"
        ) from exc
    return backend_cls(target, index_dir) if kind != "faiss" else backend_cls(index_dir)


def normalise_backend(spec: str | None) -> str:
    """The spec to record for a collection: a Milvus Lite path made absolute, so any process finds it."""
    spec = spec or DEFAULT_BACKEND
    kind, _, target = spec.partition(":")
    if kind == "milvus" and target and "://" not in target:
        return f"milvus:{Path(target).expanduser().resolve()}"
    if kind not in BACKENDS or (kind == "milvus" and not target):
        raise StorageError(
            f"unknown vector backend {spec!r}; use faiss, milvus:PATH (Milvus Lite) or "
            "milvus:http://HOST:19530 (a Milvus server)"
        )
    return spec


def pad_lists(rows: list[tuple[Sequence[int], Sequence[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-query (ids, scores) lists, best first, as the (scores, ids) arrays FAISS returns: as wide as the
    longest list, the others padded with -1 ids and -inf scores."""
    k = max((len(ids) for ids, _ in rows), default=0)
    scores = np.full((len(rows), k), -np.inf, np.float32)
    ids = np.full((len(rows), k), -1, np.int64)
    for i, (found, scored) in enumerate(rows):
        ids[i, : len(found)], scores[i, : len(found)] = found, scored
    return scores, ids
