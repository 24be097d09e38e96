"""One suite, every vector store backend: FAISS files (default) and Milvus (Lite, one file; and a server).

The same assertions run on each backend; the fusion test at the end checks that every strategy gives
the same results whichever backend holds the indexes.
"""

from __future__ import annotations

import re
from pathlib import Path

import faiss
import numpy as np
import pytest

from storage import (
    Collection,
    CorruptArtifactError,
    Database,
    EncoderMismatchError,
    IndexBuild,
    StorageError,
    open_backend,
)
from storage.catalog import IndexCatalog
from storage.faiss_store import FaissStore, holds_ids
from storage.milvus_store import MilvusBackend, check_server_version, milvus_index

BACKENDS = ["faiss", "milvus"]
MILVUS_KINDS = ("milvus-lite", "milvus-server")


@pytest.fixture(params=["faiss", *(pytest.param(kind, marks=pytest.mark.server) for kind in MILVUS_KINDS)])
def backend_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """faiss, and Milvus twice: Lite (a file) and a server (where RETRIEVAL_TEST_MILVUS names one)."""
    if request.param == "faiss":
        return "faiss"
    if request.param == "milvus-lite":
        return f"milvus:{tmp_path / 'milvus.db'}"
    return f"milvus:{request.getfixturevalue('milvus_server')}"


@pytest.fixture
def backend(backend_spec: str, tmp_path: Path):
    return open_backend(backend_spec, tmp_path / "indexes")


def unit_rows(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_add_search_remove(backend) -> None:
    ids, x = np.arange(1000, 1200), unit_rows(200, 16)
    store, location = backend.create("s-field-a", 1, ids, x, "Flat", {"encoders": ["e1"]})
    assert location is not None and len(store) == 200
    scores, found = store.search(x[:5], 3)
    assert found[:, 0].tolist() == ids[:5].tolist()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4)
    assert store.remove(ids[:10]) == 10 and store.remove(np.array([5, 6])) == 0
    assert len(store) == 190 and not set(ids[:10]) & set(store.ids().tolist())
    _, found = store.search(x[:10], 5)
    assert not set(ids[:10]) & set(found.ravel().tolist())
    store.add(np.array([7]), x[:1])
    assert store.search(x[:1], 1)[1][0, 0] == 7


@pytest.mark.parametrize("factory", ["IVF4,Flat", "IVF4,PQ8x4fs", "OPQ8,IVF4,PQ8x4fs"])
def test_inverted_file_answers_lists_and_removes_item_ids_without_an_id_map(factory: str, tmp_path: Path) -> None:
    ids, x = np.arange(1000, 1400) * 7, unit_rows(400, 16)
    store = FaissStore.build(ids, x, factory)
    store.set_nprobe(4)  # every list
    assert holds_ids(store.index) and not isinstance(store.index, faiss.IndexIDMap2)
    found = store.search(x[:20], 1)[1][:, 0]
    assert np.mean(found == ids[:20]) >= (1.0 if factory.endswith("Flat") else 0.9)
    assert store.remove(ids[:10]) == 10 and store.remove(np.array([5])) == 0
    assert sorted(store.ids().tolist()) == ids[10:].tolist()
    assert not set(ids[:10]) & set(store.search(x[:10], 5)[1].ravel().tolist())
    store.save(tmp_path / "ivf.safetensors")
    again = FaissStore.load(tmp_path / "ivf.safetensors")
    assert sorted(again.ids().tolist()) == ids[10:].tolist()
    assert np.array_equal(again.search(x[10:30], 5)[1], store.search(x[10:30], 5)[1])


def test_an_inverted_file_with_a_refine_step_keeps_its_ids_in_a_map() -> None:
    ids, x = np.arange(400) * 5 + 2, unit_rows(400, 16)
    store = FaissStore.build(ids, x, "IVF4,PQ8x4fs,RFlat")  # the outer refine index takes no ids of its own
    assert isinstance(store.index, faiss.IndexIDMap2) and not holds_ids(store.index)
    assert store.search(x[:10], 1)[1][:, 0].tolist() == ids[:10].tolist()
    assert sorted(store.ids().tolist()) == ids.tolist()


