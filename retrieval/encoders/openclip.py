"""Image and text in one CLIP space through open_clip, with weights found on disk, never downloaded.

Names: `openclip:MODEL/TAG` (a pretrained tag, looked up in the Hugging Face cache),
`openclip:MODEL/PATH` (a local checkpoint file), `openclip:local-dir:/folder` (open_clip_config.json
plus weights), or `openclip:MODEL` alone (random weights: tests and speed measurements only).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from retrieval.device import get_device, half_precision
from retrieval.encoders.base import Encoder, WeightsNotFoundError
from retrieval.encoders.registry import DEFAULT_CLIP, register_encoder
from retrieval.media import Modality

DEFAULT_MODEL = DEFAULT_CLIP


def parse_openclip_name(argument: str) -> tuple[str, str | None]:
    """`MODEL/TAG_OR_PATH` -> (model, pretrained); schema names (local-dir:, hf-hub:) pass through whole."""
    if argument.startswith(("local-dir:", "hf-hub:")):
        return argument, None
    model, _, pretrained = argument.partition("/")
    return model, (pretrained or None)


def resolve_pretrained(model: str, pretrained: str) -> str:
    """A local file for `pretrained`: the path itself, or the tag's file in the Hugging Face cache."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    if os.path.isfile(pretrained):
        return pretrained
    cfg = open_clip.get_pretrained_cfg(model, pretrained)
    if not cfg:
        raise WeightsNotFoundError(
            f"open_clip {model} with pretrained={pretrained!r}",
            [pretrained],
            f"It is neither a file nor a known tag. Known tags: {open_clip.list_pretrained_tags_by_model(model)}",
        )
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        repo, filename = os.path.split(hub)  # "org/model/" means the default file names
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo, name)
            looked.append(f"Hugging Face cache: {repo}/{name}")
            if isinstance(found, str):
                return found
    raise WeightsNotFoundError(
        f"open_clip {model}/{pretrained}",
        looked,
        "Model hubs cannot be reached from here. On a connected machine run "
        f"`huggingface-cli download {hub.rstrip('/') or 'REPO'}` and copy the cache (HF_HOME), or give a "
        f"file: openclip:{model}/PATH/TO/open_clip_model.safetensors, or a folder: openclip:local-dir:PATH.",
    )


class OpenClipEncoder(Encoder):
    modalities = ("image", "text")
    preprocessing = "open_clip-default"

    def __init__(self, argument: str, device: str | None = None) -> None:
        import open_clip

        model_name, pretrained = parse_openclip_name(argument)
        if model_name.startswith("local-dir:") and not Path(model_name.removeprefix("local-dir:")).is_dir():
            raise WeightsNotFoundError(
                f"open_clip {model_name}",
                [model_name.removeprefix("local-dir:")],
                "The folder does not exist; it must hold open_clip_config.json and weights.",
            )
        checkpoint = resolve_pretrained(model_name, pretrained) if pretrained else None
        self.device = get_device(device)
        precision = "fp16" if half_precision(self.device) else "fp32"
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=checkpoint, device=self.device, precision=precision
        )
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.weights = checkpoint or (model_name if model_name.startswith("local-dir:") else None)
        self.dim = int(
            self.model.text_projection.shape[1]
            if hasattr(self.model, "text_projection") and self.model.text_projection is not None
            else self._probe_dim()
        )

    def _probe_dim(self) -> int:
        with torch.inference_mode():
            return int(self.model.encode_text(self.tokenizer(["probe"]).to(self.device)).shape[-1])

    @torch.inference_mode()
    def _encode_batch(self, modality: Modality, batch: Sequence) -> np.ndarray:
        if modality == "image":
            pixels = torch.stack(
                [self.preprocess(image.convert("RGB") if isinstance(image, Image.Image) else image) for image in batch]
            ).to(self.device)
            if half_precision(self.device):
                pixels = pixels.half()
            features = self.model.encode_image(pixels)
        else:
            features = self.model.encode_text(self.tokenizer(list(batch)).to(self.device))
        return features.float().cpu().numpy()


@register_encoder("openclip", f"image + text: OpenCLIP (e.g. openclip:{DEFAULT_MODEL}; weights from disk)")
def _openclip(argument: str | None, device: str | None) -> Encoder:
    return OpenClipEncoder(argument or DEFAULT_MODEL, device)
