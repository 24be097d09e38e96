"""Audio and text in one CLAP space through transformers' `ClapModel`, weights from disk only.

Names: `clap:laion/clap-htsat-unfused` (a Hugging Face name, looked up in the local cache) or
`clap:/path/to/folder` (a `save_pretrained` folder with the model and its processor). The audio input
is computed by `clap_features.ClapLogMel` (torch, batched, deterministic for long clips), not by the
processor's numpy extractor; the processor still supplies its settings and the tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from retrieval.device import get_device, half_precision
from retrieval.encoders.base import Encoder, WeightsNotFoundError, hub_cache_folder, hub_download_hint
from retrieval.encoders.clap_features import ClapLogMel
from retrieval.encoders.registry import DEFAULT_CLAP, register_encoder
from retrieval.media import Modality, Waveform

DEFAULT_MODEL = DEFAULT_CLAP


def _features(output: object) -> torch.Tensor:
    """transformers 5 returns a model output whose pooler_output holds the projected vectors."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]


def _is_local(source: str) -> bool:
    return source.startswith((os.sep, ".", "~")) or os.path.isdir(source) or source.count("/") != 1


def weights_not_found(source: str, exc: Exception) -> WeightsNotFoundError:
    if _is_local(source):
        return WeightsNotFoundError(
            f"CLAP model {source!r}",
            [os.path.abspath(os.path.expanduser(source))],
            "That folder must hold a ClapModel and its processor (ClapModel.save_pretrained(FOLDER) and "
            f"ClapProcessor.save_pretrained(FOLDER)): config.json, model.safetensors, preprocessor_config.json "
            f"and the tokenizer files. ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
        )
    return WeightsNotFoundError(
        f"CLAP model {source!r}",
        [hub_cache_folder(source)],
        hub_download_hint(source) + " Or save it to a folder and name that: clap:/path/to/folder.",
    )


class ClapEncoder(Encoder):
    modalities = ("audio", "text")
    preprocessing = "clap-logmel-torch-windows10s"
    batch_size = 16

    def __init__(self, source: str, device: str | None = None) -> None:
        from transformers import ClapModel, ClapProcessor

        self.device = get_device(device)
        try:
            self.processor = ClapProcessor.from_pretrained(source, local_files_only=True)
            model = ClapModel.from_pretrained(source, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise weights_not_found(source, exc) from exc
        model = model.half() if half_precision(self.device) else model
        self.model = model.to(self.device).eval()  # type: ignore[arg-type]  # transformers types .to oddly
        self.log_mel = ClapLogMel(self.processor.feature_extractor, self.device)
        self.sample_rate = self.log_mel.rate
        self.weights = source
        self.dim = int(model.config.projection_dim)

    @torch.inference_mode()
    def _encode_batch(self, modality: Modality, batch: Sequence) -> np.ndarray:
        if modality == "audio":
            return self._encode_audio(
                [w.samples if isinstance(w, Waveform) else np.asarray(w, np.float32) for w in batch]
            )
        inputs = self.processor(text=list(batch), padding=True, truncation=True, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        return _features(self.model.get_text_features(**inputs)).float().cpu().numpy()

    def _encode_audio(self, clips: list[np.ndarray]) -> np.ndarray:
        """One vector per clip: the unit-length mean of its windows' vectors (one window up to 10 s)."""
        inputs = self.log_mel(clips)
        dtype = torch.float16 if half_precision(self.device) else torch.float32
        rows = []
        for start in range(0, len(inputs.owner), self.batch_size):
            part = slice(start, start + self.batch_size)
            out = self.model.get_audio_features(
                input_features=inputs.features[part].to(dtype), is_longer=inputs.is_longer[part]
            )
            rows.append(torch.nn.functional.normalize(_features(out).float(), dim=-1))
        vectors = torch.cat(rows).cpu().numpy()
        out_vectors = np.zeros((len(clips), vectors.shape[1]), np.float32)
        np.add.at(out_vectors, inputs.owner, vectors)
        return out_vectors


@register_encoder("clap", f"audio + text: CLAP via transformers (e.g. clap:{DEFAULT_MODEL}; weights from disk)")
def _clap(argument: str | None, device: str | None) -> Encoder:
    return ClapEncoder(argument or DEFAULT_MODEL, device)
