"""Stand-in models built through the production loading path (model hubs cannot be reached from here).

- a tiny OpenCLIP architecture (`open_clip.add_model_config`), loaded with pretrained=None, from a
  local-dir: folder, or through a registered pretrained tag whose preprocessing differs from the defaults;
- a tiny CLAP (`ClapModel(ClapConfig(...))`) whose feature extractor is the published
  laion/clap-htsat-unfused one (48 kHz, 64 mel bins, 10 s, rand_trunc + repeatpad), as a save_pretrained
  folder (`clap:/folder`) or in the Hugging Face cache under the real repo id;
- `publish()`: files put into a cache folder exactly as `hf download` leaves them
  (`models--ORG--NAME/blobs/SHA256`, `snapshots/REV/NAME -> ../../blobs/SHA256`, `refs/main` = REV), and
  `build_pretrained_cache()`: the whole `pretrained` profile in that layout, random values, with the
  published architecture for OpenCLIP ViT-B/32 (its tag fixes it) and, for CLAP, a tiny tower or (for
  the benchmark) the published HTSAT-unfused size.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

TINY_CLIP = "tiny-clip-test"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_TAG = "test_quickgelu_squash"  # a tag whose settings all differ from open_clip's defaults
TINY_TAG_REPO = "test-org/tiny-clip-quickgelu"
TINY_TAG_CFG = {
    "hf_hub": f"{TINY_TAG_REPO}/",
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "interpolation": "bilinear",
    "resize_mode": "squash",
    "quick_gelu": True,
}
CLIP_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
CLAP_REPO = "laion/clap-htsat-unfused"
# laion/clap-htsat-unfused's preprocessor_config.json
CLAP_PREPROCESSOR = {
    "chunk_length_s": 10,
    "feature_extractor_type": "ClapFeatureExtractor",
    "feature_size": 64,
    "fft_window_size": 1024,
    "frequency_max": 14000,
    "frequency_min": 50,
    "hop_length": 480,
    "max_length_s": 10,
    "n_fft": 1024,
    "nb_frequency_bins": 513,
    "nb_max_frames": 1000,
    "nb_max_samples": 480000,
    "padding": "repeatpad",
    "padding_side": "right",
    "padding_value": 0.0,
    "processor_class": "ClapProcessor",
    "return_attention_mask": False,
    "sampling_rate": 48000,
    "top_db": None,
    "truncation": "rand_trunc",
}


def register_tiny_clip(folder: Path) -> str:
    """Register the tiny architecture with open_clip and return its model name."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(path)
    return TINY_CLIP


def _random_state_dict(model_name: str, seed: int = 0, **kwargs: object) -> dict:
    """Random weights of `model_name`'s shapes without running its initialisers (ViT-B/32: ~1 s, not ~12 s)."""
    import open_clip
    import torch

    with torch.device("meta"):
        model = open_clip.create_model(model_name, pretrained=None, device="meta", **kwargs)
    generator = torch.Generator().manual_seed(seed)
    return {
        k: (torch.randn(v.shape, generator=generator) * 0.02).to(v.dtype)
        if v.is_floating_point()
        else torch.zeros(v.shape, dtype=v.dtype)
        for k, v in model.state_dict().items()
    }


def save_tiny_clip_dir(folder: Path) -> Path:
    """A local-dir: folder (open_clip_config.json + safetensors weights) for the tiny architecture."""
    import open_clip
    from safetensors.torch import save_file

    register_tiny_clip(folder.parent)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def publish(cache: Path, repo: str, files: dict[str, bytes | Path], revision: str | None = None) -> Path:
    """Files into `cache` (what HF_HUB_CACHE names) in the layout `hf download` leaves; the snapshot folder."""
    revision = revision or hashlib.sha1(repo.encode()).hexdigest()
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / revision
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    return snapshot


