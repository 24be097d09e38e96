"""FaissStore: a FAISS index named by one factory string, with ids, removal and atomic files.

Inner product on L2-normalised vectors (cosine), answering with the database's own item ids: an inverted
file keeps each vector's id in its list, any other index is wrapped in an `IndexIDMap2` (`holds_ids`). The
index moves to the GPU when FAISS sees one and stays on the CPU otherwise; files are always written from a
CPU copy.
"""

from __future__ import annotations

import glob
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np

from storage.artifacts import map_arrays, write_streamed
from storage.errors import CorruptArtifactError, EncoderMismatchError
from storage.names import hashed_stem
from storage.paging import ROWS_AT_A_TIME, release, scanning
from storage.vector_store import StoreBackend, VectorStore, default_nprobe

log = logging.getLogger(__name__)

FLAT_LIMIT = 10_000
COMPRESS_FROM = 2_000_000  # above today's 1M benchmark, where IVF,Flat stays (bench/scale_10m.py)
# PQ code bits a dimension: 2 at every width (128 B a 512-d vector, 384 B early's 1,536-d concatenation). Measured
# on ~800k clustered 512-d vectors re-scored from 300 candidates (docs/benchmarks/notes/shortlist_recall.md):
# recall@10 0.94 with PQ256x4fs (2 bits), 0.71 with PQ128x4fs (1 bit). Early's 1,536-d index at 10M (agreeing
# fields, docs/benchmarks/notes/scale_10m.md, eleventh session; old and new alternating in one process): 1 bit
# (PQ384x4fs, 2.1 GB) found 0.97 of its exact top 10 from 2,976 rows at 56 / 27 ms p50 (first / second pass),
# 2 bits (PQ768x4fs, 4.0 GB) 0.992 from 992 rows at 19 / 14 ms: twice the codes in memory for a third of the
# rows read a query. (At 1M both found 0.77 from 1,000 candidates: the lists visited bound it there.)
CODE_BITS = 2
MAX_COMPRESSED_NLIST = 2048
GPU_MAX_K = 2048  # FAISS on a GPU selects at most this many results (GPU_MAX_SELECTION_K); more raise
READ_BLOCK = 1 << 24  # bytes of an index file read at a time when it is loaded (`read_index`)
# A search of one query runs on one FAISS thread. FAISS splits a single query's inverted lists over its
# OpenMP pool, whose threads then spin against torch's (the encoders' pool, a second OpenMP runtime) on the
# same cores. Measured on 2 cores (docs/benchmarks/notes/scale_10m.md): one IVF2048,PQ256x4fs search of 800k
# vectors, 1.15 ms on two threads or one in a bare process, 3.4 -> 1.2 ms with torch working between
# searches; at 1M items late's p50 19.7 -> 7.1 ms, early's 8.0 -> 5.0 ms. Batches keep every thread: FAISS
# gives each thread its own queries.


class Rows(Protocol):
    """What an index is built from: a float array, a float16 memory map, or rows made on demand
    (a concatenation of fields); only `shape`, slices and sorted integer arrays of rows are used."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray: ...


def row_chunks(ids: np.ndarray, vectors: Rows) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, float32 rows) ROWS_AT_A_TIME rows at a time, how every backend adds a collection: the float32 copy
    of 10M 512-d rows (20 GB) never exists at once. A memory-mapped table is read ahead as it goes."""
    for start in range(0, len(ids), ROWS_AT_A_TIME):
        with scanning(vectors[start : start + ROWS_AT_A_TIME]) as chunk:
            rows = np.ascontiguousarray(chunk, np.float32)
        yield ids[start : start + ROWS_AT_A_TIME], rows