def test_inverted_file_written_inside_an_id_map_still_answers_and_lists_but_refuses_removal(tmp_path: Path) -> None:
    ids, x = np.arange(500) * 3 + 11, unit_rows(500, 16, seed=4)
    old = FaissStore(16, "IVF8,Flat")
    old.index = faiss.IndexIDMap2(faiss.index_factory(16, "IVF8,Flat", faiss.METRIC_INNER_PRODUCT))  # as before
    old.train(x)
    old.add(ids, x)
    old.set_nprobe()  # as loading sets it
    old.save(tmp_path / "old.safetensors")
    loaded = FaissStore.load(tmp_path / "old.safetensors")
    assert isinstance(loaded.index, faiss.IndexIDMap2) and not holds_ids(loaded.index)  # kept until rebuilt
    before, after = old.search(x[:40], 10), loaded.search(x[:40], 10)
    assert np.array_equal(before[1], after[1]) and np.allclose(before[0], after[0])
    assert sorted(loaded.ids().tolist()) == ids.tolist()
    with pytest.raises(CorruptArtifactError, match=r"earlier version.*indexer check --repair"):
        loaded.remove(ids[:5])  # FAISS would renumber the wrapper's ids under the lists' row numbers
    assert loaded.search(x[5:25], 1)[1][:, 0].tolist() == ids[5:25].tolist()  # nothing removed


def test_an_index_faiss_cannot_move_to_a_gpu_stays_on_the_cpu_and_answers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import storage.faiss_store as faiss_store

    def refuse(*_: object) -> None:  # faiss-gpu's answer for fast-scan PQ codes (faiss issue 2361)
        raise RuntimeError("clone not supported for this type of IndexIVF")

    monkeypatch.setattr(faiss_store, "gpu_count", lambda: 1)
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", refuse, raising=False)
    ids, x = np.arange(400) + 5, unit_rows(400, 16)
    store = FaissStore.build(ids, x, "IVF4,PQ8x4fs")
    with caplog.at_level("WARNING", logger="storage.faiss_store"):
        assert store.to_gpu() is False
    assert "IVF4,PQ8x4fs stays on the CPU" in caplog.text and "clone not supported" in caplog.text
    store.set_nprobe(4)
    assert np.mean(store.search(x[:20], 1)[1][:, 0] == ids[:20]) >= 0.9


def test_reopened_store_gives_the_same_answers(backend, tmp_path: Path) -> None:
    ids, x = np.arange(300) * 3, unit_rows(300, 8, seed=1)
    store, location = backend.create("s-field-b", 4, ids, x, None, {"encoders": ["e1"]})
    before = store.search(x[:20], 10)
    again = open_backend(backend.spec, tmp_path / "indexes").open(location, {"encoders": ["e1"]})
    assert again is not None and len(again) == 300
    assert np.array_equal(np.sort(again.ids()), np.sort(ids))
    after = again.search(x[:20], 10)
    assert np.array_equal(before[1], after[1]) and np.allclose(before[0], after[0], atol=1e-5)
    assert backend.open(location + "-gone", {"encoders": ["e1"]}) is None


def test_small_store_returns_what_it_has_and_empty_store_nothing(backend) -> None:
    store, _ = backend.create("s-small", 1, np.array([1, 2, 3]), unit_rows(3, 4), "Flat", {})
    scores, ids = store.search(unit_rows(2, 4, seed=5), 10)
    assert ids.shape == (2, 3) and sorted(ids[0].tolist()) == [1, 2, 3]
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    store.remove(np.array([1, 2, 3]))
    assert store.search(unit_rows(1, 4), 5)[1].shape == (1, 0)


def test_wrong_dimension_is_refused(backend) -> None:
    store, _ = backend.create("s-dim", 1, np.arange(10), unit_rows(10, 8), "Flat", {"encoders": ["e1"]})
    with pytest.raises(EncoderMismatchError, match="dimension 4"):
        store.search(unit_rows(1, 4), 3)


