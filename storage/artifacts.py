"""Atomic, self-describing files: named arrays plus a JSON header, in one safetensors file.

Both vector tables and FAISS indexes are written this way, so a crash can never leave a half-written
file behind (temporary file, fsync, rename) and every file says what made it. Large files can be written
a chunk at a time (`write_streamed`) and read without loading them (`map_arrays`: each array is a
memory map at its offset in the file, so a reader's memory grows with the rows it touches).

Every streamed file also carries its integrity: a CRC-32 of each block of rows of each array (about
BLOCK_BYTES each), stored as arrays of their own at the end of the file, and a digest of them all in the
header that names the file's content (`Integrity`). Opening a file reads the header only; `damaged_rows`
reads everything and says which rows changed since the file was written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from storage.errors import CorruptArtifactError
from storage.paging import release

_HEADER_KEY = "header"
_INTEGRITY_KEY = "integrity"  # in the header: the digest and the rows a block holds, per array
CRC_PREFIX = "crc32:"  # the checksum array of array NAME is "crc32:NAME"
# Rows a checksum covers: about this many bytes, a power of two of rows (64 rows of a 512-d float16 table), so
# damage is told within 64 items; the checksums cost 4 bytes a block (0.006 % of a table), and checking a
# block costs one CRC-32 call (~3.6 GB/s here).
BLOCK_BYTES = 1 << 16
# Temporary files are named `.NAME.retrieval-PID-RANDOM.tmp`: the marker and the writer's pid make them
# ours beyond doubt, so the stale-temporary sweep never touches a user's own `.*.tmp` files.
TEMP_MARKER = "retrieval"


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to `path` so that readers see either the old file or the whole new one."""
    write_atomic_with(path, lambda handle: handle.write(data))


def write_atomic_with(path: Path, fill: Callable[[IO[bytes]], object]) -> None:
    """`fill` writes the file's bytes to a temporary file; it replaces `path` only once whole and synced.

    A reader that mapped the old file keeps reading the old inode: the rename never changes its pages."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_MARKER}-{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_arrays(path: Path, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
    payload = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
    write_atomic(path, save(payload, metadata={_HEADER_KEY: json.dumps(header, sort_keys=True)}))


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    try:
        arrays = load_file(str(path))
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            meta = json.loads(handle.read(size)).get("__metadata__", {})
        return arrays, json.loads(meta.get(_HEADER_KEY, "{}"))
    except FileNotFoundError:
        raise
    except (SafetensorError, ValueError, OSError) as exc:
        raise CorruptArtifactError(f"{path}: cannot be read ({exc}); delete it and re-run the indexer") from exc


_DTYPES = {
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
    "U32": np.uint32,
    "U8": np.uint8,
}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}


def read_layout(path: Path) -> tuple[dict[str, Any], int]:
    """The safetensors JSON header of `path` and where its data starts."""
    with open(path, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        if not 0 < size <= 100_000_000:
            raise ValueError(f"header size {size} is not plausible")
        return json.loads(handle.read(size)), 8 + size


def map_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Each array of a safetensors file as a copy-on-write memory map (nothing is read until touched),
    and the file's header. Private mappings keep the arrays writable for torch without touching the file."""
    arrays, header, _ = map_file(path)
    return arrays, header


