"""The encoder contract: a named space, the modalities it reads, and a batched `encode()`."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from retrieval.errors import InvalidInputError, WeightsNotFoundError
from retrieval.linalg import l2_normalise
from retrieval.media import Modality, Waveform
from storage.errors import EncoderMismatchError

__all__ = ["Encoder", "EncoderInfo", "WeightsNotFoundError"]

Progress = Callable[[int], None]
"""Called with the number of inputs just finished, so the CLI can drive tqdm and the UI st.progress."""


def hub_cache_folder(repo: str) -> str:
    """Where the Hugging Face cache keeps `repo` on this machine (what `hf download` fills)."""
    from huggingface_hub import constants

    return os.path.join(constants.HF_HUB_CACHE, "models--" + repo.replace("/", "--"))


def hub_download_hint(repo: str, files: Sequence[str] = ()) -> str:
    """The command that puts `repo` where we look, for the huggingface_hub installed here (`hf`, which
    replaced `huggingface-cli` in huggingface_hub 1.0), and how to carry it to an offline machine."""
    from huggingface_hub import constants

    command = " ".join(["hf download", repo, *files])
    return (
        f"On a machine that can reach huggingface.co run `{command}`; it fills "
        f"{hub_cache_folder(repo)} when HF_HOME is the same there ({constants.HF_HOME}), otherwise copy the "
        f"folder models--{repo.replace('/', '--')} from that machine's HF_HOME/hub into {constants.HF_HUB_CACHE}."
    )


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
        if modality == "audio":
            self._check_rates(inputs)
        size = batch_size or self.batch_size
        out = np.zeros((len(inputs), self.dim), np.float32)
        for start in range(0, len(inputs), size):
            batch = inputs[start : start + size]
            out[start : start + len(batch)] = self._encode_batch(modality, batch)
            if progress is not None:
                progress(len(batch))
        return l2_normalise(out)

    def finds_nothing(self, modality: Modality, inputs: Sequence[Any]) -> list[bool]:
        """Which inputs hold nothing this encoder reads (a speech encoder: a recording without a voice). A
        query leaves such an input out, as it does a flat one. Encoders that cannot tell find something
        in every input."""
        return [False] * len(inputs)

    def _check_rates(self, inputs: Sequence[Any]) -> None:
        """Audio decoded at another rate would be read as if slowed down or sped up, with no error: a bug."""
        wrong = {w.sample_rate for w in inputs if isinstance(w, Waveform) and w.sample_rate != self.sample_rate}
        if wrong:
            raise RuntimeError(
                f"encoder {self.name} reads audio at {self.sample_rate} Hz but was given audio at {sorted(wrong)} Hz; "
                "decode it with retrieval.media.load_audio_rates for every encoder's rate"
            )

    @abstractmethod
    def _encode_batch(self, modality: Modality, batch: Sequence[Any]) -> np.ndarray:
        """Raw vectors for one batch; `encode` normalises them."""


def refuse_changed_encoder(collection: str, name: str, dim: int, preprocessing: str, encoder: Encoder) -> None:
    """The encoder guard, written once: vectors stored as (`dim`, `preprocessing`) must not meet an encoder
    that now makes other ones (new weights, another architecture, other preprocessing) under the same name."""
    if (dim, preprocessing) != (encoder.dim, encoder.preprocessing):
        raise EncoderMismatchError(
            f"collection {collection!r} was indexed with {name} (dimension {dim}, preprocessing {preprocessing}); "
            f"the encoder now gives dimension {encoder.dim}, preprocessing {encoder.preprocessing}. "
            f"`python -m indexer SOURCE --collection {collection} --migrate` encodes its "
            f"{' and '.join(encoder.modalities)} again with it (the rest is kept)."
        )