def test_inverted_file_keeps_recall(backend) -> None:
    # clustered, like media embeddings (uniform noise is the worst case for any inverted file)
    centres = unit_rows(40, 32, seed=9)
    x = centres[np.random.default_rng(2).integers(0, 40, 4000)] + 0.3 * unit_rows(4000, 32, seed=2)
    ids, x = np.arange(4000), x / np.linalg.norm(x, axis=1, keepdims=True)
    exact, _ = backend.create("s-exact", 1, ids, x, "Flat", {})
    ivf, _ = backend.create("s-ivf", 1, ids, x, "IVF32,Flat", {})
    assert ivf.factory == "IVF32,Flat"
    queries = x[:50] + 0.1 * unit_rows(50, 32, seed=3)
    truth, got = exact.search(queries, 10)[1], ivf.search(queries, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, got)])
    assert recall >= 0.9
    ivf.set_nprobe(10**6)  # every list (at most all of them): an inverted file of whole vectors is then exact
    assert all(set(a) == set(b) for a, b in zip(truth, ivf.search(queries, 10)[1]))
    ivf.set_nprobe(None)  # back to the default: a sixteenth of the lists, at least 16
    if isinstance(ivf, FaissStore):
        assert faiss.extract_index_ivf(ivf.index).nprobe == 16
    else:  # Milvus: its search parameters carry it
        assert ivf._search_params["nprobe"] == 16


def test_catalog_records_location_and_rebuilds_when_stale(backend, tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/c.db")
    with db.session() as session:
        session.add(Collection(id=1, name="c", vector_dir=str(tmp_path)))
    catalog = IndexCatalog(db, 1, backend)
    ids, x = np.arange(50), unit_rows(50, 8)
    catalog.create("early", "k", ids, x, generation=3, header={"encoders": ["e1"]})
    assert catalog.get("early", "k", 3, ["e1"]) is not None
    assert catalog.get("early", "k", 4, ["e1"]) is None  # vectors changed since: stale
    assert catalog.get("early", "k", 3, ["other"]) is None  # made by other encoders
    catalog.create("early", "k", ids[:20], x[:20], generation=4, header={"encoders": ["e1"]})
    current = catalog.get("early", "k", 4, ["e1"])
    assert current is not None and len(current) == 20
    with db.session() as session:
        assert session.query(IndexBuild).count() == 1


def test_a_stale_build_never_replaces_a_newer_one(backend, tmp_path: Path) -> None:
    """A search that rebuilt an index at the generation it opened finishes after an indexer recorded the next
    one: the newer index stays recorded and whole, the search keeps its own build, the next build drops it."""
    db = Database(f"sqlite:///{tmp_path}/c.db")
    with db.session() as session:
        session.add(Collection(id=1, name="c", vector_dir=str(tmp_path)))
    catalog = IndexCatalog(db, 1, backend)
    ids, x = np.arange(60), unit_rows(60, 8)
    catalog.create("field", "k", ids[:10], x[:10], generation=1, header={"encoders": ["e1"]})
    first = _location(db)
    catalog.create("field", "k", ids[:30], x[:30], generation=3, header={"encoders": ["e1"]})  # the indexer
    newest = _location(db)
    stale = catalog.create("field", "k", ids, x, generation=2, header={"encoders": ["e1"]})  # the late search
    assert _location(db) == newest
    current = catalog.get("field", "k", 3, ["e1"])
    assert current is not None and sorted(current.ids().tolist()) == list(range(30))
    assert catalog.get("field", "k", 2, ["e1"]) is None
    assert stale.search(x[40:41], 1)[1][0, 0] == 40  # the search that built it still searches it
    stored = _stored(backend)
    assert newest in stored and first not in stored
    catalog.create("field", "k", ids[:5], x[:5], generation=4, header={"encoders": ["e1"]})
    assert _stored(backend) == [_location(db)], "every older generation dropped, the stale build too"


def _location(db: Database) -> str:
    with db.session() as session:
        return session.query(IndexBuild).one().file


def _stored(backend) -> list[str]:
    """Every stored index's location."""
    if isinstance(backend, MilvusBackend):
        return [f"{backend.uri}#{name}" for name in backend.client.list_collections()]
    return [str(path) for path in sorted(backend.index_dir.glob("*.faiss.safetensors"))]


def test_milvus_drops_older_generations_and_maps_factories(milvus_uri: str) -> None:
    backend = MilvusBackend(milvus_uri)
    ids, x = np.arange(40), unit_rows(40, 8)
    _, first = backend.create("c1-late-a", 1, ids, x, "Flat", {})
    _, second = backend.create("c1-late-a", 2, ids, x, "Flat", {})
    _, third = backend.create("c1-late-a", 3, ids, x, "Flat", {})  # a newer build, not yet recorded
    backend.drop_older("c1-late-a", 2)
    names = backend.client.list_collections()
    assert second.split("#")[1] in names and third.split("#")[1] in names and first.split("#")[1] not in names
    assert backend.open(first, {}) is None
    assert milvus_index("IVF1024,PQ64")[0] == "IVF_PQ" and milvus_index("HNSW32")[0] == "HNSW"
    with pytest.raises(StorageError, match="no Milvus equivalent"):
        milvus_index("OPQ16,IVF64,PQ16")


def test_milvus_open_answers_none_for_what_is_not_a_collection_of_its_own(milvus_uri: str) -> None:
    """Lite answered False for a malformed name where a server raised: both now say None, as for a gone one."""
    backend = MilvusBackend(milvus_uri)
    _, location = backend.create("c1-field", 1, np.arange(5), unit_rows(5, 4), "Flat", {})
    assert backend.open(location, {}) is not None
    for other in (location + "-gone", location + "x", f"{location.rpartition('#')[0]}#bad-name#x", "elsewhere#s_1"):
        assert backend.open(other, {}) is None, other


def test_milvus_ids_reads_every_row_whatever_its_key(milvus_uri: str) -> None:
    ids = np.array([-(2**63), -(2**63) + 1, -5, 0, 2**62, 2**62 + 1])  # 2.3.5's iterator skips 2**63 - 1
    store, _ = MilvusBackend(milvus_uri).create("c1-keys", 1, ids, unit_rows(6, 4), "Flat", {})
    assert store.ids().tolist() == sorted(ids.tolist()) and len(store) == 6


@pytest.mark.server
def test_an_approximate_index_on_a_server_is_whole_and_takes_its_nprobe(milvus_server: str) -> None:
    """A 2.3 server searches rows not yet indexed through an interim index of its own (128 lists, 16 probed,
    whatever nprobe a search asks): at 100k rows it found 0.89 of the exact top 10. A store is searched only
    once its index holds every row, and then through the nprobe it is given."""
    centres = unit_rows(40, 32, seed=9)
    x = centres[np.random.default_rng(2).integers(0, 40, 3000)] + 0.3 * unit_rows(3000, 32, seed=2)
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    store, _ = MilvusBackend(milvus_server).create("c1-ivf", 1, np.arange(3000), x, "IVF32,Flat", {})
    state = store.client.describe_index(store.name, "vector")
    assert state["indexed_rows"] == 3000
    queries = unit_rows(50, 32, seed=3)  # between the clusters: one list cannot hold a query's best ten
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :10]

    def recall(nprobe: int) -> float:
        store.set_nprobe(nprobe)
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, store.search(queries, 10)[1])]))

    assert recall(32) == 1.0 and recall(1) < 0.9  # every list: exact; one list: the server probes only it