@contextmanager
def one_thread() -> Iterator[None]:
    """FAISS's OpenMP pool at one thread for the calling thread (the setting is per thread), then restored."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def default_factory(count: int, dim: int | None = None) -> str:
    """Exact search below 10k vectors, an inverted file above: at 10k an IVF512 keeps recall@10 at 1.0
    and answers ~9x faster than Flat (bench/index_choice.py). HNSW is faster still but cannot remove ids.

    From COMPRESS_FROM vectors on, the lists hold 4-bit fast-scan PQ codes of CODE_BITS a dimension
    (`pq_code_bytes`) instead of float32 vectors: a candidate index only, whose shortlist every
    strategy re-scores exactly from the memory-mapped tables (`VectorStore.shortlist`). Its coarse
    quantizer stops at MAX_COMPRESSED_NLIST lists: adding 10M vectors costs count x nlist x dim
    multiply-adds, ~6 minutes per 512-d field at 1,024 lists on this 2-core machine."""
    if count < FLAT_LIMIT:
        return "Flat"
    nlist = int(2 ** round(math.log2(4 * math.sqrt(count))))
    if count < COMPRESS_FROM or dim is None:
        return f"IVF{nlist},Flat"
    # 4-bit codes, two a byte; PQ splits the vector into `codes` equal parts, so they must divide `dim`
    codes = next((m for m in range(2 * pq_code_bytes(dim), 0, -1) if dim % m == 0), 0)
    # under half a bit a dimension (a dimension with no fitting divisor, e.g. a prime): whole vectors
    if not codes or codes < dim // 8:
        return f"IVF{nlist},Flat"
    return f"IVF{min(nlist, MAX_COMPRESSED_NLIST)},PQ{codes}x4fs"


def pq_code_bytes(dim: int) -> int:
    """Bytes of PQ code a compressed index keeps per vector: CODE_BITS a dimension."""
    return dim * CODE_BITS // 8


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
        self.index: faiss.Index = base if holds_ids(base) else faiss.IndexIDMap2(base)
        self._on_gpu = False
        # an IndexIDMap2 around an inverted file (files written before `holds_ids`): a removal compacts the
        # wrapper's ids but not the lists' row numbers, so every later answer past it named a wrong item
        self._renumbers_on_removal = False

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(
        cls, ids: np.ndarray, vectors: Rows, factory: str | None = None, header: dict[str, Any] | None = None
    ) -> FaissStore:
        """Train on a sample, then add a chunk at a time (`row_chunks`)."""
        ids = np.asarray(ids, np.int64)
        dim = int(vectors.shape[1])
        store = cls(dim, factory or default_factory(len(ids), dim), header)
        store.train(vectors)
        for chunk_ids, rows in row_chunks(ids, vectors):
            store.add(chunk_ids, rows)
        store.set_nprobe()
        return store

    def set_nprobe(self, nprobe: int | None = None) -> None:
        """Inverted files search `default_nprobe` of their lists unless told otherwise; at most all."""
        try:
            ivf = faiss.extract_index_ivf(self.index)
        except RuntimeError:
            return
        count = 0 if self.exact_scores else int(ivf.ntotal)  # exact lists: no re-scoring to make up for fewer
        ivf.nprobe = min(ivf.nlist, nprobe or default_nprobe(ivf.nlist, count))

    def train(self, vectors: Rows) -> None:
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
        limit = 64 * ivf.nlist if ivf is not None else ROWS_AT_A_TIME
        count = int(vectors.shape[0])
        if count > limit:  # sorted rows: a memory-mapped table is read front to back
            vectors = vectors[np.sort(np.random.default_rng(0).choice(count, limit, replace=False))]
        self.index.train(np.ascontiguousarray(vectors[:], np.float32))

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, np.float32)
        self.check_dim(vectors)
        if len(ids):
            self.index.add_with_ids(vectors, np.ascontiguousarray(ids, np.int64))

    def remove(self, ids: np.ndarray) -> int:
        if self._renumbers_on_removal:
            raise CorruptArtifactError(
                f"index {self.factory!r} was written by an earlier version, whose removals renumber its ids "
                "(FAISS's IndexIDMap2 around an inverted file); rebuild it from the vector tables: "
                "python -m indexer check --repair --db URL --collection NAME"
            )
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, np.int64))
        return int(self.index.remove_ids(selector))

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """Every item id in the index (a copy), list by list for an inverted file."""
        cpu: Any = faiss.index_gpu_to_cpu(self.index) if self._on_gpu else self.index
        if not holds_ids(cpu):
            return faiss.vector_to_array(cpu.id_map).copy()
        lists: Any = faiss.extract_index_ivf(cpu).invlists
        sizes = [lists.list_size(n) for n in range(lists.nlist)]
        views = [faiss.rev_swig_ptr(lists.get_ids(n), size) for n, size in enumerate(sizes) if size]
        return np.concatenate(views) if views else np.zeros(0, np.int64)  # one copy of the lists' ids

    # -- searching ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids, best first; -1 ids pad when fewer than `k` vectors exist."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        self.check_dim(queries)
        k = max(1, min(k, len(self))) if len(self) else 1
        if len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if len(queries) > 1 or self._on_gpu:
            return self.index.search(queries, k)
        with one_thread():
            return self.index.search(queries, k)

    def shortlist(self, n: int) -> int:
        """As for every store, but at most GPU_MAX_K on a GPU, FAISS's largest k there."""
        wanted = super().shortlist(n)
        return min(wanted, GPU_MAX_K) if self._on_gpu else wanted

    def to_gpu(self) -> bool:
        """Move to GPU 0 when FAISS has one; returns whether it did. An index FAISS cannot move stays on the
        CPU with a warning: fast-scan PQ codes, every compressed index from COMPRESS_FROM vectors, have no
        GPU form ("clone not supported for this type of IndexIVF", faiss issue 2361)."""
        if self._on_gpu or gpu_count() == 0:
            return self._on_gpu
        resources = faiss.StandardGpuResources()
        try:
            moved = faiss.index_cpu_to_gpu(resources, 0, self.index)
        except RuntimeError as exc:
            log.warning("index %s stays on the CPU: FAISS cannot move it to the GPU (%s)", self.factory, exc)
            return False
        self.index = moved
        self._gpu_resources = resources
        self._on_gpu = True
        return True

    # -- files ----------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        cpu = faiss.index_gpu_to_cpu(self.index) if self._on_gpu else self.index
        blob = faiss.serialize_index(cpu)  # one copy of the index; written as it is, not copied again
        header = {**self.header, "dim": self.dim, "factory": self.factory, "count": len(self)}
        write_streamed(Path(path), {"faiss": (np.dtype(np.uint8), blob.shape)}, [("faiss", blob)], header)

    @classmethod
    def load(cls, path: Path, *, expect: dict[str, Any] | None = None) -> FaissStore:
        """Read an index; every key of `expect` (e.g. encoders, dim) must match its header."""
        arrays, header = map_arrays(Path(path))  # checks the layout; the index is then read from this map
        for key, wanted in (expect or {}).items():
            if header.get(key) != wanted:
                raise EncoderMismatchError(
                    f"index {path} was built with {key}={header.get(key)!r}, but {wanted!r} is in use; "
                    "rebuild it from the vector tables: python -m indexer check --repair --db URL --collection NAME"
                )
        store = cls.__new__(cls)
        store.dim, store.factory, store.header = int(header["dim"]), str(header["factory"]), header
        store.index = read_index(Path(path), arrays["faiss"])
        store._on_gpu = False
        store._renumbers_on_removal = isinstance(store.index, faiss.IndexIDMap2) and holds_ids(store.index.index)
        store.set_nprobe()
        return store


