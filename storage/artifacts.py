"""Atomic, self-describing files: named arrays plus a JSON header, in one safetensors file.

Both vector tables and FAISS indexes are written this way, so a crash can never leave a half-written
file behind (temporary file, fsync, rename) and every file says what made it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{TEMP_MARKER}-{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
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
