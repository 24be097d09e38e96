"""The encoder contract: a named space, the modalities it reads, and a batched `encode()`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from retrieval.errors import InvalidInputError, WeightsNotFoundError
from retrieval.media import Modality

__all__ = ["Encoder", "EncoderInfo", "WeightsNotFoundError"]

Progress = Callable[[int], None]
"""Called with the number of inputs just finished, so the CLI can drive tqdm and the UI st.progress."""


@dataclass(frozen=True)
class EncoderInfo:
    """What the database records about an encoder, and what a mismatch is checked against."""

    name: str
    dim: int
    modalities: tuple[str, ...]
    weights: str | None
    preprocessing: str


class Encoder(ABC):
    """Turns decoded media into L2-normalised float32 vectors of one space, named `name`.

    Inputs are already decoded (`retrieval.media`): PIL images, `Waveform`s at `sample_rate`, strings.
    Encoders of the same name always give comparable vectors; that is what a *space* is.
    """

    name: str
    dim: int
    modalities: tuple[Modality, ...]
    weights: str | None = None
    preprocessing: ClassVar[str] = "1"
    sample_rate: int = 16_000
    batch_size: int = 32

    @property
    def info(self) -> EncoderInfo:
        return EncoderInfo(self.name, self.dim, tuple(self.modalities), self.weights, self.preprocessing)

    def encode(
        self,
        modality: Modality,
        inputs: Sequence[Any],
        *,
        batch_size: int | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        if modality not in self.modalities:
            raise InvalidInputError(
                f"encoder {self.name} does not read {modality} (it reads {', '.join(self.modalities)})"
            )
        size = batch_size or self.batch_size
        out = np.zeros((len(inputs), self.dim), np.float32)
        for start in range(0, len(inputs), size):
            batch = inputs[start : start + size]
            out[start : start + len(batch)] = self._encode_batch(modality, batch)
            if progress is not None:
                progress(len(batch))
        return l2_normalise(out)

    @abstractmethod
    def _encode_batch(self, modality: Modality, batch: Sequence[Any]) -> np.ndarray:
        """Raw vectors for one batch; `encode` normalises them."""


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