@pytest.mark.server
def test_milvus_server_keeps_a_released_collection_loaded_and_says_so(
    milvus_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = MilvusBackend(milvus_server)
    _, location = backend.create("c1-loaded", 1, np.arange(20), unit_rows(20, 4), "Flat", {})
    backend.client.release_collection(location.rpartition("#")[2])  # as after a server restart
    with caplog.at_level("WARNING", logger="storage.milvus_store"):
        store = backend.open(location, {})
    assert store is not None and store.search(unit_rows(1, 4), 3)[1].shape == (1, 3)
    assert "Milvus is loading collection" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="storage.milvus_store"):
        assert backend.open(location, {}) is not None
    assert not caplog.text  # loaded: not a word


@pytest.mark.parametrize(
    ("version", "refused"),
    [
        ("v2.3.5-lite", False),
        ("2.4.1", False),
        ("v2.6.0-rc1", False),
        ("v2.2.16", True),
        ("1.1", True),
        ("zilliz", False),
    ],
)
def test_milvus_server_version_is_checked(version: str, refused: bool) -> None:
    if refused:
        with pytest.raises(StorageError, match=rf"is {re.escape(version)}; this product needs Milvus 2.3 or newer"):
            check_server_version("http://h:19530", version)
    else:
        check_server_version("http://h:19530", version)


def test_an_unreachable_milvus_server_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import storage.milvus_store as milvus_store

    monkeypatch.setattr(milvus_store, "CONNECT_SECONDS", 2.0)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StorageError, match=rf"cannot reach the Milvus server at http://127.0.0.1:{port} within 2 s"):
        MilvusBackend(f"http://127.0.0.1:{port}")


def test_unknown_backend_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unknown vector backend 'redis:x'"):
        open_backend("redis:x", tmp_path)


