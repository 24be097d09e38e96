"""MilvusStore: the same store on Milvus, embedded (Milvus Lite, one file) or a cluster (a URI).

One Milvus collection per store, named after the store and its generation: a new generation is written
in full under a new name before the catalog points at it and the old one is dropped, so a crash midway
leaves the previous index serving and an orphan that the next build removes. The FAISS factory string
names the index kind here too (Flat, IVFn,Flat, HNSWm, IVFn,PQm), mapped to Milvus's index types.
Writes use Strong consistency: a removal is visible to the next search, as with FAISS.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from storage.errors import EncoderMismatchError, StorageError
from storage.faiss_store import Rows, default_factory, row_chunks
from storage.names import MILVUS_CHARACTERS, name_hash, slug
from storage.vector_store import StoreBackend, VectorStore, default_nprobe, pad_results

log = logging.getLogger(__name__)

_CLIENTS: dict[str, Any] = {}
_LOCK = threading.Lock()
MAX_MESSAGE_BYTES = 16 << 20  # rows per insert are sized to stay well under gRPC's 64 MB message limit


def milvus_client(uri: str) -> Any:
    """One client per URI and process: Milvus Lite runs one embedded server per file. A secured server
    takes its credentials from MILVUS_TOKEN ("user:password" or an API key), never from the URI on record."""
    with _LOCK:
        if uri not in _CLIENTS:
            from pymilvus import MilvusClient

            if "://" not in uri:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                _CLIENTS[uri] = MilvusClient(uri, token=os.environ.get("MILVUS_TOKEN", ""))
            except Exception as exc:
                raise StorageError(
                    f"cannot open Milvus at {uri}: {exc}. A Milvus Lite file is used by one "
                    "process at a time; a server URI must be reachable"
                ) from exc
        return _CLIENTS[uri]


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

    def __init__(self, client: Any, name: str, dim: int, factory: str, header: dict[str, Any]) -> None:
        self.client, self.name, self.dim, self.factory, self.header = client, name, dim, factory, dict(header)
        self._search_params = milvus_index(factory)[2]

    @classmethod
    def create(
        cls, client: Any, name: str, ids: np.ndarray, vectors: Rows, factory: str | None, header: dict[str, Any]
    ) -> MilvusStore:
        from pymilvus import DataType, MilvusClient

        factory = factory or default_factory(len(ids), int(vectors.shape[1])).replace("x4fs", "")
        index_type, params, _ = milvus_index(factory)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
        index = client.prepare_index_params()
        index.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=params)
        if client.has_collection(name):
            client.drop_collection(name)
        client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        store = cls(client, name, int(vectors.shape[1]), factory, header)
        for chunk_ids, rows in row_chunks(ids, vectors):
            store.add(chunk_ids, rows)
        client.flush(name)  # seal the bulk load: sealed segments are indexed (Lite: 35 ms -> 6 ms a search)
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

    def remove(self, ids: np.ndarray) -> int:
        keys = [int(i) for i in np.asarray(ids, np.int64)]
        if not keys:
            return 0
        present = self.client.query(self.name, ids=keys, output_fields=["id"])
        if present:
            self.client.delete(self.name, ids=[row["id"] for row in present])
        return len(present)

    def __len__(self) -> int:
        rows = self.client.query(self.name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def ids(self) -> np.ndarray:
        iterator = self.client.query_iterator(
            self.name, filter="id >= -9223372036854775808", output_fields=["id"], batch_size=10_000
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
        hits = self.client.search(
            self.name,
            data=list(queries),
            limit=max(1, k),
            anns_field="vector",
            search_params={"metric_type": "IP", "params": params},
        )
        rows = [[(h["id"], h["distance"]) for h in row] for row in hits]
        return pad_results(rows, max((len(r) for r in rows), default=0))


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
        store = MilvusStore.create(self.client, target, ids, vectors, factory, header)
        return store, f"{self.uri}#{target}"

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
        if uri != self.uri or not self.client.has_collection(target):
            return None
        info = self.client.describe_collection(target)
        dim = next(int(f["params"]["dim"]) for f in info["fields"] if f["name"] == "vector")
        if "dim" in expect and expect["dim"] != dim:
            raise EncoderMismatchError(f"Milvus collection {target} holds {dim}-d vectors, {expect['dim']} expected")
        index = self.client.describe_index(target, "vector")
        factory = _factory_of(index)
        self.client.load_collection(target)
        return MilvusStore(self.client, target, dim, factory, dict(expect))


def _factory_of(index: dict[str, Any]) -> str:
    kind = index.get("index_type", "FLAT")
    if kind == "IVF_FLAT":
        return f"IVF{index.get('nlist', 128)},Flat"
    if kind == "IVF_PQ":
        return f"IVF{index.get('nlist', 128)},PQ{index.get('m', 8)}"
    if kind == "HNSW":
        return f"HNSW{index.get('M', 16)}"
    return "Flat"
