"""The `pretrained` profile's indexing speed on this machine: end to end against the encoders' own rate.

The profile's real architectures with random weights, in the published Hugging Face cache layout
(`tests/tiny_models.build_pretrained_cache`: OpenCLIP ViT-B/32 for laion2b_s34b_b79k, CLAP
HTSAT-unfused at transformers' default (published) size, MiniLM packaged), loaded offline through
`--profile pretrained`'s own code. Three measurements on the same digits items (MNIST images, FSDD clips,
texts):
- preprocessing alone, before (transformers' numpy log-mel, open_clip's per-image PIL transform) and
  after (`ClapLogMel`, `TorchImagePreprocess`: torch, batched, on the encoder's device);
- the encoders' own throughput on already-decoded inputs (`encode()`, as the pipeline calls it);
- indexing end to end (`Indexer.run`: scan, hash, decode, encode, write, index), models loaded first.
Target: end to end >= 0.8 x encoder-only (the median of per-pair ratios, pairs run back to back).

    python bench/pretrained_indexing.py [--items 48] [--repeats 2]

Writes docs/benchmarks/pretrained_indexing.{json,md}; about 3 minutes and 3 GB on 2 idle CPU cores
(8 items, 3 pairs of runs; two to three times that on a machine shared with other work).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

CACHE = Path(tempfile.mkdtemp(prefix="pretrained-hf-"))
os.environ["HF_HOME"] = str(CACHE)  # before huggingface_hub is imported: it reads HF_HOME once
os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from common import write_report  # noqa: E402
from indexing import encoder_only, end_to_end  # noqa: E402

from indexer.demo import DemoSpec, build_digits_manifest, datasets_dir  # noqa: E402
from retrieval.encoders import create_encoder  # noqa: E402
from retrieval.encoders.clap import ClapEncoder  # noqa: E402
from retrieval.encoders.openclip import OpenClipEncoder  # noqa: E402
from retrieval.media import load_audio, load_image  # noqa: E402
from retrieval.profiles import PROFILES  # noqa: E402


def rate(fn: Callable[[], object], items: int, repeats: int = 2, warm_up: bool = True) -> float:
    """Items per second of `fn()`, best of `repeats` (after one warm-up call unless `warm_up` is False)."""
    if warm_up:
        fn()
    best = min(_timed(fn) for _ in range(repeats))
    return round(items / best, 1)


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def preprocessing(manifest_items: int) -> dict[str, float]:
    import torch

    clip = create_encoder(PROFILES["pretrained"].encoders["image"][0])
    clap = create_encoder(PROFILES["pretrained"].encoders["audio"][0])
    assert isinstance(clip, OpenClipEncoder) and isinstance(clap, ClapEncoder)
    root = datasets_dir()
    images = [load_image(p) for p in sorted((root / "mnist" / "images").glob("*.png"))[:32]]
    clips = [load_audio(p, clap.sample_rate).samples for p in sorted((root / "fsdd" / "recordings").glob("*.wav"))[:8]]
    extractor = clap.processor.feature_extractor
    with torch.inference_mode():
        pixels = clip.pixels(images)
        features = clap.log_mel(clips)
        return {
            "clap log-mel, transformers numpy (clips/s)": rate(
                lambda: extractor(clips, sampling_rate=clap.sample_rate, return_tensors="pt"), len(clips)
            ),
            "clap log-mel, torch batched (clips/s)": rate(lambda: clap.log_mel(clips), len(clips)),
            "clap audio tower only (clips/s)": rate(
                lambda: clap.model.get_audio_features(input_features=features.features, is_longer=features.is_longer),
                len(clips),
                repeats=1,
                warm_up=False,
            ),
            "clip preprocessing, open_clip PIL (images/s)": rate(
                lambda: torch.stack([clip.preprocess(i) for i in images]), len(images)
            ),
            "clip preprocessing, torch batched (images/s)": rate(lambda: clip.pixels(images), len(images)),
            "clip image tower only (images/s)": rate(
                lambda: clip.model.encode_image(pixels), len(images), repeats=1, warm_up=False
            ),
        }


def interleaved(manifest: Path, roots: list[Path], repeats: int, work: Path) -> dict:
    """End to end and encoder-only runs in alternation, a ratio per pair: on a machine shared with other
    work the load changes from minute to minute, and a pair measured back to back sees about the same."""
    pairs = []
    for n in range(repeats):
        run, memory = end_to_end(f"sqlite:///{work}/run-{n}.db", manifest, PROFILES["pretrained"], roots)
        seconds, _, assets = encoder_only(manifest, PROFILES["pretrained"])
        pairs.append({"end_to_end_s": round(run["seconds"], 2), "encoder_only_s": round(seconds, 2), "assets": assets})
        print(pairs[-1], flush=True)
    e2e = statistics.median(p["end_to_end_s"] for p in pairs)
    enc = statistics.median(p["encoder_only_s"] for p in pairs)
    assets = pairs[-1]["assets"]
    return {
        "assets": assets,
        "end_to_end_assets_per_s": round(assets / e2e, 2),
        "encoder_only_assets_per_s": round(assets / enc, 2),
        "ratio": round(statistics.median(p["encoder_only_s"] / p["end_to_end_s"] for p in pairs), 3),
        "ratios": [round(p["encoder_only_s"] / p["end_to_end_s"], 3) for p in pairs],
        "stages_s": {k: round(v, 2) for k, v in run["stages"].items()},
        "memory": memory,
        "repeats": repeats,
    }


def markdown(report: dict) -> str:
    run = report["indexing"]
    lines = [
        "# `pretrained` profile: indexing end to end vs the encoders' own throughput",
        "",
        "Random weights in the published layout (OpenCLIP ViT-B/32, CLAP HTSAT-unfused at its published size,",
        "MiniLM), CPU only (no GPU machine was lent to this measurement). "
        f"Items: {report['items']} digits items, {run['assets']} assets; median of {run['repeats']} runs.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| end to end (assets/s) | {run['end_to_end_assets_per_s']} |",
        f"| encoders only (assets/s) | {run['encoder_only_assets_per_s']} |",
        f"| ratio (target >= 0.8), median of pairs | {run['ratio']} (each pair: {run['ratios']}) |",
        *[f"| stage: {k} (s) | {v} |" for k, v in run["stages_s"].items()],
        "",
        "| preprocessing and towers | rate |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in report["preprocessing"].items()],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from tiny_models import build_pretrained_cache

    started = time.perf_counter()
    build_pretrained_cache(CACHE / "hub", full_size_clap=True)
    print(f"stand-in cache built in {time.perf_counter() - started:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        manifest = build_digits_manifest(work / "digits", spec=DemoSpec(limit=args.items))
        indexing = interleaved(manifest, [datasets_dir()], args.repeats, work)
    shutil.rmtree(CACHE, ignore_errors=True)  # ~1.2 GB of stand-in weights
    report = {"items": args.items, "indexing": indexing, "preprocessing": preprocessing(args.items)}
    write_report("pretrained_indexing", report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
