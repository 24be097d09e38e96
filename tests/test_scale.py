"""Scale: memory-mapped tables, chunked writes, compressed indexes re-scored exactly, stored fused vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from retrieval.fusion import create_strategy
from retrieval.fusion.base import weighted_channel_scores
from retrieval.fusion.learned import LearnedFusion
from retrieval.profiles import Field
from retrieval.space import EncodedQuery, VectorSpace
from storage import FaissStore, VectorStorage, VectorTable
from storage.artifacts import map_arrays
from storage.errors import CorruptArtifactError
from storage.faiss_store import FaissBackend
from storage.paging import scanning

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [Field("image", "enc-a"), Field("audio", "enc-b"), Field("text", "enc-c")]


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim))
    return unit(centres[rng.integers(0, 20, n)] + 0.5 * rng.normal(size=(n, dim)))


def make_space(root: Path, n: int = 3000, dim: int = 32, factory: str | None = None) -> VectorSpace:
    """n items, three fields; every field misses a different fifth of the items."""
    storage = VectorStorage(root)
    for i, f in enumerate(FIELDS):
        keep = (np.arange(n) % 5) != i
        table = storage.load(f.key, dim=dim, encoder=f.encoder)
        table.upsert(np.arange(1, n + 1)[keep], clustered(int(keep.sum()), dim, seed=i))
        storage.save(f.key, table)
    return VectorSpace(FIELDS, storage, generation=1, factory=factory)


def near(space: VectorSpace, item: int, seed: int) -> EncodedQuery:
    """A query of all three modalities near one item's vectors."""
    rng = np.random.default_rng(seed)
    vectors = {}
    for f in FIELDS:
        base, present = space.tables[f.key].lookup(np.array([item]))
        vector = base[0] if present[0] else rng.normal(size=base.shape[1])
        vectors[(f.modality, f.encoder)] = unit(vector + 0.3 * rng.normal(size=base.shape[1]))
    return EncodedQuery(vectors)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


# -- memory-mapped tables ----------------------------------------------------------------------------


def test_a_stored_table_is_memory_mapped_and_answers_like_a_loaded_one(tmp_path: Path) -> None:
    storage = VectorStorage(tmp_path)
    table = storage.load("image@enc-a", dim=32, encoder="enc-a")
    table.upsert(np.arange(0, 2000, 2), clustered(1000, 32, seed=0))
    storage.save("image@enc-a", table)
    mapped = storage.load("image@enc-a", dim=32, encoder="enc-a")
    loaded = load_file(str(storage.path_for("image@enc-a")))
    whole = VectorTable(dim=32, ids=loaded["ids"], vectors=loaded["vectors"])
    assert isinstance(mapped.vectors, np.memmap) and isinstance(mapped.ids, np.memmap)
    ids = np.array([0, 1, 2, 998, 1998, 5000, -3])
    query = clustered(1, 32, seed=9)[0]
    assert np.array_equal(mapped.similarities(ids, query)[1], [True, False, True, True, True, False, False])
    assert np.array_equal(mapped.similarities(ids, query)[0], whole.similarities(ids, query)[0])
    assert np.array_equal(mapped.lookup(ids)[0], whole.lookup(ids)[0])
    assert 998 in mapped and 999 not in mapped


def test_searches_over_mapped_tables_rank_like_tables_held_in_memory(tmp_path: Path) -> None:
    space = make_space(tmp_path / "v", n=600)
    held = VectorSpace(FIELDS, space.storage, generation=1)
    for key, table in held.tables.items():  # the same tables, read whole into memory
        held.tables[key] = VectorTable(table.dim, dict(table.header), np.array(table.ids), np.array(table.vectors))
    assert not isinstance(held.tables["image@enc-a"].vectors, np.memmap)
    for name in ("late", "early", "hybrid"):
        for seed in range(3):
            query = near(space, 17 + seed, seed)
            mapped = [(r.item_id, round(r.score, 5)) for r in create_strategy(name).search(space, query, 10)]
            loaded = [(r.item_id, round(r.score, 5)) for r in create_strategy(name).search(held, query, 10)]
            assert mapped == loaded and len(mapped) == 10


