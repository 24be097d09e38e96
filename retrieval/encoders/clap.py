"""Audio and text in one CLAP space through transformers' `ClapModel`, weights from disk only.

Names: `clap:laion/clap-htsat-unfused` (a Hugging Face name, looked up in the local cache) or
`clap:/path/to/folder` (a `save_pretrained` folder with the model and its processor).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from retrieval.device import get_device, half_precision
from retrieval.encoders.base import Encoder, WeightsNotFoundError
from retrieval.encoders.registry import DEFAULT_CLAP, register_encoder
from retrieval.media import Modality, Waveform

DEFAULT_MODEL = DEFAULT_CLAP


def _features(output: object) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output holds the projected vectors."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]


class ClapEncoder(Encoder):
    modalities = ("audio", "text")
    preprocessing = "clap-processor"
    batch_size = 16

    def __init__(self, source: str, device: str | None = None) -> None:
        from transformers import ClapModel, ClapProcessor

        self.device = get_device(device)
        try:
            self.processor = ClapProcessor.from_pretrained(source, local_files_only=True)
            model = ClapModel.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise WeightsNotFoundError(
                f"CLAP model {source!r}",
                [source, "the Hugging Face cache (HF_HOME)"],
                "Model hubs cannot be reached from here. Download it on a connected machine "
                f"(`huggingface-cli download {source}`) and copy the cache, or save it with "
                "ClapModel.save_pretrained + ClapProcessor.save_pretrained and name the folder: clap:/path.",
            ) from exc
        model = model.half() if half_precision(self.device) else model
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # transformers' stub types .to oddly
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self.weights = source
        self.dim = int(model.config.projection_dim)

    @torch.inference_mode()
    def _encode_batch(self, modality: Modality, batch: Sequence) -> np.ndarray:
        if modality == "audio":
            waves = [w.samples if isinstance(w, Waveform) else np.asarray(w, np.float32) for w in batch]
            inputs = self.processor(audio=waves, sampling_rate=self.sample_rate, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            if half_precision(self.device):
                inputs["input_features"] = inputs["input_features"].half()
            features = _features(self.model.get_audio_features(**inputs))
        else:
            inputs = self.processor(text=list(batch), padding=True, truncation=True, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            features = _features(self.model.get_text_features(**inputs))
        return features.float().cpu().numpy()


@register_encoder("clap", f"audio + text: CLAP via transformers (e.g. clap:{DEFAULT_MODEL}; weights from disk)")
def _clap(argument: str | None, device: str | None) -> Encoder:
    return ClapEncoder(argument or DEFAULT_MODEL, device)