def read_index(path: Path, blob: np.ndarray) -> faiss.Index:
    """The index serialised in `blob`, a memory map of `path`, read READ_BLOCK bytes at a time straight into
    FAISS's structures, each block's pages dropped from the process once copied (`paging.release`).
    `faiss.deserialize_index` first copied the whole blob into a buffer of its own, so loading an index held
    it three times at once (its file pages, the buffer, the index): early's 4.0 GB index at 10M peaked at
    12.4 GB of a process's resident memory, read this way 5.2 GB. Reading the map, not the file reopened by
    name, keeps the file whose header was checked even if another process replaces it meanwhile."""
    if not isinstance(blob, np.memmap) or not blob.nbytes:
        raise CorruptArtifactError(f"{path}: holds no index; delete it and re-run the indexer")
    position = 0

    def read(size: int) -> bytes:
        nonlocal position
        block = blob[position : position + size]
        data = block.tobytes()
        release(block)
        position += len(data)
        return data

    try:
        return faiss.read_index(faiss.PyCallbackIOReader(read, READ_BLOCK))  # type: ignore[attr-defined]
    except RuntimeError as exc:  # FAISS's reader found bytes it cannot parse: the file is damaged
        raise CorruptArtifactError(f"{path}: not a readable index ({exc}); delete it and re-run the indexer") from exc


def holds_ids(index: faiss.Index) -> bool:
    """Whether `index` is itself an inverted file, whose lists hold each vector's id next to its code.
    Wrapped in an `IndexIDMap2`, its lists held row numbers and the wrapper kept the ids twice more (an
    array and a hash map from id to row, which nothing here reads): a loaded index of 4M 16-byte codes held
    24.8 bytes a vector, 76.6 in the wrapper (bench/id_map_memory.py), ~1.7 GB of a hybrid search process at
    10M items (34M vectors in four indexes).
    An index written inside the wrapper by earlier versions keeps it until it is rebuilt: handing FAISS's
    inner index out of its wrapper from Python (SWIG ownership flags) corrupted the type table here."""
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexPreTransform):  # a rotation or PCA before the lists adds ids through
        index = faiss.downcast_index(index.index)
    return isinstance(index, faiss.IndexIVF)  # not a refine step (`,RFlat`), whose outer index takes no ids


class FaissBackend(StoreBackend):
    """Index files under one folder, named after the store and its generation; a file is written atomically."""

    spec = "faiss"

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = Path(index_dir)

    def path_for(self, name: str, generation: int) -> Path:
        return self.index_dir / f"{hashed_stem(name)}.g{generation}.faiss.safetensors"

    def create(
        self,
        name: str,
        generation: int,
        ids: np.ndarray,
        vectors: Rows,
        factory: str | None,
        header: dict[str, Any],
    ) -> tuple[FaissStore, str | None]:
        store = FaissStore.build(ids, vectors, factory, header)
        path = self.path_for(name, generation)
        try:
            store.save(path)
        except OSError:
            return store, None  # read-only location: the index lives in memory for this process
        return store, str(path)

    def release(self, location: str) -> None:
        Path(location).unlink(missing_ok=True)  # the process that built it holds its index in memory

    def drop_older(self, name: str, generation: int) -> None:
        stem = hashed_stem(name)
        legacy = self.index_dir / f"{stem}.faiss.safetensors"  # named without a generation by earlier versions
        for path in [legacy, *self.index_dir.glob(f"{glob.escape(stem)}.g*.faiss.safetensors")]:
            built_at = path.name[len(stem) + 2 :].split(".", 1)[0]
            if path == legacy or (built_at.isdigit() and int(built_at) < generation):
                path.unlink(missing_ok=True)

    def open(self, location: str, expect: dict[str, Any]) -> FaissStore | None:
        if not Path(location).exists():
            return None
        try:
            return FaissStore.load(Path(location), expect=expect)
        except CorruptArtifactError as exc:
            log.warning("rebuilding %s: %s", location, exc)
            return None