def written_long_ago(root: Path, n: int, dim: int) -> VectorStorage:
    """A table of n rows of ones ("image@enc-a", n x dim float16) whose pages are out of the page cache, as
    a table written long ago."""
    storage = VectorStorage(root)
    storage.write("image@enc-a", np.arange(n), dim, (np.ones((n // 8, dim), np.float32) for _ in range(8)), {})
    descriptor = os.open(storage.path_for("image@enc-a"), os.O_RDONLY)
    os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(descriptor)
    return storage


def test_opening_a_table_reads_none_of_it_and_memory_grows_with_the_rows_touched(tmp_path: Path) -> None:
    n, dim = 80_000, 512
    VectorTable(dim, ids=np.arange(2), vectors=np.ones((2, dim), np.float16)).similarities(np.arange(2), np.ones(dim))
    # As a table written earlier: pages just written sit in the page cache in large folios, and a fault
    # maps a whole folio (measured: 80 rows mapped 72 MB); read from disk, a row maps ~64 KB around it.
    storage = written_long_ago(tmp_path, n, dim)
    before = rss_kib()  # after torch's import (the first similarity loads it)
    table = storage.load("image@enc-a", dim=dim, encoder=None)
    opened = rss_kib()
    table.similarities(np.arange(0, n, 1000), np.ones(dim, np.float32))  # 80 rows: a few pages
    touched = rss_kib()
    total = float(table.vectors.sum(dtype=np.float32))  # every row
    everything = rss_kib()
    assert total == n * dim
    assert opened - before < 8_000, "opening mapped the file without reading it"
    assert touched - opened < 20_000, "80 rows touch ~64 KB each, not the 80 MB file"
    assert everything - touched > 60_000, "reading every row brings the file in"


def read_from_disk() -> int:
    """Bytes this process has had read from storage (page-cache misses), from /proc/self/io."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["read_bytes"])


def vm_flags(array: np.ndarray) -> set[str]:
    """The kernel's flags on the mapping that holds `array`'s first byte (``rr``: read page by page)."""
    address, inside = array.ctypes.data, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            low, high = (int(part, 16) for part in head.split("-"))
            inside = low <= address < high
        elif inside and head == "VmFlags:":
            return set(line.split()[1:])
    raise AssertionError("no mapping holds the array")


def test_a_search_reads_only_the_pages_of_its_rows_and_a_scan_reads_ahead(tmp_path: Path) -> None:
    """The kernel's read-around (8 MB a fault on this machine's disk) made each re-scored 1 KB row cost
    megabytes once the tables outgrew memory (storage/paging.py); a scan still wants it."""
    n, dim = 80_000, 512
    storage = written_long_ago(tmp_path, n, dim)
    table = storage.load("image@enc-a", dim=dim, encoder=None)
    assert "rr" in vm_flags(table.vectors)
    assert int(table.ids.sum()) == n * (n - 1) // 2  # the ids (640 KB, the kernel's default read-around)
    before = read_from_disk()
    scores, present = table.similarities(np.arange(0, n, 1000), np.ones(dim, np.float32))  # 80 scattered rows
    assert present.all() and np.allclose(scores, dim)
    assert read_from_disk() - before < 2**20, "80 rows read a 4 KB page each, not megabytes around each"
    with scanning(table.vectors[1000:3000]) as block:
        assert "rr" not in vm_flags(block) and "rr" in vm_flags(table.vectors[5000:])
    assert "rr" in vm_flags(table.vectors[1000:3000])
    assert table.as_float32().sum() == n * dim and "rr" in vm_flags(table.vectors)


# -- crash safety of streamed writes --------------------------------------------------------------------


def test_a_crash_while_writing_a_table_leaves_the_previous_table_readable(tmp_path: Path) -> None:
    storage = VectorStorage(tmp_path)
    old = clustered(500, 16, seed=1)
    storage.write("text@enc-c", np.arange(500), 16, [old[:250], old[250:]], {"encoder": "enc-c"})
    reader = storage.load("text@enc-c", dim=16)  # a search process holding the old table's map
    script = textwrap.dedent(
        f"""
        import os, sys
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from storage import VectorStorage

        def chunks():
            yield np.zeros((300, 16), np.float32)
            os._exit(3)  # killed midway: no exception handler, no clean-up runs

        VectorStorage({str(tmp_path)!r}).write("text@enc-c", np.arange(1000), 16, chunks(), {{}})
        """
    )
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert crashed.returncode == 3, crashed.stderr
    after = storage.load("text@enc-c", dim=16, encoder="enc-c")
    assert len(after) == 500 and np.array_equal(after.vectors, old.astype(np.float16))
    assert np.array_equal(reader.vectors, old.astype(np.float16))


def test_a_finished_write_replaces_the_table_without_disturbing_a_reader_of_the_old_one(tmp_path: Path) -> None:
    storage = VectorStorage(tmp_path)
    old, new = clustered(200, 8, seed=1), clustered(300, 8, seed=2)
    storage.write("image@enc-a", np.arange(200), 8, [old], {})
    reader = storage.load("image@enc-a")
    storage.write("image@enc-a", np.arange(300), 8, [new[:100], new[100:]], {})
    assert np.array_equal(reader.vectors, old.astype(np.float16)) and len(reader) == 200
    assert np.array_equal(storage.load("image@enc-a").vectors, new.astype(np.float16))
    assert list(tmp_path.glob(".*.tmp")) == []


@pytest.mark.parametrize("chunks", [[np.zeros((5, 8))], [np.zeros((10, 8)), np.zeros((1, 8))]])
def test_a_write_with_too_few_or_too_many_rows_is_refused_and_keeps_the_old_table(
    tmp_path: Path, chunks: list[np.ndarray]
) -> None:
    storage = VectorStorage(tmp_path)
    storage.write("image@enc-a", np.arange(3), 8, [np.ones((3, 8))], {})
    with pytest.raises(ValueError, match=r"image_enc-a-\w+\.vectors\.safetensors: (a chunk|the chunks)"):
        storage.write("image@enc-a", np.arange(10), 8, chunks, {})
    assert len(storage.load("image@enc-a")) == 3 and list(tmp_path.glob(".*.tmp")) == []


def test_unsorted_ids_are_refused_by_a_streamed_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sorted and unique"):
        VectorStorage(tmp_path).write("image@enc-a", np.array([3, 1, 2]), 4, [np.ones((3, 4))], {})


# -- building and compressed indexes ----------------------------------------------------------------------


def test_an_index_built_a_chunk_at_a_time_from_float16_rows_equals_one_built_from_float32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.faiss_store as faiss_store

    data = clustered(1000, 16, seed=3).astype(np.float16)
    whole = FaissStore.build(np.arange(1000), data.astype(np.float32), "Flat")
    monkeypatch.setattr(faiss_store, "ROWS_AT_A_TIME", 64)
    chunked = FaissStore.build(np.arange(1000), data, "Flat")
    queries = clustered(5, 16, seed=4)
    assert np.array_equal(whole.search(queries, 10)[1], chunked.search(queries, 10)[1])


def test_a_single_query_searches_on_one_faiss_thread_and_answers_like_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One query: FAISS's pool at one thread during the search (it spun against torch's), restored after,
    even when the search fails; a batch keeps every thread. The answers are the batch's, row for row."""
    import faiss

    store = FaissStore.build(np.arange(2000), clustered(2000, 16, seed=5), "IVF16,PQ4x4fs")
    queries = clustered(4, 16, seed=6)
    batch = store.search(queries, 10)
    before = faiss.omp_get_max_threads()
    for n, query in enumerate(queries):
        scores, ids = store.search(query, 10)
        assert np.array_equal(ids[0], batch[1][n]) and np.allclose(scores[0], batch[0][n])
    assert faiss.omp_get_max_threads() == before

    seen: list[int] = []
    real = store.index.search

    def recording(*args):
        seen.append(faiss.omp_get_max_threads())
        return real(*args)

    monkeypatch.setattr(store.index, "search", recording, raising=False)
    store.search(queries[0], 10)
    store.search(queries, 10)
    assert seen == [1, before]

    def failing(*args):
        raise RuntimeError("search failed")

    monkeypatch.setattr(store.index, "search", failing, raising=False)
    with pytest.raises(RuntimeError):
        store.search(queries[0], 10)
    assert faiss.omp_get_max_threads() == before


@pytest.mark.parametrize("name", ["late", "early", "hybrid"])
def test_a_compressed_index_plus_rescoring_returns_exact_scores(tmp_path: Path, name: str) -> None:
    """PQ codes give approximate scores; every strategy's scores must still be Σ share × weight × cosine."""
    # the fast-scan PQ the product builds above its threshold; 512-d, so that the shortlist is 300 of 3,000
    # items as in production (a narrower index re-scores more rows: `VectorStore.shortlist`)
    space = make_space(tmp_path / "pq", dim=512, factory="IVF16,PQ64x4fs")
    exact = make_space(tmp_path / "flat", dim=512, factory="Flat")
    # raw Σ cosine, unscreened, since at 512-d the random vector `near` gives a missing field is flat
    params = {"standardise": False} if name == "early" else {"normalisation": "none", "weighting": "fixed"}
    params["screen"] = False
    if name == "hybrid":
        params["standardise"] = False  # raw Σ cosine inside its group
    strategy = create_strategy(name, **params)
    strategy.prepare(space)
    assert not space.loaded_indexes[next(iter(space.loaded_indexes))].exact_scores
    agree = 0
    for seed in range(5):
        query = near(space, 100 + 37 * seed, seed)
        found = strategy.search(space, query, 10)
        truth = create_strategy(name, **params).search(exact, query, 10)
        ids = np.array([r.item_id for r in found])
        total = weighted_channel_scores(space, query, ids)[0]
        assert np.allclose([r.score for r in found], total, atol=1e-5)  # exact, not the codes' estimate
        assert [r.score for r in found] == sorted((r.score for r in found), reverse=True)
        agree += len({r.item_id for r in found} & {r.item_id for r in truth})
    assert agree >= 0.8 * 50  # the shortlist finds (nearly) the exact top 10


def test_learned_fused_vectors_are_stored_once_and_reused_by_a_new_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval.train import TrainConfig, train

    space = make_space(tmp_path / "v", n=400, dim=16)
    config = TrainConfig("gated", epochs=1, out_dim=8, hidden=16, width=8)
    checkpoint = str(train(space, space.item_ids()[:200], None, config, tmp_path / "g.safetensors").path)
    first = create_strategy("gated", checkpoint=checkpoint)
    query = near(space, 5, 0)
    before = first.search(space, query, 10)
    stored = list((tmp_path / "v").glob("derived*"))
    assert len(stored) == 1

    def refuse(*_args, **_kwargs) -> np.ndarray:
        raise AssertionError("a new process re-fused every item")

    monkeypatch.setattr(LearnedFusion, "_compute", refuse)
    fresh = VectorSpace(FIELDS, VectorStorage(tmp_path / "v"), generation=1)  # as a new search process
    after = create_strategy("gated", checkpoint=checkpoint).search(fresh, query, 10)
    assert [(r.item_id, r.score) for r in after] == [(r.item_id, r.score) for r in before]
    newer = VectorSpace(FIELDS, VectorStorage(tmp_path / "v"), generation=2)  # vectors changed since
    with pytest.raises(AssertionError, match="re-fused"):
        create_strategy("gated", checkpoint=checkpoint).search(newer, query, 10)


@pytest.mark.slow
def test_loading_an_index_holds_it_once_and_a_damaged_one_is_rebuilt(tmp_path: Path) -> None:
    """A search process loads its indexes: read from the file a block at a time, the peak is the index and a
    block, not the file's pages, a copy of them and the index (~3x the file with `faiss.deserialize_index`)."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("this kernel or sandbox does not let a process reset its peak resident memory")
    x = clustered(80_000, 512, 0)  # 160 MB of float32 lists
    built = FaissStore.build(np.arange(len(x)), x, "IVF64,Flat")
    path = tmp_path / "i.faiss.safetensors"
    built.save(path)
    size_kib = path.stat().st_size // 1024
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from pathlib import Path
        from storage import FaissStore

        def status():
            lines = Path("/proc/self/status").read_text().splitlines()
            return {{k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in lines) if k.startswith("Vm")}}

        Path("/proc/self/clear_refs").write_text("5")  # peak resident memory from here on
        before = status()["VmRSS"]
        store = FaissStore.load(Path({str(path)!r}))
        x = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
        print(json.dumps({{"peak": status()["VmHWM"] - before, "ids": store.search(x, 5)[1].tolist()}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    queries = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    assert loaded["ids"] == built.search(queries, 5)[1].tolist()
    assert loaded["peak"] < 1.5 * size_kib, (loaded["peak"], size_kib)

    offset = map_arrays(path)[0]["faiss"].offset
    with path.open("r+b") as file:  # the file's layout intact, the index's own header damaged
        file.seek(offset)
        file.write(b"\xff" * 64)
    with pytest.raises(CorruptArtifactError, match="not a readable index"):
        FaissStore.load(path)
    assert FaissBackend(tmp_path).open(str(path), {}) is None  # rebuilt by the caller, with a warning


def test_a_compressed_index_re_scores_a_shortlist_of_about_the_same_bytes_whatever_its_width() -> None:
    """Re-scoring reads float16 rows: a 128-d index (a learned strategy's fused vectors) re-scores four times
    the rows of a 512-d field's, a 1536-d one (early's) no fewer, a tiny one at most 3,000; exact: none extra."""
    assert FaissStore(512, "IVF16,PQ64x4fs").shortlist(10) == 300
    assert FaissStore(512, "IVF16,PQ64x4fs").shortlist(200) == 600  # three times what is wanted, if more
    assert FaissStore(128, "IVF16,PQ32x4fs").shortlist(10) == 1200
    assert FaissStore(1536, "IVF16,PQ96x4fs").shortlist(10) == 300
    assert FaissStore(16, "IVF16,PQ4x4fs").shortlist(10) == 3000
    assert FaissStore(128, "IVF16,Flat").shortlist(10) == 10


def test_search_depth_grows_with_the_collection_and_stays_as_it_was_up_to_a_million() -> None:
    """The rules at scale (docs/benchmarks/notes/scale_10m.md): a shortlist of codes under 2 bits a dimension is 300
    rows of 512-d up to 1M vectors and 3,000 from 10M, of 2-bit codes 300 up to 3M and 1,000 at 10M, of finer
    codes (Milvus's 8-bit PQ) 300 at any size, without counting the index; a compressed inverted file searches
    a sixteenth of its lists up to ~1M vectors, then no more lists than hold SCAN_VECTORS (16 of 2,048 at 8M);
    without a count, a sixteenth."""
    from storage.vector_store import default_nprobe

    class Sized(FaissStore):
        count = 0

        def __len__(self) -> int:
            return self.count

    store = Sized(512, "IVF16,PQ64x4fs")
    for count, rows in ((3000, 300), (1_000_000, 300), (2_000_000, 600), (10_000_000, 3000), (10**9, 3000)):
        store.count = count
        assert store.shortlist(10) == rows, count
    store.rescore_bytes = 300 * 1024  # a budget set by hand holds whatever the index's size
    assert store.shortlist(10) == 300
    finer = Sized(1536, "IVF16,PQ768x4fs")  # 2 bits a dimension, the default codes (early's concatenation)
    for count, rows in ((1_000_000, 300), (3_000_000, 300), (5_000_000, 500), (10_000_000, 1000)):
        finer.count = count
        assert finer.shortlist(10) == rows, count
    assert finer.code_bits() == 2 and store.code_bits() == 0.5

    class Uncounted(Sized):  # a store whose len() is a round trip (Milvus counts its collection)
        def __len__(self) -> int:
            raise AssertionError("counted")

    eight_bit = Uncounted(512, "IVF16,PQ256")  # 8-bit codes, 4 bits a dimension: no share, no count
    assert eight_bit.code_bits() == 4 and eight_bit.shortlist(10) == 300
    remote = Uncounted(1536, "IVF16,PQ384")  # 2 bits (a Milvus collection built before): never counted
    remote.counts_locally = False
    assert remote.shortlist(10) == 300
    from storage.milvus_store import MilvusStore

    assert MilvusStore.counts_locally is False
    assert FaissStore(512, "IVF16,Flat").code_bits() is None
    assert [default_nprobe(2048, 800_000), default_nprobe(4096, 800_000), default_nprobe(2048, 990_000)] == [
        128,
        256,
        128,
    ]  # 1M items, each field 800k: compressed (2,048 lists), IVF,Flat (4,096) and early's whole items
    assert [default_nprobe(2048, 1_600_000), default_nprobe(2048, 8_000_000), default_nprobe(64, 10**9)] == [83, 16, 16]
    assert default_nprobe(2048) == 128 and default_nprobe(8) == 8


def test_a_compressed_inverted_file_caps_its_lists_by_what_they_hold_when_built_and_when_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faiss

    import storage.vector_store as vector_store

    def nprobe(store: FaissStore) -> int:
        return int(faiss.extract_index_ivf(store.index).nprobe)

    make_space(tmp_path / "v", n=3000, dim=16)

    def index(factory: str, **settings: int) -> FaissStore:
        space = VectorSpace(FIELDS, VectorStorage(tmp_path / "v"), 1, factory=factory, **settings)
        return space.field_index(FIELDS[0])  # type: ignore[return-value]

    assert nprobe(index("IVF1024,PQ2x4fs")) == 64  # a sixteenth
    monkeypatch.setattr(vector_store, "SCAN_VECTORS", 75)  # 2,400 vectors: 1,024 lists of ~2.3, 32 lists hold 75
    compressed = index("IVF1024,PQ2x4fs")
    assert nprobe(compressed) == 32
    compressed.save(tmp_path / "pq.faiss")
    assert nprobe(FaissStore.load(tmp_path / "pq.faiss")) == 32  # opened by a new search process
    assert nprobe(index("IVF1024,Flat")) == 64  # exact lists: nothing re-scores after them, so a sixteenth
    assert nprobe(index("IVF1024,PQ2x4fs", nprobe=100)) == 100  # a setting overrides the default


def test_code_bits_read_the_codes_not_a_rotation_and_a_gpu_shortlist_stays_within_faiss_k() -> None:
    assert FaissStore(128, "OPQ32,IVF64,PQ32x4fs").code_bits() == 1.0  # OPQ32 is the rotation, PQ32x4 the codes
    assert FaissStore(512, "IVF16,PQ64").code_bits() == 1.0  # 8-bit codes by default
    assert FaissStore(64, "IVF16,RaBitQ").code_bits() == 1.0
    store = FaissStore(16, "IVF16,PQ4x4fs")
    store._on_gpu = True  # FAISS selects at most 2,048 on a GPU; the CPU shortlist of a 16-d index is 3,000
    assert store.shortlist(10) == 2048


@pytest.mark.slow
def test_a_unit_list_is_100_up_to_millions_of_items_and_then_one_per_25000(tmp_path: Path) -> None:
    """The real rule on real tables (4-d, exact indexes): 800k items a field (the 1M benchmark's) keep 100
    candidates a unit, as before; 3M give 120."""
    rng = np.random.default_rng(0)
    lengths = {}
    for n in (800_000, 3_000_000):
        storage = VectorStorage(tmp_path / str(n))
        table = storage.load(FIELDS[0].key, dim=4, encoder=FIELDS[0].encoder)
        table.upsert(np.arange(1, n + 1), unit(rng.normal(size=(n, 4))))
        storage.save(FIELDS[0].key, table)
        space = VectorSpace(FIELDS, storage, 1, factory="Flat")
        query = EncodedQuery({(FIELDS[0].modality, FIELDS[0].encoder): unit(rng.normal(size=4))})
        lengths[n] = len(create_strategy("late").candidates(space, query, 10))  # one unit: its own list
    assert lengths == {800_000: 100, 3_000_000: 120}


def test_late_fusion_lists_grow_with_the_collection_and_find_the_items_best_on_the_sum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Independent fields: an item best on the summed cosines is often outside every field's best 20 (as it
    is outside its best 100 among millions). One candidate a unit for every ITEMS_PER_CANDIDATE items (here
    patched so that 2,400 items give 300) finds them; the scores stay exact."""
    import retrieval.fusion.late as late_module

    space = make_space(tmp_path / "v")  # 3,000 items, exact (Flat) indexes
    ids = space.item_ids()
    late = create_strategy("late", normalisation="none", weighting="fixed", candidates=20)  # its score: Σ cosine
    queries = [near(space, item, seed=item) for item in range(1, 3000, 150)]
    truths = [ids[np.argsort(-weighted_channel_scores(space, q, ids)[0], kind="stable")[:10]] for q in queries]

    def recall() -> float:
        found = [[r.item_id for r in late.search(space, q, 10)] for q in queries]
        return float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truths)]))

    before, listed = recall(), len(late.candidates(space, queries[0], 10))
    monkeypatch.setattr(late_module, "ITEMS_PER_CANDIDATE", 8)
    assert len(late.candidates(space, queries[0], 10)) > listed
    after = recall()
    assert before < 0.95 <= after, (before, after)
    result = late.search(space, queries[0], 10)
    assert np.allclose(
        [r.score for r in result], weighted_channel_scores(space, queries[0], [r.item_id for r in result])[0]
    )


def test_a_compressed_learned_index_is_rescored_from_the_fused_table(tmp_path: Path) -> None:
    from retrieval.train import TrainConfig, train

    space = make_space(tmp_path / "v", n=3000, dim=16, factory="IVF16,PQ2x4fs")
    config = TrainConfig("gated", epochs=1, out_dim=8, hidden=16, width=8)
    checkpoint = str(train(space, space.item_ids()[:300], None, config, tmp_path / "g.safetensors").path)
    strategy = create_strategy("gated", checkpoint=checkpoint)
    query = near(space, 5, 0)
    found = strategy.search(space, query, 10)
    vector = strategy.fused_query(query)
    ids = np.array([r.item_id for r in found])
    assert np.allclose([r.score for r in found], strategy.item_vectors(space, ids) @ vector, atol=1e-5)
    index = strategy.fused_index(space)
    assert not index.exact_scores and index.shortlist(10) > 10
    shortlist = index.search(vector, index.shortlist(10))[1][0]
    exact = strategy.item_vectors(space, shortlist) @ vector
    assert ids.tolist() == shortlist[np.argsort(-exact, kind="stable")[:10]].tolist()  # the shortlist re-ranked


def test_a_search_asks_for_its_rows_pages_before_it_gathers_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows on disk are asked for first (MADV_WILLNEED, storage/paging.py), so their reads are in flight
    together: asking reads the rows' pages and nothing around them, and the gather that follows reads nothing
    more (bench/cold_prefetch.py: 96 -> 18 ms for 1,000 cold rows)."""
    from storage import paging
    from storage.paging import will_need

    n, dim = 80_000, 512
    storage = written_long_ago(tmp_path, n, dim)
    table = storage.load("image@enc-a", dim=dim, encoder=None)
    assert int(table.ids.sum()) == n * (n - 1) // 2  # the ids read first: the search looks them up
    rows = np.arange(0, n, 1000)  # 80 scattered rows
    before = read_from_disk()
    monkeypatch.setattr(paging, "ASK_FROM_BYTES", 1 << 30)  # a quarter of 4 GB, whatever this machine has
    will_need(table.vectors, rows)  # an 80 MB file: the page cache keeps it, asking would only cost
    assert read_from_disk() == before
    monkeypatch.setattr(paging, "ASK_FROM_BYTES", 0)  # as a file larger than a quarter of memory
    will_need(table.vectors, rows)
    asked = read_from_disk()
    scores, _ = table.similarities(rows, np.ones(dim, np.float32))
    assert np.allclose(scores, dim)
    # the rows' pages (those the ids' read-around of the file's first 16 MB did not bring in), nothing around
    assert 48 * 4096 <= asked - before < 2**20, "the rows' pages were asked for, not megabytes around them"
    assert read_from_disk() - asked < 64 * 1024, "the gather found its pages asked for already"
    will_need(np.ones((4, dim), np.float16), np.arange(2))  # an array in memory: nothing to ask for
    import storage.vectors

    asked_for: list[int] = []
    monkeypatch.setattr(storage.vectors, "will_need", lambda vectors, rows: asked_for.append(len(rows)))
    table.similarities(rows[::-1], np.ones(dim, np.float32))  # a re-scoring asks, however its rows are ordered
    table.similarities(np.arange(100, 300), np.ones(dim, np.float32))  # a scan's dense rows read ahead instead
    assert asked_for == [80]


def test_tables_are_asked_in_from_a_quarter_of_the_memory_a_control_group_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process in an 8 GB memory cgroup on a larger machine judges a table by its 8 GB: gated's 2.6 GB
    fused table at 10M was never asked in there (148 ms p50 with cold tables, scale_10m.md)."""
    from storage import paging

    sys_root, proc = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    (sys_root / "memory" / "jobs" / "search").mkdir(parents=True)
    (sys_root / "memory" / "jobs" / "search" / "memory.limit_in_bytes").write_text(f"{8 << 30}\n")
    proc.write_text("5:cpu,cpuacct:/jobs/search\n4:memory:/jobs/search\n")
    assert paging._cgroup_limit(proc, sys_root) == 8 << 30  # v1
    (sys_root / "api").mkdir()
    (sys_root / "api" / "memory.max").write_text("max\n")
    proc.write_text("garbled\n0::/api\n")
    assert paging._cgroup_limit(proc, sys_root) is None  # v2, unlimited (a line it cannot read is skipped)
    (sys_root / "api" / "memory.max").write_text(f"{2 << 30}\n")
    assert paging._cgroup_limit(proc, sys_root) == 2 << 30  # v2
    assert paging._cgroup_limit(tmp_path / "absent", sys_root) is None
    monkeypatch.setattr(paging, "_physical_memory", lambda: 24 << 30)
    monkeypatch.setattr(paging, "_cgroup_limit", lambda: 8 << 30)
    assert paging.memory_available() == 8 << 30
    monkeypatch.setattr(paging, "_cgroup_limit", lambda: 1 << 62)  # v1's "unlimited"
    assert paging.memory_available() == 24 << 30


def test_numpy_and_torch_casts_of_a_table_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Torch casts float16 rows where the process has loaded it, numpy elsewhere: the same numbers."""
    import types

    import torch  # loaded, so the first casts below are torch's

    import storage.vectors as vectors

    space = make_space(tmp_path / "v", n=2000, dim=32)
    table = space.tables[FIELDS[0].key]
    # present and absent ids, more rows than numpy's few-rows shortcut, scattered (not a scan's dense rows)
    ids = np.arange(0, 2100, 2)
    query = unit(np.random.default_rng(0).normal(size=32))
    products = []
    monkeypatch.setattr(torch, "mv", lambda *a: products.append(a) or torch.matmul(*a))
    with_torch = (table.lookup(ids), table.similarities(ids, query), table.as_float32())
    assert len(products) == 1  # the re-scoring's product ran in torch, beside its gather and cast
    assert with_torch[1][0].dtype == np.float32 and with_torch[0][0].dtype == np.float32
    monkeypatch.setattr(vectors, "sys", types.SimpleNamespace(modules={}))  # a process without torch
    without = (table.lookup(ids), table.similarities(ids, query), table.as_float32())
    assert np.array_equal(with_torch[0][0], without[0][0]) and np.array_equal(with_torch[0][1], without[0][1])
    assert np.allclose(with_torch[1][0], without[1][0], atol=1e-6) and (with_torch[1][1] == without[1][1]).all()
    assert np.array_equal(with_torch[2], without[2])


def test_a_larger_rescore_budget_re_scores_more_rows_and_finds_more_true_neighbours(tmp_path: Path) -> None:
    """`VectorSpace(rescore_bytes=…)` sets how many float16 rows a compressed index's shortlist re-scores
    (16-d rows are 32 bytes): a longer shortlist finds more of what late fusion finds on exact indexes, with
    exact scores."""
    make_space(tmp_path / "v", n=3000, dim=16)
    storage = VectorStorage(tmp_path / "v")
    exact_space = VectorSpace(FIELDS, storage, generation=1)  # 3,000 items: Flat, exact cosines
    late = create_strategy("late", normalisation="none", weighting="fixed", candidates=100)
    queries = [near(exact_space, item, seed=item) for item in range(1, 300, 15)]
    truths = [late.search(exact_space, query, 10) for query in queries]
    recalls = {}
    for budget in (300 * 32, 3000 * 32):  # 300 rows, or every row the visited lists hold (16 of 64)
        space = VectorSpace(FIELDS, storage, generation=1, factory="IVF64,PQ2x4fs", rescore_bytes=budget)
        assert space.field_index(FIELDS[0]).shortlist(10) == budget // 32
        found = [late.search(space, query, 10) for query in queries]
        recalls[budget] = np.mean(
            [len({r.item_id for r in t} & {r.item_id for r in f}) / 10 for t, f in zip(truths, found)]
        )
        exact_scores = [{r.item_id: r.score for r in t} for t in truths]
        shared = [(r.score, e[r.item_id]) for e, f in zip(exact_scores, found) for r in f if r.item_id in e]
        got, want = np.array(shared).T
        assert len(shared) and np.abs(got - want).max() < 1e-3, np.abs(got - want).max()  # exact, not the codes'
    assert recalls[300 * 32] < recalls[3000 * 32] == 1.0, recalls  # the lists' every row re-scored: late's answer


def test_nprobe_reaches_every_index_and_more_lists_find_more_true_neighbours(tmp_path: Path) -> None:
    """`VectorSpace(nprobe=…)` sets how many lists each inverted file visits (at most all of them); on a
    compressed early index, more lists find more of exact search's top 10 (the default visits a quarter here)."""
    import faiss

    make_space(tmp_path / "v", n=3000, dim=16)
    storage = VectorStorage(tmp_path / "v")
    exact_space = VectorSpace(FIELDS, storage, generation=1)  # 3,000 items: Flat, exact Σ cosine
    exact = create_strategy("late", normalisation="none", weighting="fixed", candidates=3000)
    queries = [near(exact_space, item, seed=item) for item in range(1, 300, 15)]
    truths = [{r.item_id for r in exact.search(exact_space, query, 10)} for query in queries]
    recalls = {}
    for nprobe in (None, 1, 64):
        space = VectorSpace(FIELDS, storage, generation=1, factory="IVF64,PQ8x4fs", nprobe=nprobe)
        early = create_strategy("early", screen=False, standardise=False)  # exact: raw Σ cosine
        early.prepare(space)
        (store,) = space.loaded_indexes.values()
        assert faiss.extract_index_ivf(store.index).nprobe == {None: 16, 1: 1, 64: 64}[nprobe]
        found = [{r.item_id for r in early.search(space, query, 10)} for query in queries]
        recalls[nprobe] = np.mean([len(t & f) / 10 for t, f in zip(truths, found)])
    assert recalls[1] < recalls[None] < recalls[64] and recalls[64] >= 0.95, recalls
    space = VectorSpace(FIELDS, storage, generation=1, factory="IVF64,Flat", nprobe=10**6)
    assert faiss.extract_index_ivf(space.field_index(FIELDS[0]).index).nprobe == 64  # at most every list
