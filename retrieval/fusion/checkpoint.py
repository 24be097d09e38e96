"""Learned-fusion checkpoints: safetensors weights plus a JSON header that says what they need.

The header names the strategy, every input field with its encoder and dimension, the hyper-parameters
and what it was trained on. Loading into a space made by other encoders is refused with a message.
No pickle is ever loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from retrieval.errors import NotFoundError
from retrieval.fusion.modules import FusionModule, build_module
from retrieval.profiles import Field
from storage import CorruptArtifactError, EncoderMismatchError, StorageError
from storage.artifacts import load_arrays, save_arrays
from storage.errors import WRITE_ERRNOS

FORWARD_BATCH = 4096  # rows per torch forward pass when fusing a collection: bounds the activations' memory
_BLAS = ThreadpoolController().select(user_api="blas").lib_controllers


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Tiny matrix products on one thread: idle BLAS threads spin and slow the FAISS search that
    follows (measured: a 0.3 ms search became 4 ms on two cores). Sets the libraries' thread counts
    directly: threadpoolctl's `limit` re-inspects every library on each call (40 us a query)."""
    before = [lib.get_num_threads() for lib in _BLAS]
    for lib in _BLAS:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, threads in zip(_BLAS, before):
            lib.set_num_threads(threads)


def first_problem(exc: BaseException) -> str:
    """The first problem of a report that lists many (torch's load_state_dict gives one line per tensor)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = [line for line in lines[1:] if not line.endswith(":")] or lines
    more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
    return (detail[0] if detail else type(exc).__name__) + more


@dataclass
class FusionCheckpoint:
    strategy: str
    fields: list[Field]
    dims: list[int]
    module: FusionModule
    means: list[np.ndarray] | None = None  # per-field centring, subtracted before fusion
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def digest(self) -> str:
        """Content hash of the file: names the index built with it (computed once)."""
        if not hasattr(self, "_digest"):
            self._digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:16] if self.path else "unsaved"
        return self._digest

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays = {f"module.{k}": v.detach().cpu().numpy() for k, v in self.module.state_dict().items()}
        for i, mean in enumerate(self.means or []):
            arrays[f"mean.{i}"] = mean.astype(np.float32)
        header = {
            "strategy": self.strategy,
            "module": self.module.config(),
            "meta": self.meta,
            "fields": [
                {"modality": f.modality, "encoder": f.encoder, "dim": d} for f, d in zip(self.fields, self.dims)
            ],
            "centred": self.means is not None,
        }
        try:
            save_arrays(path, arrays, header)
        except OSError as exc:  # a full disk, a read-only folder: the environment's, said in one line
            if exc.errno not in WRITE_ERRNOS:
                raise
            raise StorageError(
                f"cannot write the checkpoint {path}: {exc.strerror}; nothing was saved or registered "
                "(no half-written file is left): free some space, or choose another --out, and train again"
            ) from exc
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> FusionCheckpoint:
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"checkpoint {path} not found")
        try:  # a file the user named: never advise deleting it, as for the indexer's own files
            arrays, header = load_arrays(path)
        except CorruptArtifactError as exc:
            raise CorruptArtifactError(
                f"{path}: not a fusion checkpoint of this program ({exc.__cause__ or 'unreadable'}); "
                "name one that `python -m retrieval train` wrote"
            ) from None
        try:
            return cls._from_arrays(path, arrays, header)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:  # the file's content, not code
            raise CorruptArtifactError(
                f"{path}: a safetensors file, but not a fusion checkpoint of this program "
                f"({type(exc).__name__}: {first_problem(exc)}); name one that `python -m retrieval train` wrote"
            ) from None

    @classmethod
    def _from_arrays(cls, path: Path, arrays: dict[str, np.ndarray], header: dict) -> FusionCheckpoint:
        module = build_module(header["module"])
        state = {
            k.removeprefix("module."): torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("module.")
        }
        module.load_state_dict(state)
        fields = [Field(f["modality"], f["encoder"]) for f in header["fields"]]
        means = [arrays[f"mean.{i}"] for i in range(len(fields))] if header.get("centred") else None
        return cls(
            header["strategy"],
            fields,
            [f["dim"] for f in header["fields"]],
            module.eval(),
            means,
            header.get("meta", {}),
            path,
        )

    def check(self, fields: list[Field], dims: dict[str, int]) -> None:
        """Refuse a space whose fields or dimensions differ from the ones this was trained on."""
        wanted = {f.key: d for f, d in zip(self.fields, self.dims)}
        have = {f.key: dims.get(f.key) for f in fields}
        if wanted != have:
            raise EncoderMismatchError(
                f"checkpoint {self.path} was trained on fields {wanted}; this collection has {have}. "
                "Train a checkpoint on a collection encoded with the same encoders."
            )

    def prepare(self, blocks: list[np.ndarray], mask: np.ndarray) -> list[np.ndarray]:
        """Centre present blocks (when trained so) and zero absent ones: training and use share this."""
        means = self.means or [np.zeros(b.shape[1], np.float32) for b in blocks]
        return [np.where(mask[:, [i]], b - m, 0.0).astype(np.float32) for i, (b, m) in enumerate(zip(blocks, means))]

    def fuse_query(self, blocks: list[np.ndarray], masks: np.ndarray) -> np.ndarray:
        """One query's blocks (one row each) fused under each row of `masks`: the query and its variants.

        The numpy forward pass broadcasts the single row against the masks (absent fields are masked
        inside every module, so they need not be zeroed); a module without one gets the rows repeated.
        """
        if len(masks) <= 16:
            means: list[np.ndarray | None] = list(self.means) if self.means else [None] * len(blocks)
            centred = [np.asarray(b if m is None else b - m, np.float32) for b, m in zip(blocks, means)]
            with one_blas_thread():
                fused = self.module.forward_numpy(centred, masks)
            if fused is not None:
                return fused.astype(np.float32)
        return self.fuse([np.repeat(b, len(masks), axis=0) for b in blocks], masks)

    @torch.inference_mode()
    def fuse(self, blocks: list[np.ndarray], mask: np.ndarray, batch: int = FORWARD_BATCH) -> np.ndarray:
        """Fused, normalised vectors for rows of field blocks (zeros where `mask` is False)."""
        blocks = self.prepare(blocks, mask)
        out = []
        for start in range(0, len(mask), batch):
            part = [torch.from_numpy(np.ascontiguousarray(b[start : start + batch], np.float32)) for b in blocks]
            out.append(self.module(part, torch.from_numpy(mask[start : start + batch])).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.module.out_dim), np.float32)