@pytest.mark.slow
@pytest.mark.datasets
def test_every_strategy_gives_the_same_results_on_both_backends(
    small_folder: Path, tmp_path: Path, milvus_uri: str
) -> None:
    from conftest import mnist_image, recording

    from indexer.pipeline import Indexer
    from retrieval import SearchEngine
    from retrieval.train import TrainConfig

    url = f"sqlite:///{tmp_path}/both.db"
    results = {}
    for kind in BACKENDS:
        Indexer(url, kind, vector_backend="faiss" if kind == "faiss" else f"milvus:{milvus_uri}").run(small_folder)
        engine = SearchEngine.open(url, kind)
        for learned in ("gated", "cross_attention"):
            engine.models.train(
                TrainConfig(learned, epochs=2, batch_size=8, seed=0), tmp_path / f"{kind}-{learned}.safetensors"
            )
        for strategy in ("late", "early", "hybrid", "gated", "cross_attention"):
            found = engine.search(
                text="the digit 2", image=mnist_image(2, 1), audio=recording(2, "lucas", 2), strategy=strategy, k=5
            )
            assert found.hits, strategy
            results[(kind, strategy)] = [(h.key, round(h.score, 4)) for h in found.hits]
    for strategy in ("late", "early", "hybrid", "gated", "cross_attention"):
        assert results[("milvus", strategy)] == results[("faiss", strategy)], strategy
    with Database(url).session() as session:
        locations = [b.file for b in session.query(IndexBuild).all()]
    assert any(loc.startswith(milvus_uri + "#") for loc in locations)
    assert any(loc.endswith(".faiss.safetensors") for loc in locations)


def test_an_index_file_named_by_an_earlier_version_is_dropped_by_the_next_build(tmp_path: Path) -> None:
    from storage.names import hashed_stem

    db = Database(f"sqlite:///{tmp_path}/c.db")
    with db.session() as session:
        session.add(Collection(id=1, name="c", vector_dir=str(tmp_path)))
    catalog = IndexCatalog(db, 1, open_backend("faiss", tmp_path / "indexes"))
    ids, x = np.arange(20), unit_rows(20, 8)
    catalog.create("field", "k", ids, x, generation=1, header={"encoders": ["e1"]})
    name = f"{db.uid[:12]}-c1-field-k"
    legacy = tmp_path / "indexes" / f"{hashed_stem(name)}.faiss.safetensors"  # no generation in the name
    legacy.write_bytes(Path(_location(db)).read_bytes())
    unrelated = tmp_path / "indexes" / f"{hashed_stem(name + 'x')}.g1.faiss.safetensors"
    unrelated.write_bytes(b"another store's file")
    catalog.create("field", "k", ids[:10], x[:10], generation=2, header={"encoders": ["e1"]})
    assert not legacy.exists() and unrelated.exists()
    assert _stored(catalog.backend) == sorted([_location(db), str(unrelated)])


def test_a_collection_the_server_is_loading_again_is_waited_for_aloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """After a restart a 2.3.5 server says Loaded at once and holds the first read 23 s: the wait is said."""
    import logging
    import threading

    import storage.milvus_store as milvus_store

    monkeypatch.setattr(milvus_store, "LOAD_REPORT_SECONDS", 0.01)
    answered = threading.Event()

    class Said(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "Milvus has not answered for collection s_1" in record.getMessage():
                answered.set()  # the server answers once the wait has been said

    class Restarted:
        def query(self, name: str, **_: object) -> list[dict]:
            assert answered.wait(10), "no word while the read was held"
            return [{"count(*)": 3}]

    handler = Said()
    logging.getLogger("storage.milvus_store").addHandler(handler)
    try:
        milvus_store.wait_until_answering(Restarted(), "s_1")
    finally:
        logging.getLogger("storage.milvus_store").removeHandler(handler)
    assert answered.is_set()


@pytest.mark.server
def test_a_client_settles_pymilvus_s_scipy_check_before_any_search(tmp_path: Path, monkeypatch) -> None:
    """pymilvus asks on its first search whether scipy's sparse types exist, executing scipy.sparse afresh;
    late's three unit searches at once raced there (CI: "module 'scipy.sparse._csr' has no attribute
    'csr_array'"). Connecting asks once, before any search can."""
    from pymilvus.client.utils import SciPyHelper

    from storage.milvus_store import _connect

    monkeypatch.setattr(SciPyHelper, "_checked", False)  # as in a fresh process
    client = _connect(str(tmp_path / "milvus.db"))
    try:
        assert SciPyHelper._checked
    finally:
        client.close()
