"""Image and text in one CLIP space through open_clip, with weights found on disk, never downloaded.

Names: `openclip:MODEL/TAG` (a pretrained tag, looked up in the Hugging Face cache),
`openclip:MODEL/PATH` (a local checkpoint file), `openclip:local-dir:/folder` (open_clip_config.json
plus weights), or `openclip:MODEL` alone (random weights: tests and speed measurements only).

A tag is resolved to its cached file *and* its pretrained config: open_clip applies a tag's image
mean/std, interpolation, resize mode and QuickGELU only when it is given the tag, so they are passed on
explicitly (`image_mean`/`image_std`/`image_interpolation`/`image_resize_mode`, which open_clip
merges into `force_preprocess_cfg`, and `force_quick_gelu`); 108 of open_clip 3.3's 196 tags differ there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from retrieval.device import get_device, half_precision
from retrieval.encoders.base import Encoder, WeightsNotFoundError, hub_cache_folder, hub_download_hint
from retrieval.encoders.image_preprocess import TorchImagePreprocess
from retrieval.encoders.registry import DEFAULT_CLIP, register_encoder
from retrieval.media import Modality

DEFAULT_MODEL = DEFAULT_CLIP
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's default names


def parse_openclip_name(argument: str) -> tuple[str, str | None]:
    """`MODEL/TAG_OR_PATH` -> (model, pretrained); schema names (local-dir:, hf-hub:) pass through whole."""
    if argument.startswith(("local-dir:", "hf-hub:")):
        return argument, None
    model, _, pretrained = argument.partition("/")
    return model, (pretrained or None)


def tag_config(model: str, pretrained: str) -> dict[str, Any]:
    """open_clip's pretrained config of a tag ({} for a file path or an unknown tag)."""
    import open_clip

    if os.path.isfile(pretrained):
        return {}
    return dict(open_clip.get_pretrained_cfg(model, pretrained) or {})


def resolve_pretrained(model: str, pretrained: str) -> str:
    """A local file for `pretrained`: the path itself, or the tag's file in the Hugging Face cache."""
    import open_clip
    from huggingface_hub import try_to_load_from_cache

    if os.path.isfile(pretrained):
        return pretrained
    cfg = tag_config(model, pretrained)
    if not cfg:
        looks_like_path = os.sep in pretrained or pretrained.endswith((".safetensors", ".bin", ".pt", ".pth"))
        raise WeightsNotFoundError(
            f"open_clip {model} with pretrained={pretrained!r}",
            [pretrained],
            "No such file."
            if looks_like_path
            else f"It is neither a file nor a known tag. Known tags: {open_clip.list_pretrained_tags_by_model(model)}",
        )
    hub = cfg.get("hf_hub", "")
    if not hub:
        raise WeightsNotFoundError(
            f"open_clip {model}/{pretrained}",
            [],
            f"This tag is published only as a URL ({cfg.get('url')}); download that file elsewhere and name it: "
            f"openclip:{model}/PATH/TO/FILE.",
        )
    repo, filename = os.path.split(hub)  # "org/model/" means open_clip's default file names
    names = [filename] if filename else list(WEIGHT_NAMES)
    for name in names:
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return found
    raise WeightsNotFoundError(
        f"open_clip {model}/{pretrained} (Hugging Face repo {repo})",
        [f"{hub_cache_folder(repo)} (files: {', '.join(names)})"],
        hub_download_hint(repo, [filename or "open_clip_pytorch_model.bin"])
        + f" Or name a file: openclip:{model}/PATH/TO/{names[0]}, or a folder: openclip:local-dir:PATH.",
    )


def describe_preprocessing(model: torch.nn.Module) -> str:
    """What the database records: "open_clip-default", or the settings that differ from open_clip's defaults
    (so vectors made with another tag's mean/std or resize mode are never mixed with these)."""
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg

    final = getattr(model.visual, "preprocess_cfg", {}) if hasattr(model, "visual") else {}
    defaults = asdict(PreprocessCfg())
    differ = {
        k: (tuple(round(x, 4) for x in v) if isinstance(v, (list, tuple)) else v)
        for k, v in final.items()
        if k in ("mean", "std", "interpolation", "resize_mode")
        and tuple(np.atleast_1d(v)) != tuple(np.atleast_1d(defaults[k]))
    }
    from open_clip.transformer import QuickGELU

    quick = "+quickgelu" if any(isinstance(m, QuickGELU) for m in model.modules()) else ""
    return (
        "open_clip-default" if not differ else "open_clip:" + ",".join(f"{k}={v}" for k, v in sorted(differ.items()))
    ) + quick


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
        self.device = get_device(device)
        checkpoint = resolve_pretrained(model_name, pretrained) if pretrained else None
        cfg = tag_config(model_name, pretrained) if pretrained else {}
        precision = "fp16" if half_precision(self.device) else "fp32"
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=checkpoint,
            device=self.device,
            precision=precision,
            force_quick_gelu=bool(cfg.get("quick_gelu", False)),
            image_mean=cfg.get("mean"),  # create_model_and_transforms' names for force_preprocess_cfg
            image_std=cfg.get("std"),
            image_interpolation=cfg.get("interpolation"),
            image_resize_mode=cfg.get("resize_mode"),
        )
        self.model = model.eval()
        self.preprocess = preprocess  # the reference (PIL) transform; `pixels` computes the same in torch
        self.preprocessing = describe_preprocessing(model)  # type: ignore[misc]  # per tag, not per class
        self.pixels = TorchImagePreprocess.from_open_clip(model, preprocess, self.device)
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
            images = [image if isinstance(image, Image.Image) else Image.fromarray(image) for image in batch]
            pixels = self.pixels(images)
            if half_precision(self.device):
                pixels = pixels.half()
            features = self.model.encode_image(pixels)
        else:
            features = self.model.encode_text(self.tokenizer(list(batch)).to(self.device))
        return features.float().cpu().numpy()


@register_encoder("openclip", f"image + text: OpenCLIP (e.g. openclip:{DEFAULT_MODEL}; weights from disk)")
def _openclip(argument: str | None, device: str | None) -> Encoder:
    return OpenClipEncoder(argument or DEFAULT_MODEL, device)