def register_tiny_tag(cache: Path, configs: Path) -> str:
    """A pretrained tag of the tiny architecture, published in `cache`; returns `MODEL/TAG`."""
    import open_clip
    from open_clip import pretrained as registry
    from safetensors.torch import save

    register_tiny_clip(configs)
    registry._PRETRAINED.setdefault(TINY_CLIP, {})[TINY_TAG] = registry._pcfg(**TINY_TAG_CFG)
    assert open_clip.get_pretrained_cfg(TINY_CLIP, TINY_TAG)["resize_mode"] == "squash"
    weights = _random_state_dict(TINY_CLIP, seed=1, force_quick_gelu=True)
    publish(cache, TINY_TAG_REPO, {"open_clip_model.safetensors": save(weights)})
    return f"{TINY_CLIP}/{TINY_TAG}"


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = ["a dog barks", "the digit seven", "spoken by george", "zero one two three four five six"]
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=32,
    )
    return fast, tok


def tiny_clap_config(fusion: bool = False, full_size: bool = False):
    """A tiny CLAP reading the published input (64 mel bins x 1,001 frames), or the published size."""
    from transformers import ClapConfig

    if full_size:  # transformers' defaults are laion/clap-htsat-unfused's architecture
        return ClapConfig(audio_config={"enable_fusion": fusion}, text_config={"vocab_size": 300})
    text = {
        "vocab_size": 300,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 40,
        "projection_dim": 16,
    }
    audio = {
        "hidden_size": 32,
        "depths": [1, 1],
        "num_attention_heads": [2, 2],
        "patch_embeds_hidden_size": 16,
        "window_size": 8,
        "spec_size": 256,
        "num_mel_bins": 64,
        "patch_stride": [4, 4],
        "patch_size": 4,
        "num_hidden_layers": 2,
        "projection_dim": 16,
        "enable_fusion": fusion,
    }
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=16)


def clap_files(fusion: bool = False, full_size: bool = False, seed: int = 0) -> dict[str, bytes | Path]:
    """The files of laion/clap-htsat-unfused by their published names (random weights, a tiny tokenizer)."""
    import torch
    from transformers import ClapModel

    torch.manual_seed(seed)
    model = ClapModel(tiny_clap_config(fusion, full_size))
    fast, tok = _tiny_tokenizer()
    folder = Path(tempfile.mkdtemp(prefix="clap-files-"))
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    tok.model.save(str(folder))  # vocab.json + merges.txt, as the published repo has them
    preprocessor = dict(CLAP_PREPROCESSOR, truncation="fusion" if fusion else "rand_trunc")
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "mask_token": "<mask>",
            }
        )
    )
    names = [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
    ]
    return {name: folder / name for name in names}


def save_tiny_clap_dir(folder: Path, fusion: bool = False) -> Path:
    """A folder holding a tiny random ClapModel and its processor, by the published file names."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in clap_files(fusion).items():
        (folder / name).write_bytes(path.read_bytes() if isinstance(path, Path) else path)
    return folder


def build_pretrained_cache(cache: Path, full_size_clap: bool = False) -> Path:
    """The `pretrained` profile's weights in `cache` (use it as HF_HOME/hub), random values, published names.

    OpenCLIP's tag fixes the ViT-B/32 architecture: its file is the full ~600 MB."""
    import shutil

    from safetensors.torch import save_file

    files = clap_files(full_size=full_size_clap)
    publish(cache, CLAP_REPO, files)
    shutil.rmtree(next(iter(files.values())).parent, ignore_errors=True)  # type: ignore[union-attr]
    folder = Path(tempfile.mkdtemp(prefix="clip-files-"))
    save_file(_random_state_dict("ViT-B-32"), str(folder / "open_clip_model.safetensors"))
    publish(cache, CLIP_REPO, {"open_clip_model.safetensors": folder / "open_clip_model.safetensors"})
    (folder / "open_clip_model.safetensors").unlink()
    return cache
