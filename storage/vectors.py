"""Every modality's vectors, kept forever as float16 tables keyed by item id.

One table per (item modality, encoder) pair, a *field*. Fused indexes are rebuilt from these tables,
so changing a weight or re-training a strategy never re-encodes media. A stored table is opened as a
memory map, not read: a search process holds only the pages its lookups touch (at 10M items three 512-d
fields are 31 GB on disk; bench/scale_10m.py measures what a search keeps resident).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from storage.artifacts import damaged_rows, map_file, read_integrity, write_streamed
from storage.errors import CorruptArtifactError, EncoderMismatchError, ForeignArtifactError, TableMismatchError
from storage.names import hashed_stem
from storage.paging import ROWS_AT_A_TIME, advise_random, scanning, will_need

# Elements: up to this, numpy's gather and cast beat torch's fixed ~30 us a call (5 ops). Measured here,
# 512-d rows of a 100k table: 16 rows numpy 19 us / torch 30 us, 32 rows 36 / 34 us, 64 rows 69 / 39 us.
NUMPY_CAST_MAX = 16384


def _float32_rows(vectors: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows of a float16 array (all of them by default) as a new float32 array.

    Searching converts every candidate's stored vector, so the cast is on the hot path: numpy casts
    float16 element by element (~2.4 ns each here), torch with the CPU's F16C instructions, about six
    times faster (300 rows x 512: 62 us vs 377 us). Torch casts where the process has loaded it already
    (one with a torch encoder or a learned strategy, a UI server, a benchmark); elsewhere numpy does, as
    importing torch costs 2.5 s to save a millisecond (`retrieval search --image` on the demo, HOG only).
    A few rows stay in numpy, where torch's per-call cost would outweigh the cast.
    """
    with _reading(vectors, rows):
        torch = _torch_for(vectors, rows)
        if torch is None:
            return (vectors if rows is None else vectors[rows]).astype(np.float32)
        return _gathered(torch, vectors, rows).to(torch.float32).numpy()


