"""Atomic, self-describing files: named arrays plus a JSON header, in one safetensors file.

Both vector tables and FAISS indexes are written this way, so a crash can never leave a half-written
file behind (temporary file, fsync, rename) and every file says what made it. Large files can be written
a chunk at a time (`write_streamed`) and read without loading them (`map_arrays`: each array is a
memory map at its offset in the file, so a reader's memory grows with the rows it touches).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from storage.errors import CorruptArtifactError

_HEADER_KEY = "header"
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


_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}
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
    path = Path(path)
    try:
        layout, start = read_layout(path)
        total = path.stat().st_size
        arrays: dict[str, np.ndarray] = {}
        for name, spec in layout.items():
            if name == "__metadata__":
                continue
            dtype, shape = np.dtype(_DTYPES[spec["dtype"]]), tuple(int(n) for n in spec["shape"])
            begin, end = (int(n) for n in spec["data_offsets"])
            if end - begin != dtype.itemsize * int(np.prod(shape)) or start + end > total:
                raise ValueError(f"array {name!r} does not fit the file (offsets {begin}..{end}, {total} bytes)")
            empty = end == begin
            arrays[name] = (
                np.zeros(shape, dtype) if empty else np.memmap(path, dtype, mode="c", offset=start + begin, shape=shape)
            )
        meta = layout.get("__metadata__", {})
        return arrays, json.loads(meta.get(_HEADER_KEY, "{}"))
    except FileNotFoundError:
        raise
    except (KeyError, ValueError, OSError) as exc:
        raise CorruptArtifactError(f"{path}: cannot be read ({exc}); delete it and re-run the indexer") from exc


def write_streamed(
    path: Path,
    shapes: dict[str, tuple[np.dtype, tuple[int, ...]]],
    chunks: Iterable[tuple[str, np.ndarray]],
    header: dict[str, Any],
) -> None:
    """Write a safetensors file whose arrays arrive as (name, chunk) pairs in the order of `shapes`, so a
    table larger than memory is written without holding it; atomically, like `save_arrays`. A chunk stream
    that is short, long or out of order is refused (and the previous file stays)."""
    layout: dict[str, Any] = {"__metadata__": {_HEADER_KEY: json.dumps(header, sort_keys=True)}}
    offset = 0
    for name, (dtype, shape) in shapes.items():
        size = np.dtype(dtype).itemsize * int(np.prod(shape))
        layout[name] = {"dtype": _CODES[np.dtype(dtype)], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(layout).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned, as safetensors writes it

    sizes = {name: spec["data_offsets"][1] - spec["data_offsets"][0] for name, spec in list(layout.items())[1:]}
    order = [name for name, size in sizes.items() if size]

    def fill(handle: IO[bytes]) -> None:
        handle.write(len(text).to_bytes(8, "little") + text)
        at, left = 0, sizes[order[0]] if order else 0
        for name, chunk in chunks:
            array = np.ascontiguousarray(chunk, shapes[name][0]) if name in shapes else None
            if array is None or (array.nbytes and (at >= len(order) or name != order[at] or array.nbytes > left)):
                raise ValueError(f"{path}: a chunk of {name!r} does not follow the declared layout")
            handle.write(array.tobytes() if array.nbytes < 1 << 20 else memoryview(array).cast("B"))  # type: ignore[arg-type]
            left -= array.nbytes
            if left == 0 and at < len(order):
                at += 1
                left = sizes[order[at]] if at < len(order) else 0
        if at < len(order):
            raise ValueError(f"{path}: the chunks ended before every array was written")

    write_atomic_with(Path(path), fill)


def read_header(path: Path) -> dict[str, Any]:
    """Only the JSON header of a file (what made it, how many rows): no arrays are read."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            meta = json.loads(handle.read(size)).get("__metadata__", {})
        return json.loads(meta.get(_HEADER_KEY, "{}"))
    except FileNotFoundError:
        raise
    except (ValueError, OSError, AttributeError) as exc:
        raise CorruptArtifactError(f"{path}: cannot be read ({exc}); delete it and re-run the indexer") from exc
