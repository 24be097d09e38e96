"""MilvusStore: the same store on Milvus, embedded (Milvus Lite, one file) or a cluster (a URI).

One Milvus collection per store, named after the store and its generation: a new generation is written
in full under a new name before the catalog points at it and the old one is dropped, so a crash midway
leaves the previous index serving and an orphan that the next build removes. The FAISS factory string
names the index kind here too (Flat, IVFn,Flat, HNSWm, IVFn,PQm), mapped to Milvus's index types.
Consistency is chosen per operation (CONSISTENCY). A store's first search, and its first after each of its own
writes, reads at Strong: it waits for the server's time tick (200 ms on 2.3.5) and sees every write, so a
removal is visible to the next search, as with FAISS. Every later search reads at Bounded (1.5 ms): it may
miss what another process wrote in the last 5 s (the server's `common.gracefulTime`), in practice what the
server has not yet consumed (under one 200 ms tick). Counts and `ids()` (what `indexer check` compares) read at
Strong. pymilvus's Session level would be
the textbook choice, but a 2.3.5 server served a search at it before this client's own delete.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from storage.errors import EncoderMismatchError, StorageError
from storage.faiss_store import Rows, default_factory, row_chunks
from storage.names import MILVUS_CHARACTERS, name_hash, slug
from storage.vector_store import StoreBackend, VectorStore, default_nprobe, pad_lists

log = logging.getLogger(__name__)

_CLIENTS: dict[str, Any] = {}
_LOCK = threading.Lock()
MAX_MESSAGE_BYTES = 16 << 20  # rows per insert are sized to stay well under gRPC's 64 MB message limit
MIN_SERVER = (2, 3)  # upsert (used by `add`) came in 2.3.0; 2.3.5 is the oldest server the tests run on
CONNECT_SECONDS = 10.0
# Level per operation (see the module's docstring): searches Bounded once the store's own writes are seen.
CONSISTENCY = {"search": "Bounded", "first_search": "Strong", "count": "Strong", "ids": "Strong", "write": "Strong"}
COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")  # what every Milvus release accepts


def is_server(uri: str) -> bool:
    """A server's URI (http://, https://) rather than a Milvus Lite file's path."""
    return "://" in uri


def milvus_client(uri: str) -> Any:
    """One client per URI and process: Milvus Lite runs one embedded server per file. A secured server
    takes its credentials from MILVUS_TOKEN ("user:password" or an API key), never from the URI on record;
    TLS is the URI's scheme (https://), its CA file MILVUS_SERVER_PEM. A URI's path names a database
    (http://HOST:19530/DB). The server's version is checked once, here."""
    with _LOCK:
        if uri not in _CLIENTS:
            client = _connect(uri)
            if is_server(uri):
                check_server_version(uri, client.get_server_version())
            _CLIENTS[uri] = client
        return _CLIENTS[uri]


def _connect(uri: str) -> Any:
    from pymilvus import MilvusClient
    from pymilvus.client.utils import SciPyHelper

    # pymilvus asks, on its first search, whether scipy's sparse types exist by executing scipy.sparse afresh;
    # late's unit searches go out at once, and two threads doing that raced ("module 'scipy.sparse._csr' has
    # no attribute 'csr_array'"). Asked once here, under the lock, it is settled before any search.
    SciPyHelper.is_scipy_sparse(None)

    options: dict[str, Any] = {"token": os.environ.get("MILVUS_TOKEN", "")}
    if not is_server(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    else:
        options["timeout"] = CONNECT_SECONDS
        if os.environ.get("MILVUS_SERVER_PEM"):
            options["server_pem_path"] = os.environ["MILVUS_SERVER_PEM"]
    try:
        return MilvusClient(uri, **options)
    except Exception as exc:
        if not is_server(uri):
            raise StorageError(
                f"cannot open Milvus Lite at {uri}: {exc}. A Milvus Lite file is used by one process at a time"
            ) from exc
        raise StorageError(
            f"cannot reach the Milvus server at {uri} within {CONNECT_SECONDS:.0f} s ({_reason(exc)}): is it "
            "running, is the address right, and do MILVUS_TOKEN / MILVUS_SERVER_PEM match its security?"
        ) from exc


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "message", "") or exc).splitlines()[0]


