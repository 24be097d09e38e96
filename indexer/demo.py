"""The digits demo collection: spoken digits (FSDD) paired with handwritten digits (MNIST), plus texts.

Each item pairs one recording with one image of the same digit (seeded). Not every item has every
modality (image 80 %, audio 80 %, text 50 %, at least one), and texts vary: some name the digit, some
only the speaker, so text is not always decisive. Items keep `digit`, `speaker` and `split` metadata:
speakers george, jackson, lucas with MNIST indices below 2500 are `train`; nicolas with 2500 and up
are `test`, the split the fusion benchmark uses.

The media stay where `indexer.datasets` finds them (never copied): the manifest points at them by relative path.
Attribution: FSDD (CC BY-SA 4.0, github.com/Jakobovski/free-spoken-digit-dataset, Zenodo
10.5281/zenodo.1342401); MNIST (Y. LeCun, C. Cortes, C. J. C. Burges), CC BY-SA 3.0.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from indexer.datasets import datasets_dir

if TYPE_CHECKING:
    from indexer.pipeline import IndexSummary
    from retrieval import SearchEngine
    from retrieval.train import TrainResult

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_SPEAKERS = ("george", "jackson", "lucas")
MNIST_SPLIT = 2500
# What the demo trains, so that every strategy answers on the first run: 12 epochs of supervised training on
# the 1,500 train items (the benchmark uses 40): measured CPU time per epoch on one thread, gated 0.45 s,
# cross-attention 1.0 s, learned early 0.2 s, so ~20 s in all.
DEMO_EPOCHS = 12

TEMPLATES_DIGIT = [
    "the digit {word}",
    "{digit}",
    "a handwritten {word}",
    "number {digit}",
    "{word}",
    "someone says {word}",
    "the number {word}, spoken and written",
]
TEMPLATES_BOTH = ["{word}, read aloud by {speaker}", "{speaker} saying {digit}"]
TEMPLATES_SPEAKER = ["a recording by {speaker}", "sample from {speaker}", "{speaker}'s voice"]


@dataclass(frozen=True)
class DemoSpec:
    image_rate: float = 0.8
    audio_rate: float = 0.8
    text_rate: float = 0.5
    seed: int = 0
    limit: int | None = None  # number of items; None = one per recording (2,000)


def text_for(rng: random.Random, digit: int, speaker: str) -> str:
    kind = rng.random()
    templates = TEMPLATES_DIGIT if kind < 0.6 else TEMPLATES_BOTH if kind < 0.8 else TEMPLATES_SPEAKER
    return rng.choice(templates).format(word=WORDS[digit], digit=digit, speaker=speaker)


def presence(rng: random.Random, spec: DemoSpec) -> tuple[bool, bool, bool]:
    flags = (rng.random() < spec.image_rate, rng.random() < spec.audio_rate, rng.random() < spec.text_rate)
    if any(flags):
        return flags
    forced = rng.randrange(3)
    return tuple(i == forced for i in range(3))  # type: ignore[return-value]


def build_digits_manifest(out_dir: str | Path, datasets: str | Path | None = None, spec: DemoSpec = DemoSpec()) -> Path:
    """Write `manifest.csv` for the digits collection into `out_dir` and return its path."""
    root = datasets_dir(datasets)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(spec.seed)
    recordings = sorted((root / "fsdd" / "recordings").glob("*.wav"))
    images: dict[tuple[int, bool], list[Path]] = {}
    for path in sorted((root / "mnist" / "images").glob("*.png")):
        match = re.match(r"(\d+)_(\d)\.png$", path.name)
        if match:
            images.setdefault((int(match[2]), int(match[1]) < MNIST_SPLIT), []).append(path)
    for pool in images.values():
        rng.shuffle(pool)
    rows: list[dict[str, str | int]] = []
    for recording in recordings:
        digit_s, speaker, take = recording.stem.split("_")
        digit, train = int(digit_s), speaker in TRAIN_SPEAKERS
        pool = images[(digit, train)]
        image = pool[len(rows) % len(pool)]
        has_image, has_audio, has_text = presence(rng, spec)
        rows.append(
            {
                "id": f"{digit}-{speaker}-{take}",
                "image": os.path.relpath(image, out) if has_image else "",
                "audio": os.path.relpath(recording, out) if has_audio else "",
                "text": text_for(rng, digit, speaker) if has_text else "",
                "digit": digit,
                "speaker": speaker,
                "split": "train" if train else "test",
                "mnist_index": int(image.name.split("_")[0]) if has_image else "",  # no image, no index
            }
        )
    if spec.limit is not None:
        rng.shuffle(rows)
        rows = sorted(rows[: spec.limit], key=lambda r: str(r["id"]))
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "ATTRIBUTION.txt").write_text(__doc__.split("Attribution: ")[1])
    write_queries(rows, out / "queries.jsonl", seed=spec.seed)
    return manifest


KINDS = (
    ("image",),
    ("audio",),
    ("text",),
    ("image", "audio"),
    ("image", "text"),
    ("audio", "text"),
    ("image", "audio", "text"),
)


def write_queries(rows: list[dict], path: Path, per_kind: int = 20, seed: int = 0) -> Path:
    """Labelled queries for `python -m retrieval evaluate`: test-split items' own media, of seven kinds,
    each leaving its own item out of the results; relevance is 'same digit' (--label-field digit)."""
    rng = random.Random(seed)
    lines = []
    for kind in KINDS:
        fitting = [r for r in rows if r["split"] == "test" and all(r[m] for m in kind)]
        for row in sorted(rng.sample(fitting, min(per_kind, len(fitting))), key=lambda r: r["id"]):
            query = {m: row[m] for m in kind}
            lines.append(
                json.dumps(
                    {"id": f"{'+'.join(kind)}/{row['id']}", **query, "digit": row["digit"], "exclude": row["id"]}
                )
            )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def index_demo(
    url: str,
    out_dir: str | Path = "data/digits",
    datasets: str | Path | None = None,
    spec: DemoSpec = DemoSpec(),
    progress: Callable[[str, int, int], None] | None = None,
    collection: str = "default",
    train: bool = True,
    epochs: int = DEMO_EPOCHS,
) -> IndexSummary:
    """Build the manifest, index it and (with `train`) train the learned strategies on the train split.

    The shared datasets folder is allowed as an extra root. Progress stages: the indexer's, then
    `train STRATEGY` counted in epochs."""
    from indexer.pipeline import Indexer

    root = datasets_dir(datasets, fetch=True)
    manifest = build_digits_manifest(out_dir, root, spec)
    summary = Indexer(url, collection).run(manifest, progress=progress, roots=[root])
    if train:
        train_demo(url, out_dir, collection, epochs, progress)
    return summary


def train_demo(
    url: str,
    out_dir: str | Path = "data/digits",
    collection: str = "default",
    epochs: int = DEMO_EPOCHS,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, TrainResult]:
    """Train gated, cross-attention and learned early on the `train` split (supervised by `digit`),
    register the checkpoints, and build their indexes now so the first search does not. Seeded: the same
    collection gives the same checkpoints."""
    import torch  # noqa: F401  (loaded first, so `one_thread` holds it at one thread)

    from retrieval import SearchEngine
    from retrieval.fusion import learned_strategies
    from retrieval.fusion.base import one_thread

    engine = SearchEngine.open(url, collection)
    results: dict[str, TrainResult] = {}
    # one thread: on this 2-core machine beside other jobs, 3 epochs of gated took 5.7 s on one and 44.5 s on
    # two (cross-attention 10.6 s vs 99 s); two threads on batches this small wait for each other
    with one_thread():
        for name in learned_strategies():  # gated, cross_attention, learned_early
            results[name] = _train_one(engine, name, out_dir, epochs, progress)
    engine.prepare(list(results))
    return results


def _train_one(
    engine: SearchEngine,
    name: str,
    out_dir: str | Path,
    epochs: int,
    progress: Callable[[str, int, int], None] | None,
) -> TrainResult:
    from retrieval.train import TrainConfig

    config = TrainConfig(name, label_field="digit", where={"split": "train"}, epochs=epochs)
    stage = f"train {name}"

    def report(epoch: int, total: int, loss: float) -> None:
        if progress is not None:
            progress(stage, epoch, total)

    return engine.models.train(config, Path(out_dir) / f"{name}.safetensors", report)