def map_file(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any], Integrity | None]:
    """`map_arrays` and the file's checksums (None where it has none), from one read of its header."""
    path = Path(path)
    try:
        layout, start = read_layout(path)
        total = path.stat().st_size
        arrays: dict[str, np.ndarray] = {}
        sums: dict[str, tuple[int, int]] = {}  # array -> where its checksums start in the file, how many
        for name, spec in layout.items():
            if name == "__metadata__":
                continue
            begin, end = (int(n) for n in spec["data_offsets"])
            if name.startswith(CRC_PREFIX):  # read and checked when verified (`damaged_rows`), not at every open
                sums[name[len(CRC_PREFIX) :]] = (start + begin, (min(end, total - start) - begin) // 4)
                continue
            dtype, shape = np.dtype(_DTYPES[spec["dtype"]]), tuple(int(n) for n in spec["shape"])
            if end - begin != dtype.itemsize * math.prod(shape) or start + end > total:
                raise ValueError(f"array {name!r} does not fit the file (offsets {begin}..{end}, {total} bytes)")
            empty = end == begin
            arrays[name] = (
                np.zeros(shape, dtype) if empty else np.memmap(path, dtype, mode="c", offset=start + begin, shape=shape)
            )
        meta = layout.get("__metadata__", {})
        header = json.loads(meta.get(_HEADER_KEY, "{}"))
        stated, integrity = header.pop(_INTEGRITY_KEY, None), None
        if stated is not None:  # taken as stated: `damaged_rows` checks it against the arrays
            integrity = Integrity(stated["blocks"], str(stated["digest"]), path, sums)
        return arrays, header, integrity
    except FileNotFoundError:
        raise
    except (KeyError, ValueError, OSError) as exc:
        raise CorruptArtifactError(f"{path}: cannot be read ({exc}); delete it and re-run the indexer") from exc


def block_rows(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Rows of an array one checksum covers: a power of two, about BLOCK_BYTES (at least one row)."""
    row_bytes = max(1, np.dtype(dtype).itemsize * math.prod(shape[1:]))
    return 1 << max(0, (BLOCK_BYTES // row_bytes).bit_length() - 1)


def _blocks(shape: tuple[int, ...], rows_a_block: int) -> int:
    rows = int(shape[0]) if shape and all(shape) else 0
    return -(-rows // rows_a_block)


@dataclass(slots=True)
class Integrity:
    """A file's checksums: per array, the rows a block holds, and a `digest` naming every block's CRC-32 (and
    the arrays' shapes), so two files with one digest hold the same arrays whatever their headers say. The
    CRCs themselves are read from the file when asked for (`checksums`)."""

    blocks: dict[str, int]
    digest: str
    path: Path | None = None
    places: dict[str, tuple[int, int]] | None = None  # array -> (offset of its checksums, count)

    def checksums(self, name: str) -> np.ndarray:
        offset, count = (self.places or {})[name]
        return np.fromfile(self.path or "", "<u4", count, offset=offset) if count else np.zeros(0, "<u4")

    @staticmethod
    def digest_of(shapes: dict[str, tuple[np.dtype, tuple[int, ...]]], crcs: dict[str, np.ndarray]) -> str:
        hashed = hashlib.sha256()
        for name in sorted(shapes):
            dtype, shape = shapes[name]
            hashed.update(f"{name}:{np.dtype(dtype).str}:{list(shape)};".encode())
            hashed.update(np.ascontiguousarray(crcs[name], "<u4").tobytes())
        return hashed.hexdigest()[:32]


class _Checksums:
    """CRC-32 of each block of each array, fed the bytes in file order, as they are written."""

    def __init__(self, shapes: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> None:
        self.shapes = shapes
        self.block_bytes = {
            name: block_rows(dtype, shape) * max(1, np.dtype(dtype).itemsize * math.prod(shape[1:]))
            for name, (dtype, shape) in shapes.items()
        }
        self.crcs: dict[str, list[int]] = {name: [] for name in shapes}
        self._crc, self._filled = 0, 0

    def feed(self, name: str, data: memoryview) -> None:
        size, crcs = self.block_bytes[name], self.crcs[name]
        while len(data):
            take = min(len(data), size - self._filled)
            if take == size:  # whole blocks at once: one call each, no running state
                whole = len(data) // size * size
                crcs.extend(zlib.crc32(data[at : at + size]) for at in range(0, whole, size))
                data = data[whole:]
                continue
            self._crc = zlib.crc32(data[:take], self._crc)
            self._filled += take
            data = data[take:]
            if self._filled == size:
                self.end_block(name)

    def end_block(self, name: str) -> None:
        if self._filled:
            self.crcs[name].append(self._crc)
        self._crc, self._filled = 0, 0

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(values, "<u4") for name, values in self.crcs.items()}


def _with_checksums(shapes: dict[str, tuple[np.dtype, tuple[int, ...]]]) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """The file's arrays: the caller's, then one checksum array each, written last."""
    crc = np.dtype("<u4")
    sums = {
        CRC_PREFIX + name: (crc, (_blocks(shape, block_rows(dtype, shape)),)) for name, (dtype, shape) in shapes.items()
    }
    return {**shapes, **sums}


def write_streamed(
    path: Path,
    shapes: dict[str, tuple[np.dtype, tuple[int, ...]]],
    chunks: Iterable[tuple[str, np.ndarray]],
    header: dict[str, Any],
) -> Integrity:
    """Write a safetensors file whose arrays arrive as (name, chunk) pairs in the order of `shapes`, so a
    table larger than memory is written without holding it; atomically, like `save_arrays`. A chunk stream
    that is short, long or out of order is refused (and the previous file stays). Each array's checksums are
    computed as its bytes go out and written after them; their digest goes into the header last (a digest
    has a fixed width, so the header keeps the size it was written with)."""
    sizes = {name: np.dtype(dtype).itemsize * math.prod(shape) for name, (dtype, shape) in shapes.items()}
    order = [name for name, size in sizes.items() if size]
    blocks = {name: block_rows(*shape) for name, shape in shapes.items()}
    text = _layout_text(_with_checksums(shapes), header, {"blocks": blocks, "digest": "0" * 32})
    sums = _Checksums(shapes)

    def fill(handle: IO[bytes]) -> None:
        handle.write(len(text).to_bytes(8, "little") + text)
        at, left = 0, sizes[order[0]] if order else 0
        for name, chunk in chunks:
            array = np.ascontiguousarray(chunk, shapes[name][0]) if name in shapes else None
            if array is None or (array.nbytes and (at >= len(order) or name != order[at] or array.nbytes > left)):
                raise ValueError(f"{path}: a chunk of {name!r} does not follow the declared layout")
            data = memoryview(array).cast("B")  # type: ignore[arg-type]
            sums.feed(name, data)
            handle.write(data)
            left -= array.nbytes
            if left == 0 and at < len(order):
                sums.end_block(name)
                at += 1
                left = sizes[order[at]] if at < len(order) else 0
        if at < len(order):
            raise ValueError(f"{path}: the chunks ended before every array was written")
        crcs = sums.arrays()
        for name in shapes:
            handle.write(crcs[name].tobytes())
        final = _layout_text(
            _with_checksums(shapes), header, {"blocks": blocks, "digest": Integrity.digest_of(shapes, crcs)}
        )
        handle.seek(8)
        handle.write(final)

    write_atomic_with(Path(path), fill)
    return Integrity(blocks, Integrity.digest_of(shapes, sums.arrays()))


def _layout_text(
    shapes: dict[str, tuple[np.dtype, tuple[int, ...]]], header: dict[str, Any], integrity: dict[str, Any]
) -> bytes:
    """The safetensors JSON header: each array's place, our header and the digest, padded to 8 bytes."""
    meta = {_HEADER_KEY: json.dumps({**header, _INTEGRITY_KEY: integrity}, sort_keys=True)}
    layout: dict[str, Any] = {"__metadata__": meta}
    offset = 0
    for name, (dtype, shape) in shapes.items():
        size = np.dtype(dtype).itemsize * math.prod(shape)
        layout[name] = {"dtype": _CODES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(layout).encode()
    return text + b" " * (-len(text) % 8)  # data starts 8-byte aligned, as safetensors writes it


def read_integrity(path: Path) -> Integrity | None:
    """A file's checksums, or None for a file written before they were (or by safetensors itself)."""
    return map_file(path)[2]


def damaged_rows(path: Path) -> dict[str, list[tuple[int, int]]]:
    """Every block whose bytes no longer match the checksum written with it: per array, (first row, end row)
    ranges. Reads the whole file (`indexer check`); a file without checksums has nothing to compare."""
    arrays, _, integrity = map_file(path)
    if integrity is None:
        return {}
    damaged: dict[str, list[tuple[int, int]]] = {}
    for name, array in arrays.items():
        rows, (_, count) = int(integrity.blocks.get(name, 0)), (integrity.places or {}).get(name, (0, -1))
        if rows < 1 or count != _blocks(array.shape, rows):  # checksums that do not fit: nothing can be trusted
            damaged[name] = [(0, len(array))]
            continue
        for number, crc in enumerate(integrity.checksums(name).tolist()):
            block = array[number * rows : (number + 1) * rows]
            if zlib.crc32(memoryview(np.ascontiguousarray(block)).cast("B")) != crc:  # type: ignore[arg-type]
                damaged.setdefault(name, []).append((number * rows, min(len(array), (number + 1) * rows)))
            if number % 1024 == 1023:
                release(array[(number - 1023) * rows : (number + 1) * rows])  # read through, not kept
    return damaged


def read_header(path: Path) -> dict[str, Any]:
    """Only the JSON header of a file (what made it, how many rows): no arrays are read."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            meta = json.loads(handle.read(size)).get("__metadata__", {})
        header = json.loads(meta.get(_HEADER_KEY, "{}"))
        header.pop(_INTEGRITY_KEY, None)
        return header
    except FileNotFoundError:
        raise
    except (ValueError, OSError, AttributeError) as exc:
        raise CorruptArtifactError(f"{path}: cannot be read ({exc}); delete it and re-run the indexer") from exc