def check_server_version(uri: str, version: str) -> None:
    """Refuse a server older than MIN_SERVER ("v2.3.5-lite", "2.4.1", "v2.6.0-rc1"); an unparsable
    version (a managed service's own) is let through."""
    found = re.match(r"v?(\d+)\.(\d+)", version)
    if found and (int(found[1]), int(found[2])) < MIN_SERVER:
        raise StorageError(
            f"the Milvus server at {uri} is {version}; this product needs Milvus "
            f"{'.'.join(map(str, MIN_SERVER))} or newer (upsert): upgrade the server"
        )


def milvus_index(factory: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(index type, build params, search params) for a FAISS factory string."""
    if factory == "Flat":
        return "FLAT", {}, {}
    if m := re.fullmatch(r"IVF(\d+),Flat", factory):
        nlist = int(m[1])
        return "IVF_FLAT", {"nlist": nlist}, {"nprobe": default_nprobe(nlist)}
    if m := re.fullmatch(r"IVF(\d+),PQ(\d+)(?:x(\d+))?", factory):
        nlist = int(m[1])
        return (
            "IVF_PQ",
            {"nlist": nlist, "m": int(m[2]), "nbits": int(m[3] or 8)},
            {"nprobe": default_nprobe(nlist)},
        )
    if m := re.fullmatch(r"HNSW(\d+)", factory):
        return "HNSW", {"M": int(m[1]), "efConstruction": 80}, {"ef": 64}
    raise StorageError(f"factory {factory!r} has no Milvus equivalent here; use Flat, IVFn,Flat, IVFn,PQm or HNSWm")


class MilvusStore(VectorStore):
    """One Milvus collection: an INT64 primary key (the item id) and one float vector."""

    counts_locally = False  # len() asks the server (count(*)): a search never does
    remote = True  # a server's (MilvusBackend makes Lite's False): pymilvus's gRPC client takes calls from any thread

    def __init__(self, client: Any, name: str, dim: int, factory: str, header: dict[str, Any]) -> None:
        self.client, self.name, self.dim, self.factory, self.header = client, name, dim, factory, dict(header)
        self._search_params = milvus_index(factory)[2]
        self._unseen_writes = True  # a store just made or opened may hold writes this process has not read yet

    @classmethod
    def create(
        cls,
        client: Any,
        name: str,
        ids: np.ndarray,
        vectors: Rows,
        factory: str | None,
        header: dict[str, Any],
        server: bool = False,
    ) -> MilvusStore:
        """A new collection holding `ids`. Milvus Lite: flushed, so its rows are indexed (35 ms -> 6 ms a
        search). A server: an exact index (FLAT) is not flushed: a flush waits ~2.5 s a collection on 2.3.5,
        the rows are durable in its log from the insert, and exact search sees them; an approximate one is
        built whole (`_index_sealed`)."""
        from pymilvus import DataType, MilvusClient

        factory = factory or default_factory(len(ids), int(vectors.shape[1])).replace("x4fs", "")
        index_type, params, _ = milvus_index(factory)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
        index = client.prepare_index_params()
        index.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=params)
        whole = server and index_type != "FLAT"
        if client.has_collection(name):
            client.drop_collection(name)
        client.create_collection(
            name, schema=schema, index_params=None if whole else index, consistency_level=CONSISTENCY["write"]
        )
        store = cls(client, name, int(vectors.shape[1]), factory, header)
        for chunk_ids, rows in row_chunks(ids, vectors):
            store.add(chunk_ids, rows)
        if whole:
            _index_sealed(client, name, index, len(ids))
        elif not server:
            client.flush(name)
        return store

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, np.float32)
        self.check_dim(vectors)
        step = max(1, MAX_MESSAGE_BYTES // (4 * self.dim))
        for start in range(0, len(ids), step):
            rows = [
                {"id": int(i), "vector": v} for i, v in zip(ids[start : start + step], vectors[start : start + step])
            ]
            self.client.upsert(self.name, rows)
        self._unseen_writes = True

    def remove(self, ids: np.ndarray) -> int:
        keys = [int(i) for i in np.asarray(ids, np.int64)]
        if not keys:
            return 0
        present = self.client.query(self.name, ids=keys, output_fields=["id"], consistency_level=CONSISTENCY["count"])
        if present:
            self.client.delete(self.name, ids=[row["id"] for row in present])
            self._unseen_writes = True
        return len(present)

    def __len__(self) -> int:
        rows = self.client.query(
            self.name, filter="", output_fields=["count(*)"], consistency_level=CONSISTENCY["count"]
        )
        return int(rows[0]["count(*)"])

    def ids(self) -> np.ndarray:
        # No filter: every row. A bound on the key is no way to say so: 2.3.5 cannot parse -2**63
        # (strconv.ParseInt out of range), while an empty expression is every release's "all rows".
        iterator = self.client.query_iterator(
            self.name, filter="", output_fields=["id"], batch_size=10_000, consistency_level=CONSISTENCY["ids"]
        )
        found: list[int] = []
        try:
            while batch := iterator.next():
                found += [row["id"] for row in batch]
        finally:
            iterator.close()
        return np.sort(np.asarray(found, np.int64))

    def set_nprobe(self, nprobe: int | None = None) -> None:
        if "nprobe" in self._search_params:
            nlist = milvus_index(self.factory)[1]["nlist"]
            self._search_params["nprobe"] = min(nlist, nprobe or default_nprobe(nlist))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        self.check_dim(queries)
        params = dict(self._search_params)
        if "ef" in params:
            params["ef"] = max(params["ef"], k)
        # No count first: each call is a round trip (and a scan in Milvus Lite); a small collection
        # simply returns fewer hits, and the result is as wide as the longest list, like FAISS's.
        # Lists of floats: pymilvus packs an array's numpy scalars one at a time (1536-d: 0.4 -> 0.2 ms a request)
        hits = self.client.search(
            self.name,
            data=queries.tolist(),
            limit=max(1, k),
            anns_field="vector",
            output_fields=[],
            search_params={"metric_type": "IP", "params": params},
            consistency_level=CONSISTENCY["first_search" if self._unseen_writes else "search"],
        )
        self._unseen_writes = False
        # Each query's ids and scores as they came: iterating hits decodes each one, and Milvus Lite sends every
        # hit's vector whatever output_fields asks (2,000 512-d rows, 100 hits: 39 -> 32 ms a search)
        return pad_lists([(row.ids, row.distances) for row in hits])


class MilvusBackend(StoreBackend):
    """Stores as Milvus collections; `location` is `URI#collection`."""

    def __init__(self, uri: str, index_dir: Path | None = None) -> None:
        if not uri:
            raise StorageError("the milvus backend needs a target: milvus:PATH.db or milvus:http://HOST:19530")
        self.uri = uri
        self.spec = f"milvus:{uri}"
        self.client = milvus_client(uri)

    @staticmethod
    def collection_name(name: str, generation: int) -> str:
        """Milvus names allow letters, digits and underscores; a hash keeps different stores apart."""
        return f"s_{slug(name, 80, MILVUS_CHARACTERS).strip('_')}_{name_hash(name)}_g{generation}"

    def create(
        self,
        name: str,
        generation: int,
        ids: np.ndarray,
        vectors: Rows,
        factory: str | None,
        header: dict[str, Any],
    ) -> tuple[MilvusStore, str | None]:
        target = self.collection_name(name, generation)
        store = MilvusStore.create(self.client, target, ids, vectors, factory, header, server=is_server(self.uri))
        return self._placed(store), f"{self.uri}#{target}"

    def _placed(self, store: MilvusStore) -> MilvusStore:
        # Lite's searches stay one at a time: two at once from one process once failed with gRPC's
        # "Method not implemented" in the parity test
        if not is_server(self.uri):
            store.remote = False
        return store

    def release(self, location: str) -> None:
        """Kept: the process that built it searches it in Milvus; the next build of the name drops it."""

    def drop_older(self, name: str, generation: int) -> None:
        stem = self.collection_name(name, generation).rsplit("_g", 1)[0] + "_g"
        for other in self.client.list_collections():
            built_at = other[len(stem) :]
            if other.startswith(stem) and built_at.isdigit() and int(built_at) < generation:
                self.client.drop_collection(other)  # older generations, and orphans of crashed builds at them

    def open(self, location: str, expect: dict[str, Any]) -> MilvusStore | None:
        uri, _, target = location.rpartition("#")
        # A name Milvus would refuse is no collection of ours: None, as Lite answers, where a server raises.
        if uri != self.uri or not COLLECTION_NAME.fullmatch(target) or not self.client.has_collection(target):
            return None
        info = self.client.describe_collection(target)
        dim = next(int(f["params"]["dim"]) for f in info["fields"] if f["name"] == "vector")
        if "dim" in expect and expect["dim"] != dim:
            raise EncoderMismatchError(f"Milvus collection {target} holds {dim}-d vectors, {expect['dim']} expected")
        index = self.client.describe_index(target, "vector")
        factory = _factory_of(index)
        keep_loaded(self.client, target)
        if is_server(self.uri):
            wait_until_answering(self.client, target)
        return self._placed(MilvusStore(self.client, target, dim, factory, dict(expect)))


INDEX_TIMEOUT_SECONDS = 3600.0


def _index_sealed(client: Any, name: str, index: Any, rows: int) -> None:
    """Seal every row, index every segment, then load: the collection is searched through its own index
    only. Loaded first, a 2.3 server searches rows not yet indexed (new segments, and sealed ones until the
    index node is done) through an interim index of 128 lists probing 16 (`queryNode.segcore.interimIndex`),
    whatever nprobe the search asks: at 100k 512-d rows it found 0.89 of the exact top 10 where the index
    finds 1.0 (docs/benchmarks/milvus_server_100k.md). Rows added later take that path until the server
    seals them (docs/scale.md)."""
    client.flush(name)
    client.create_index(name, index)
    started = time.monotonic()
    # indexed_rows, not pending_index_rows: a compaction's merged segment counts as pending again (for
    # minutes, up and down at 100k rows) while its indexed parents keep serving until it is indexed too
    while client.describe_index(name, "vector")["indexed_rows"] < rows:
        if time.monotonic() - started > INDEX_TIMEOUT_SECONDS:
            raise StorageError(f"Milvus did not index collection {name} within {INDEX_TIMEOUT_SECONDS:.0f} s")
        time.sleep(0.5)
    client.load_collection(name)


def _factory_of(index: dict[str, Any]) -> str:
    kind = index.get("index_type", "FLAT")
    if kind == "IVF_FLAT":
        return f"IVF{index.get('nlist', 128)},Flat"
    if kind == "IVF_PQ":
        return f"IVF{index.get('nlist', 128)},PQ{index.get('m', 8)}"
    if kind == "HNSW":
        return f"HNSW{index.get('M', 16)}"
    return "Flat"


LOAD_REPORT_SECONDS = 2.0  # how often a collection being loaded says how far it got
LOAD_TIMEOUT_SECONDS = 600.0


def keep_loaded(client: Any, name: str) -> None:
    """A collection must be in the server's memory to be searched. Loaded (the usual case): one round trip.
    Otherwise (after a server restart the server reloads what was loaded: 18 s of silence for five small
    collections on 2.3.5) load it, saying so and how far it got, instead of blocking without a word."""
    from pymilvus.client.types import LoadState

    state = client.get_load_state(name)
    if state["state"] == LoadState.Loaded:
        return
    log.warning("Milvus is loading collection %s into memory (after a server restart, or released); waiting", name)
    if state["state"] != LoadState.Loading:
        client.load_collection(name, _async=True)
    started = time.monotonic()
    while (state := client.get_load_state(name))["state"] != LoadState.Loaded:
        waited = time.monotonic() - started
        if waited > LOAD_TIMEOUT_SECONDS:
            raise StorageError(
                f"Milvus did not load collection {name} within {waited:.0f} s: is the server short of memory?"
            )
        log.warning("Milvus is loading collection %s: %s%% after %.0f s", name, state.get("progress", "?"), waited)
        time.sleep(LOAD_REPORT_SECONDS)


def wait_until_answering(client: Any, name: str) -> None:
    """After a restart a 2.3.5 server reports its collections Loaded at once, then holds every read of one
    until its query node has them again (a 200-row collection: 23 s of silence before the first search). One
    cheap read at open, watched from here: while it has not answered, say so every LOAD_REPORT_SECONDS."""
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as Pending

    pool = ThreadPoolExecutor(1, thread_name_prefix="milvus-probe")
    read = pool.submit(client.query, name, filter="", output_fields=["count(*)"], consistency_level="Bounded")
    started = time.monotonic()
    try:
        while True:
            try:
                read.result(timeout=LOAD_REPORT_SECONDS)
                return
            except Pending:
                waited = time.monotonic() - started
                if waited > LOAD_TIMEOUT_SECONDS:
                    raise StorageError(f"Milvus did not answer for collection {name} within {waited:.0f} s") from None
                log.warning(
                    "Milvus has not answered for collection %s for %.0f s: the server is loading it again "
                    "(after a restart); waiting",
                    name,
                    waited,
                )
    finally:
        pool.shutdown(wait=False)
