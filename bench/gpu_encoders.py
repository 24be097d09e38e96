"""Encoder throughput on a CUDA GPU in fp16, with the real architectures and random weights.

Needs only torch, transformers and numpy (no FAISS, no network, no weights): CLIP ViT-B/32 (image and
text towers), CLAP HTSAT-unfused (audio and text) and MiniLM-L6 (text). Alongside, the CPU side of the
pipeline for the same items (CLAP's log-mel feature extraction, image resizing and normalisation) is
timed with a thread pool, so the report shows what share of the GPU's rate the pipeline can feed; and the
project's own torch preprocessing (batched, on the GPU) next to it.

    python bench/gpu_encoders.py [--seconds 8] [--out FILE.json]

Prints JSON and a markdown table; runs in well under five minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import torch


def timed(fn: Callable[[], int], seconds: float) -> tuple[float, int]:
    """Run `fn` (returning items done) repeatedly for about `seconds`; items per second and calls."""
    fn()  # warm-up: kernels, allocator, cuDNN autotune
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started, items, calls = time.perf_counter(), 0, 0
    while time.perf_counter() - started < seconds:
        items += fn()
        calls += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return items / (time.perf_counter() - started), calls


def models(device: torch.device, dtype: torch.dtype) -> dict:
    from transformers import BertConfig, BertModel, ClapConfig, ClapModel, CLIPConfig, CLIPModel

    # transformers types .to oddly (as retrieval/encoders/clap.py says)
    clip = CLIPModel(CLIPConfig(vision_config={"patch_size": 32})).to(device, dtype).eval()  # type: ignore[arg-type]
    clap = ClapModel(ClapConfig()).to(device, dtype).eval()  # type: ignore[arg-type]
    minilm = (
        BertModel(BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536))
        .to(device, dtype)  # type: ignore[arg-type]
        .eval()
    )
    return {"clip": clip, "clap": clap, "minilm": minilm}


def gpu_rates(
    device: torch.device,
    seconds: float,
    batches: tuple[int, ...] = (64, 256),
    audio_batches: tuple[int, ...] = (16, 64),
    dtype: torch.dtype = torch.float16,
) -> dict[str, dict[str, float]]:
    from transformers import ClapFeatureExtractor

    m = models(device, dtype)
    extractor = ClapFeatureExtractor(truncation="rand_trunc")  # as laion/clap-htsat-unfused
    clip_audio = np.random.default_rng(0).normal(0, 0.1, 48_000 * 2).astype(np.float32)
    audio_features = extractor([clip_audio] * max(audio_batches), sampling_rate=48_000, return_tensors="pt")
    rates: dict[str, dict[str, float]] = {}

    @torch.inference_mode()
    def run(name: str, batch: int, fn: Callable[[int], int]) -> None:
        rate, _calls = timed(lambda: fn(batch), seconds)
        rates.setdefault(name, {})[f"batch {batch}"] = round(rate, 1)

    for batch in batches:
        pixels = torch.randn(batch, 3, 224, 224, device=device, dtype=dtype)
        run("clip image (ViT-B/32)", batch, partial(forward, m["clip"].get_image_features, pixel_values=pixels))
        tokens = torch.randint(0, 49_000, (batch, 16), device=device)
        run("clip text", batch, partial(forward, m["clip"].get_text_features, input_ids=tokens))
        bert_tokens = torch.randint(0, 30_000, (batch, 16), device=device)
        run("minilm text", batch, partial(forward, m["minilm"], input_ids=bert_tokens))
    for batch in audio_batches:
        feats = audio_features["input_features"][:batch].to(device, dtype)
        longer = audio_features["is_longer"][:batch].to(device)
        audio = partial(forward, m["clap"].get_audio_features, input_features=feats, is_longer=longer)
        run("clap audio (HTSAT)", batch, audio)
        tokens = torch.randint(0, 50_000, (batch, 16), device=device)
        run("clap text", batch, partial(forward, m["clap"].get_text_features, input_ids=tokens))
    return rates


def forward(model: Callable[..., object], batch: int, **inputs: torch.Tensor) -> int:
    """One forward pass of `batch` items: what `timed` counts."""
    model(**inputs)
    return batch


def mapped(pool: ThreadPoolExecutor, fn: Callable[[int], int], calls: int) -> int:
    return sum(pool.map(fn, range(calls)))


def cpu_rates(seconds: float, workers: int) -> dict[str, float]:
    """Items per second the CPU side produces: CLAP log-mel features, and CLIP image preprocessing."""
    import torch.nn.functional as F
    from transformers import ClapFeatureExtractor

    extractor = ClapFeatureExtractor(truncation="rand_trunc")  # as laion/clap-htsat-unfused
    rng = np.random.default_rng(0)
    clips = [rng.normal(0, 0.1, 48_000 * 2).astype(np.float32) for _ in range(16)]
    images = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(16)]
    mean = torch.tensor([0.481, 0.458, 0.408]).view(3, 1, 1)
    std = torch.tensor([0.269, 0.261, 0.276]).view(3, 1, 1)

    def audio(i: int) -> int:
        extractor(clips[i % 16], sampling_rate=48_000, return_tensors="np")
        return 1

    def image(i: int) -> int:
        tensor = torch.from_numpy(images[i % 16]).permute(2, 0, 1).float().unsqueeze(0) / 255
        resized = F.interpolate(tensor, size=(224, 224), mode="bicubic", align_corners=False)[0]
        _ = (resized - mean) / std
        return 1

    torch.set_num_threads(1)
    out = {}
    with ThreadPoolExecutor(workers) as pool:
        for name, fn in (("clap audio features", audio), ("clip image preprocessing", image)):
            rate, _ = timed(partial(mapped, pool, fn, workers * 8), seconds)
            out[name] = round(rate, 1)
    return out


def device_preprocessing_rates(device: torch.device, seconds: float, batch: int = 64) -> dict[str, float]:
    """What this project's own preprocessing feeds, computed on `device` in torch, batched (issue 16):
    `ClapLogMel` (CLAP's log-mel) and `TorchImagePreprocess` (CLIP's resize + crop + normalise)."""
    import sys
    from pathlib import Path

    from PIL import Image
    from transformers import ClapFeatureExtractor

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from retrieval.encoders.clap_features import ClapLogMel
    from retrieval.encoders.image_preprocess import TorchImagePreprocess

    rng = np.random.default_rng(0)
    log_mel = ClapLogMel(ClapFeatureExtractor(truncation="rand_trunc"), device)
    clips = [rng.normal(0, 0.1, 48_000 * 2).astype(np.float32) for _ in range(batch)]
    images = [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(batch)]
    pixels = TorchImagePreprocess(
        size=(224, 224),
        mean=torch.tensor([0.481, 0.458, 0.408], device=device).view(1, 3, 1, 1),
        std=torch.tensor([0.269, 0.261, 0.276], device=device).view(1, 3, 1, 1),
        interpolation="bicubic",
        resize_mode="shortest",
        device=device,
        fallback=lambda image: torch.zeros(3, 224, 224),
    )
    with torch.inference_mode():
        audio, _ = timed(lambda: (log_mel(clips), batch)[1], seconds)
        image, _ = timed(lambda: (pixels(images), batch)[1], seconds)
    return {
        "clap log-mel (torch, batched)": round(audio, 1),
        "clip image preprocessing (torch, batched)": round(image, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measurement")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures GPU throughput only")
        return 1
    device = torch.device("cuda")
    started = time.perf_counter()
    gpu = gpu_rates(device, args.seconds)
    cpu = cpu_rates(args.seconds, args.workers)
    on_device = device_preprocessing_rates(device, args.seconds)
    share = {
        "audio (CLAP)": round(min(1.0, cpu["clap audio features"] / max(gpu["clap audio (HTSAT)"].values())), 3),
        "image (CLIP)": round(
            min(1.0, cpu["clip image preprocessing"] / max(gpu["clip image (ViT-B/32)"].values())), 3
        ),
    }
    report = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "python": platform.python_version(),
        "cpu_workers": args.workers,
        "precision": "fp16",
        "weights": "random (speed only)",
        "gpu_items_per_s": gpu,
        "cpu_items_per_s": cpu,
        "pipeline_share_of_gpu_rate": share,
        "torch_preprocessing_on_gpu_items_per_s": on_device,
        "torch_preprocessing_share_of_gpu_rate": {
            "audio (CLAP)": round(
                min(1.0, on_device["clap log-mel (torch, batched)"] / max(gpu["clap audio (HTSAT)"].values())), 3
            ),
            "image (CLIP)": round(
                min(
                    1.0,
                    on_device["clip image preprocessing (torch, batched)"] / max(gpu["clip image (ViT-B/32)"].values()),
                ),
                3,
            ),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    print("\n| encoder | " + " | ".join(sorted({b for r in gpu.values() for b in r})) + " |")
    print("|---|" + "---|" * len({b for r in gpu.values() for b in r}))
    for name, rates in gpu.items():
        print(
            f"| {name} | "
            + " | ".join(str(rates.get(b, "")) for b in sorted({b for r in gpu.values() for b in r}))
            + " |"
        )
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