def _row_products(vectors: np.ndarray, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """`query`'s inner product with the given rows of a float16 array: the exact re-scoring of a shortlist.

    Gather, cast and product run in one library so that one thread pool does them. Torch's cast followed by
    numpy's product made two pools take turns on the cores: numpy's OpenBLAS threads go on spinning after
    a product of more than a few hundred rows and starve the next gather's torch threads. Measured here (1M
    agreeing items, late fusion, rows cached, old and new alternating in one process): ~2,600 rows a query
    32.5 / 33.2 ms p50 with torch then numpy, 13.2 / 12.6 ms all in torch; ~1,000 rows 14.1 and 13.8 ms.
    """
    query = np.asarray(query, np.float32)
    with _reading(vectors, rows):
        torch = _torch_for(vectors, rows)
        if torch is None:
            return vectors[rows].astype(np.float32) @ query
        return torch.mv(_gathered(torch, vectors, rows).to(torch.float32), torch.from_numpy(query)).numpy()


def _reading(vectors: np.ndarray, rows: np.ndarray | None) -> AbstractContextManager[Any]:
    """Read-ahead over the rows' range for a scan (a whole table, a chunk of an index build, rows that cover
    a quarter of their range); otherwise each row's page asked for before the gather, so that reads from
    disk are in flight together (storage/paging.py)."""
    if rows is None:
        return scanning(vectors)
    if len(rows) > 1 and 4 * len(rows) >= int(rows.max()) - int(rows.min()) + 1:
        return scanning(vectors[rows.min() : rows.max() + 1])
    will_need(vectors, rows)
    return nullcontext()


def _torch_for(vectors: np.ndarray, rows: np.ndarray | None) -> Any:
    """Torch, where the process has loaded it and there are more than a few rows; else None (numpy)."""
    torch = sys.modules.get("torch")
    if torch is None or (rows is not None and len(rows) * vectors.shape[1] <= NUMPY_CAST_MAX):
        return None
    return torch


def _gathered(torch: Any, vectors: np.ndarray, rows: np.ndarray | None) -> Any:
    source = torch.from_numpy(vectors)
    return source if rows is None else source.index_select(0, torch.from_numpy(rows))


def field_key(modality: str, encoder: str) -> str:
    """The name of the vectors one encoder made of one item modality, e.g. ``image@hog``."""
    return f"{modality}@{encoder}"


@dataclass
class VectorTable:
    """Sorted int64 ids and their float16 vectors; lookups are a binary search."""

    dim: int
    header: dict[str, Any] = field(default_factory=dict)
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float16))
    digest: str | None = None  # the stored file's content (`Integrity.digest`); None for one not stored yet

    def __post_init__(self) -> None:
        if self.vectors.ndim != 2 or (len(self.vectors) == 0 and self.vectors.shape[1] != self.dim):
            self.vectors = np.zeros((0, self.dim), np.float16)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise EncoderMismatchError(
                f"vectors of shape {vectors.shape} do not fit table {self.header.get('field')} of dimension {self.dim}"
            )
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate ids in one upsert")
        keep = ~np.isin(self.ids, ids)
        merged_ids = np.concatenate([self.ids[keep], ids])
        with scanning(self.vectors) as kept:
            merged = np.concatenate([kept[keep], vectors.astype(np.float16)])
        order = np.argsort(merged_ids, kind="stable")
        self.ids, self.vectors = merged_ids[order], merged[order]

    def remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self.ids, np.asarray(ids, np.int64))
        removed = int((~keep).sum())
        with scanning(self.vectors) as kept:
            self.ids, self.vectors = self.ids[keep], kept[keep]
        return removed

    def __contains__(self, item_id: int) -> bool:
        """Binary search in the sorted ids: a re-run asks this once per unchanged asset."""
        pos = int(np.searchsorted(self.ids, item_id))
        return pos < len(self.ids) and int(self.ids[pos]) == int(item_id)

    def _positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each id (clipped into range) and whether the id is stored."""
        ids = np.asarray(ids, np.int64)
        if not len(self):
            return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
        pos = np.minimum(np.searchsorted(self.ids, ids), len(self) - 1)
        return pos, self.ids[pos] == ids

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectors for `ids` as float32 (zeros where absent) and a mask of which were present."""
        return self.gather(*self.locate(ids))

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each id (clipped into range) and whether the id is stored: what `gather` reads."""
        return self._positions(ids)

    def gather(self, pos: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rows `locate` found, as float32 (zeros where absent), and the mask it gave."""
        if not len(self):
            return np.zeros((len(pos), self.dim), np.float32), present
        out = _float32_rows(self.vectors, pos)  # one gather + cast, then zero the absent rows
        out[~present] = 0.0
        return out, present

    def similarities(self, ids: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inner product of `query` with each id's vector (0 where absent), and which ids are present.

        The exact re-scoring of a shortlist: one gather, cast and product (`_row_products`); no float32 copy kept.
        """
        pos, present = self._positions(ids)
        if not len(self):
            return np.zeros(len(pos), np.float32), present
        scores = _row_products(self.vectors, pos, query)
        return np.where(present, scores, np.float32(0.0)), present

    def as_float32(self) -> np.ndarray:
        return _float32_rows(self.vectors)


class VectorStorage:
    """A folder of vector tables, one file per field, each written atomically.

    With an `owner` (database id/collection id), every table written is stamped with it and a table
    stamped by another owner is refused: two collections or databases can never read or overwrite each
    other's vectors, even in a folder that older versions let them share. Unstamped tables are read.

    With `recorded` (each table's digest as the database last recorded it), a table whose content is not the
    one on record is refused when opened: a backup restored over newer tables, or the database restored over
    newer vectors, would otherwise mix old and new vectors silently. A table one write ahead of its record (a
    crash between the table and the database's commit) is accepted: its header names the digest it replaced.
    Every digest written or removed is kept in `written` until the caller records it (`take_written`).
    """

    def __init__(self, root: Path, owner: str | None = None, recorded: dict[str, str] | None = None) -> None:
        self.root = Path(root)
        self.owner = owner
        self.recorded = recorded
        self.written: dict[str, str | None] = {}

    def path_for(self, key: str) -> Path:
        return self.root / f"{hashed_stem(key)}.vectors.safetensors"

    def exists(self, key: str) -> bool:
        return self.path_for(key).exists()

    def load(
        self, key: str, *, dim: int | None = None, encoder: str | None = None, against_record: bool = True
    ) -> VectorTable:
        """Read one field; when `dim`/`encoder` are given, a table made otherwise is refused. Opening costs
        a read of the file's header: the checksums' count against the rows, and the digest against the
        database's record (`against_record=False`: `indexer check`, which compares them itself)."""
        path = self.path_for(key)
        if not path.exists():
            if dim is None:
                raise FileNotFoundError(f"no vectors stored for {key} in {self.root}")
            return VectorTable(dim=dim, header={"field": key, "encoder": encoder, "dim": dim})
        arrays, header, integrity = map_file(path)
        if self.owner is not None and header.get("owner") not in (None, self.owner):
            raise ForeignArtifactError(
                f"{path} belongs to another collection or database ({header['owner']}, not {self.owner}): "
                f"they share the folder {self.root}. Nothing was changed; index this collection into a new "
                "one (another --collection name) so that each gets its own folder"
            )
        digest = integrity.digest if integrity else None
        if against_record and not self.matches_record(key, digest, header):
            raise TableMismatchError(
                f"{path}: the vectors of {key} are not the ones the database recorded (written "
                f"{header.get('written_at', 'by an older version')}): a backup of the tables or of the database "
                "was restored over newer data. Nothing was changed; `python -m indexer check` says which items "
                "to re-encode and `--repair` prepares that"
            )
        advise_random(arrays["vectors"])  # a search gathers scattered rows (storage/paging.py)
        table = VectorTable(
            dim=int(header["dim"]), header=header, ids=arrays["ids"], vectors=arrays["vectors"], digest=digest
        )
        if dim is not None and table.dim != dim:
            raise EncoderMismatchError(f"{path}: stored vectors have dimension {table.dim}, expected {dim}")
        if encoder is not None and header.get("encoder") not in (None, encoder):
            raise EncoderMismatchError(
                f"{path}: vectors were made by encoder {header.get('encoder')!r}, not {encoder!r}; "
                "index the media into a new collection (or database) to switch encoders"
            )
        return table

    def matches_record(self, key: str, digest: str | None, header: dict[str, Any]) -> bool:
        """Whether a table with this digest and header is the database's, or one write ahead of it."""
        wanted = (self.recorded or {}).get(key)
        return wanted is None or wanted in (digest, header.get("previous"))

    def damaged(self, key: str) -> dict[str, list[tuple[int, int]]]:
        """Row ranges of the table whose bytes changed since it was written (reads the whole file)."""
        return damaged_rows(self.path_for(key))

    def verify(self, key: str) -> None:
        """Refuse a table whose bytes changed since it was written: what an index is built from is read whole."""
        if self.exists(key) and (damage := self.damaged(key)):
            rows = sum(end - start for ranges in damage.values() for start, end in ranges)
            raise CorruptArtifactError(
                f"{self.path_for(key)}: {rows} rows of {', '.join(sorted(damage))} changed since the table was "
                "written; no index is built from it. `python -m indexer check --repair` says which items to "
                "re-encode and prepares that"
            )

    def remove(self, key: str) -> None:
        """Delete one field's table (its encoder left the collection's profile)."""
        self.path_for(key).unlink(missing_ok=True)
        self._wrote(key, None)

    def accept(self, key: str, digest: str) -> None:
        """Take a stored table as it is (`indexer check --repair` found nothing wrong in it): it is recorded."""
        self._wrote(key, digest)

    def take_written(self) -> dict[str, str | None]:
        """The digests written (None: removed) since the last call: what the database must record."""
        written, self.written = self.written, {}
        return written

    def _wrote(self, key: str, digest: str | None) -> None:
        self.written[key] = digest
        if self.recorded is not None:  # this process's own writes are the record from now on
            if digest is None:
                self.recorded.pop(key, None)
            else:
                self.recorded[key] = digest

    def _stamp(
        self, key: str, header: dict[str, Any], dim: int, count: int, changed: np.ndarray | None
    ) -> dict[str, Any]:
        path = self.path_for(key)
        try:
            integrity = read_integrity(path) if path.exists() else None
        except CorruptArtifactError:
            integrity = None
        stamped = {**header, "field": key, "dim": dim, "count": count, "written_at": datetime.now(UTC).isoformat()}
        stamped["previous"] = integrity.digest if integrity else None
        stamped.pop("changed", None)  # the write before this one's
        if changed is not None:
            stamped["changed"] = sorted(int(i) for i in changed)
        if self.owner is not None:
            stamped["owner"] = self.owner
        return stamped

    def save(self, key: str, table: VectorTable, changed: np.ndarray | None = None) -> str:
        """Write one table atomically; returns its digest. `changed`: the items whose vectors this write
        changed, kept in the header until the next write (`ahead`)."""
        return self.write(key, table.ids, table.dim, [table.vectors] if len(table) else [], table.header, changed)

    def ahead(self, key: str, table: VectorTable) -> np.ndarray:
        """Items whose vectors the table's last write changed when the database has not recorded that write
        (an indexing run stopped between its two writes, or the database restored from a backup over newer
        tables): their vectors may not be of the content the database describes, so they are encoded again.
        Empty when the table is the one on record, or its last write did not say what it changed."""
        wanted = (self.recorded or {}).get(key)
        if wanted is None or wanted == table.digest or wanted != table.header.get("previous"):
            return np.zeros(0, np.int64)
        return np.intersect1d(table.ids, np.asarray(table.header.get("changed", []), np.int64))

    def write(
        self,
        key: str,
        ids: np.ndarray,
        dim: int,
        chunks: Iterable[np.ndarray],
        header: dict[str, Any],
        changed: np.ndarray | None = None,
    ) -> str:
        """Write a whole table from vector chunks in the order of `ids` (sorted, unique), never holding
        more than one chunk: how a table larger than memory is made. Atomic; returns the table's digest."""
        ids = np.asarray(ids, np.int64)
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            raise ValueError(f"ids written to {key} must be sorted and unique")

        def stream() -> Iterable[tuple[str, np.ndarray]]:
            yield "ids", ids
            for chunk in chunks:
                chunk = np.asarray(chunk)
                if chunk.ndim != 2 or chunk.shape[1] != dim:
                    raise EncoderMismatchError(
                        f"vectors of shape {chunk.shape} do not fit table {key} of dimension {dim}"
                    )
                for start in range(0, len(chunk), ROWS_AT_A_TIME):  # float16 copies of a bounded size
                    with scanning(chunk[start : start + ROWS_AT_A_TIME]) as part:
                        yield "vectors", part.astype(np.float16, copy=False)

        shapes: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
            "ids": (np.dtype(np.int64), (len(ids),)),
            "vectors": (np.dtype(np.float16), (len(ids), dim)),
        }
        digest = write_streamed(
            self.path_for(key), shapes, stream(), self._stamp(key, header, dim, len(ids), changed)
        ).digest
        self._wrote(key, digest)
        return digest
