"""Tiny, randomly initialised OpenCLIP and CLAP models built through the production loading path.

Model hubs cannot be reached, so the tests register a tiny open_clip architecture
(`open_clip.add_model_config`, loaded with pretrained=None or from a local-dir: folder) and save a tiny
`ClapModel(ClapConfig(...))` with its processor to a folder that `clap:/folder` loads.
"""

from __future__ import annotations

import json
from pathlib import Path

TINY_CLIP = "tiny-clip-test"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def register_tiny_clip(folder: Path) -> str:
    """Register the tiny architecture with open_clip and return its model name."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TINY_CLIP}.json"
    path.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(path)
    return TINY_CLIP


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
    return RobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=32,
    )


def save_tiny_clap_dir(folder: Path) -> Path:
    """A save_pretrained folder holding a tiny random ClapModel and a matching ClapProcessor."""
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

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
        "window_size": 4,
        "spec_size": 64,
        "num_mel_bins": 16,
        "patch_stride": [4, 4],
        "patch_size": 4,
        "num_hidden_layers": 2,
        "projection_dim": 16,
    }
    config = ClapConfig(text_config=text, audio_config=audio, projection_dim=16)
    model = ClapModel(config)
    extractor = ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=16000,
        hop_length=160,
        fft_window_size=400,
        max_length_s=2,
        nb_frequency_bins=201,
        frequency_max=8000,
        truncation="rand_trunc",
        padding="repeatpad",
    )
    processor = ClapProcessor(feature_extractor=extractor, tokenizer=_tiny_tokenizer())
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
