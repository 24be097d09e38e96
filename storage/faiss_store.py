"""FaissStore: a FAISS index named by one factory string, with ids, removal and atomic files.

Inner product on L2-normalised vectors (cosine). `IndexIDMap2` maps FAISS rows to item ids so that
removal and metadata lookups use the database's own ids. The index moves to the GPU when FAISS sees
one and stays on the CPU otherwise; files are always written from a CPU copy.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from storage.artifacts import load_arrays, save_arrays
from storage.errors import CorruptArtifactError, EncoderMismatchError
from storage.vector_store import StoreBackend, VectorStore

log = logging.getLogger(__name__)

FLAT_LIMIT = 10_000


def default_factory(count: int) -> str:
    """Exact search below 10k vectors, an inverted file above: at 10k an IVF512 keeps recall@10 at 1.0
    and answers ~9x faster than Flat (bench/index_choice.py). HNSW is faster still but cannot remove ids."""
    if count < FLAT_LIMIT:
        return "Flat"
    nlist = int(2 ** round(math.log2(4 * math.sqrt(count))))
    return f"IVF{nlist},Flat"


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


class FaissStore(VectorStore):
    """One FAISS index with item ids and a header naming what made it (encoders, dimension)."""

    def __init__(self, dim: int, factory: str = "Flat", header: dict[str, Any] | None = None) -> None:
        self.dim = dim
        self.factory = factory
        self.header = dict(header or {})
        base = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        self.index: faiss.Index = faiss.IndexIDMap2(base)
        self._on_gpu = False

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(
        cls, ids: np.ndarray, vectors: np.ndarray, factory: str | None = None, header: dict[str, Any] | None = None
    ) -> FaissStore:
        vectors = np.ascontiguousarray(vectors, np.float32)
        store = cls(vectors.shape[1], factory or default_factory(len(ids)), header)
        store.train(vectors)
        store.add(ids, vectors)
        store.set_nprobe()
        return store

    def set_nprobe(self, nprobe: int | None = None) -> None:
        """Inverted files search a sixteenth of their lists (at least 16) unless told otherwise."""
        try:
            ivf = faiss.extract_index_ivf(self.index)
        except RuntimeError:
            return
        ivf.nprobe = nprobe or min(ivf.nlist, max(16, ivf.nlist // 16))

    def train(self, vectors: np.ndarray) -> None:
        """Train when the index needs it; inverted files learn from a sample (64 points per list, 10
        k-means rounds; PQ codebooks likewise): building stays fast at 100k+ vectors and recall@10 stays
        high (bench/index_choice)."""
        if self.index.is_trained:
            return
        try:
            ivf = faiss.extract_index_ivf(self.index)
        except RuntimeError:
            ivf = None
        if ivf is not None:
            ivf.cp.niter = 10
            pq = getattr(faiss.downcast_index(ivf), "pq", None)
            if pq is not None:  # IVF-PQ codebooks: the same 10 rounds, on at most 64 points per code
                pq.cp.niter, pq.cp.max_points_per_centroid = 10, 64
            limit = 64 * ivf.nlist
            if len(vectors) > limit:
                vectors = vectors[np.random.default_rng(0).choice(len(vectors), limit, replace=False)]
        self.index.train(np.ascontiguousarray(vectors, np.float32))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, np.float32)
        self.check_dim(vectors)
        if len(ids):
            self.index.add_with_ids(vectors, np.ascontiguousarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> int:
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, np.int64))
        return int(self.index.remove_ids(selector))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """Every item id in the index (a copy)."""
        cpu: Any = faiss.index_gpu_to_cpu(self.index) if self._on_gpu else self.index
        return faiss.vector_to_array(cpu.id_map).copy()

    # -- searching ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids, best first; -1 ids pad when fewer than `k` vectors exist."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        self.check_dim(queries)
        k = max(1, min(k, len(self))) if len(self) else 1
        if len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, ids = self.index.search(queries, k)
        return scores, ids

    def to_gpu(self) -> bool:
        """Move to GPU 0 when FAISS has one; returns whether it did."""
        if self._on_gpu or gpu_count() == 0:
            return self._on_gpu
        resources = faiss.StandardGpuResources()
        self.index = faiss.index_cpu_to_gpu(resources, 0, self.index)
        self._gpu_resources = resources
        self._on_gpu = True
        return True

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        cpu = faiss.index_gpu_to_cpu(self.index) if self._on_gpu else self.index
        blob = faiss.serialize_index(cpu)
        header = {**self.header, "dim": self.dim, "factory": self.factory, "count": len(self)}
        save_arrays(Path(path), {"faiss": np.asarray(blob, np.uint8)}, header)

    @classmethod
    def load(cls, path: Path, *, expect: dict[str, Any] | None = None) -> FaissStore:
        """Read an index; every key of `expect` (e.g. encoders, dim) must match its header."""
        arrays, header = load_arrays(Path(path))
        for key, wanted in (expect or {}).items():
            if header.get(key) != wanted:
                raise EncoderMismatchError(
                    f"index {path} was built with {key}={header.get(key)!r}, but {wanted!r} is in use; "
                    "rebuild it from the vector tables: python -m indexer check --repair --db URL --collection NAME"
                )
        store = cls.__new__(cls)
        store.dim, store.factory, store.header = int(header["dim"]), str(header["factory"]), header
        store.index = faiss.deserialize_index(arrays["faiss"])
        store._on_gpu = False
        store.set_nprobe()
        return store


class FaissBackend(StoreBackend):
    """Index files under one folder, named after the store; a file is replaced atomically."""

    spec = "faiss"

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = Path(index_dir)

    def path_for(self, name: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:60]
        return self.index_dir / f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}.faiss.safetensors"

    def create(
        self,
        name: str,
        generation: int,
        ids: np.ndarray,
        vectors: np.ndarray,
        factory: str | None,
        header: dict[str, Any],
    ) -> tuple[FaissStore, str | None]:
        store = FaissStore.build(ids, vectors, factory, header)
        path = self.path_for(name)
        try:
            store.save(path)
        except OSError:
            return store, None  # read-only location: the index lives in memory for this process
        return store, str(path)

    def open(self, location: str, expect: dict[str, Any]) -> FaissStore | None:
        if not Path(location).exists():
            return None
        try:
            return FaissStore.load(Path(location), expect=expect)
        except CorruptArtifactError as exc:
            log.warning("rebuilding %s: %s", location, exc)
            return None
