"""Indexing throughput: end to end next to the encoders alone (same items, same run), by stage, with memory.

    .venv/bin/python bench/indexing.py [--repeats 3] [--synthetic 20000] [--clip-items 300]

Collections: the digits demo (the offline profile: HOG, speech, MiniLM); the same items' first --clip-items
with a CLIP ViT-B/32 image + text tower (random weights: the real architecture's cost, as a pretrained
profile would pay) and MFCC for audio; and --synthetic generated items (a drawn image and a tone clip
each, offline profile). End to end = read, hash, decode (threads), encode, write vectors and rows in
batches, build indexes, on a fresh database, models loaded first. Encoder-only = the same decoded assets
through the same encoders in batches of 64. Target: end-to-end >= 0.8 x encoder-only. Memory: resident
set size sampled as the encode stage progresses (it should stay flat: media are streamed).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from common import write_report

from indexer.demo import DemoSpec, build_digits_manifest, datasets_dir
from indexer.pipeline import Indexer
from indexer.sources import scan
from indexer.work import WorkItem, decode_asset
from retrieval.encoders import create_encoder
from retrieval.media import MODALITIES
from retrieval.profiles import PROFILES, Profile

CLIP = Profile("vit-b-32", {"image": ("openclip:ViT-B-32",), "audio": ("mfcc",), "text": ("openclip:ViT-B-32",)})


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def encoder_only(manifest: Path, profile: Profile) -> tuple[float, float, int]:
    encoders = {m: [create_encoder(n) for n in names] for m, names in profile.encoders.items()}
    decoded: dict[str, list] = {m: [] for m in MODALITIES}
    for item in scan(manifest).items:
        for modality, spec in item.assets.items():
            value = decode_asset(WorkItem(0, spec, None), [e.sample_rate for e in encoders[modality]]).value
            if value is not None:
                decoded[modality].append(value)
    started, cpu = time.perf_counter(), time.process_time()
    for modality in MODALITIES:
        values = decoded[modality]
        for encoder in encoders[modality]:
            for start in range(0, len(values), 64):
                batch = [v[encoder.sample_rate] if isinstance(v, dict) else v for v in values[start : start + 64]]
                encoder.encode(modality, batch, batch_size=64)
    return time.perf_counter() - started, time.process_time() - cpu, sum(len(v) for v in decoded.values())


def end_to_end(url: str, manifest: Path, profile: Profile, roots: list[Path]) -> tuple[dict, dict]:
    indexer = Indexer(url, profile=profile)
    indexer.load_encoders()  # models loaded before the clock starts, as encoder-only has them
    memory: dict[str, float] = {"before_mb": round(rss_mb(), 1)}
    marks = iter((0.25, 0.5, 0.75, 1.0))
    mark = next(marks)

    def progress(stage: str, done: int, total: int) -> None:
        nonlocal mark
        while stage == "encode" and total and done / total >= mark:
            memory[f"at_{int(mark * 100)}%_mb"] = round(rss_mb(), 1)
            mark = next(marks, 2.0)

    cpu = time.process_time()
    summary = indexer.run(manifest, roots=roots, progress=progress)
    cpu = time.process_time() - cpu
    memory["peak_process_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return {
        "seconds": summary.seconds - summary.stages["load encoders"],
        "cpu_seconds": cpu,
        "assets": summary.encoded,
        "stages": summary.stages,
    }, memory


def measure(label: str, manifest: Path, profile: Profile, roots: list[Path], repeats: int, work: Path) -> dict:
    runs, memories, encode = [], [], []
    for n in range(repeats):  # alternating, so that a busy spell on a shared machine slows both alike
        run, memory = end_to_end(f"sqlite:///{work}/{label}-{n}.db", manifest, profile, roots)
        runs.append(run)
        memories.append(memory)
        encode.append(encoder_only(manifest, profile))
    e2e = statistics.median(r["seconds"] for r in runs)
    enc = statistics.median(t for t, _, _ in encode)
    cpu = statistics.median(r["cpu_seconds"] for r in runs), statistics.median(c for _, c, _ in encode)
    assets = runs[-1]["assets"]
    report = {
        "collection": label,
        "profile": profile.name,
        "assets": assets,
        "end_to_end_s": round(e2e, 2),
        "encoder_only_s": round(enc, 2),
        "end_to_end_assets_per_s": round(assets / e2e, 1),
        "encoder_only_assets_per_s": round(assets / enc, 1),
        "ratio": round(enc / e2e, 3),
        "cpu_s": {"end_to_end": round(cpu[0], 2), "encoder_only": round(cpu[1], 2)},
        "cpu_ratio": round(cpu[1] / cpu[0], 3),
        "stages_s": {k: round(statistics.median(r["stages"][k] for r in runs), 2) for k in runs[0]["stages"]},
        "memory": memories[-1],
        "repeats": repeats,
    }
    print(json.dumps(report), flush=True)
    return report


def synthetic_collection(folder: Path, items: int, seed: int = 0) -> Path:
    """`items` items of a drawn 96x96 image (a random polygon, blurred noise) and a 1 s tone clip."""
    import soundfile
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    media = folder / "media"
    media.mkdir(parents=True, exist_ok=True)
    t = np.arange(16_000) / 16_000
    rows = []
    for n in range(items):
        image = Image.fromarray((rng.random((96, 96, 3)) * 60).astype(np.uint8))
        ImageDraw.Draw(image).polygon(
            [tuple(p) for p in rng.integers(0, 96, (5, 2)).tolist()],
            fill=tuple(int(c) for c in rng.integers(60, 256, 3)),
        )
        image.save(media / f"{n:05d}.png")
        f0 = rng.uniform(150, 900)
        clip = 0.3 * np.sin(2 * np.pi * f0 * t) * np.exp(-t * rng.uniform(1, 6)) + 0.01 * rng.standard_normal(len(t))
        soundfile.write(media / f"{n:05d}.wav", clip.astype(np.float32), 16_000)
        rows.append({"id": f"s{n:05d}", "image": f"media/{n:05d}.png", "audio": f"media/{n:05d}.wav"})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def markdown(reports: list[dict]) -> str:
    lines = [
        "# Indexing throughput: end to end vs encoders alone",
        "",
        "Same items, same run, fresh databases, models loaded before timing; end to end and encoders alone "
        "alternating, medians of the repeats. Target: end-to-end >= 0.8 x encoder-only. CPU s: the process's "
        "CPU time (all threads), which a busy machine inflates less than wall time.",
        "",
        "| collection | profile | assets | end to end s | assets/s | encoders only s | assets/s | ratio | "
        "CPU s, end to end / encoders | CPU ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r['collection']} | {r['profile']} | {r['assets']} | {r['end_to_end_s']} | "
            f"{r['end_to_end_assets_per_s']} | {r['encoder_only_s']} | {r['encoder_only_assets_per_s']} | "
            f"{r['ratio']} | {r['cpu_s']['end_to_end']} / {r['cpu_s']['encoder_only']} | {r['cpu_ratio']} |"
        )
    lines += ["", "Stages (s) and resident memory (MB) as the encode stage progresses:", ""]
    for r in reports:
        stages = ", ".join(f"{k} {v}" for k, v in r["stages_s"].items() if k != "load encoders")
        memory = ", ".join(f"{k.removesuffix('_mb')} {v}" for k, v in r["memory"].items())
        lines.append(f"- **{r['collection']} / {r['profile']}**: {stages}. Memory: {memory}.")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", type=int, default=20_000, help="generated items (0: skip)")
    parser.add_argument("--clip-items", type=int, default=300, help="digits items for the ViT-B/32 run (0: skip)")
    parser.add_argument("--limit", type=int, help="digits items (default: all 2,000)")
    args = parser.parse_args()
    reports = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        roots = [datasets_dir()]
        digits = build_digits_manifest(work / "digits", spec=DemoSpec(limit=args.limit))
        reports.append(measure("digits", digits, PROFILES["offline"], roots, args.repeats, work))
        if args.clip_items:
            subset = build_digits_manifest(work / "digits-subset", spec=DemoSpec(limit=args.clip_items))
            reports.append(measure(f"digits ({args.clip_items} items)", subset, CLIP, roots, args.repeats, work))
        if args.synthetic:
            manifest = synthetic_collection(work / "synthetic", args.synthetic)
            reports.append(
                measure(
                    f"synthetic {args.synthetic:,}", manifest, PROFILES["offline"], [], max(1, args.repeats - 1), work
                )
            )
    write_report("indexing", {"results": reports}, markdown(reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
