"""Collections and queries of the cross-speaker fusion benchmark, built from ../shared/datasets alone.

Every recording, MNIST image and text is encoded once (the offline profile's encoders: hog, speech, sbert;
`BENCH_AUDIO=mfcc` for the audio encoder of offline v1, `BENCH_AUDIO=speech+whisper-encoder` for two
encoders' unit vectors concatenated as one field) and cached;
each rotation then assembles in-memory collections from those vectors:

- train: two speakers' recordings paired with MNIST images 0-2499 of the same digit, demo-like presence
  (image 80 %, audio 80 %, text 50 %, demo texts);
- corpus: a third speaker with MNIST 2500-3749, built the same way;
- image-only corpus: every MNIST image 2500-3749 and nothing else;
- queries: the fourth speaker's recordings, MNIST 3750-4999 and text phrasings that no item uses.

Each query *base* draws one image, one recording and one phrasing of a digit; every query kind uses a
subset of the same bases, so a fused kind is compared with its single modalities on the same queries.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.demo import (
    TEMPLATES_BOTH,
    TEMPLATES_DIGIT,
    TEMPLATES_SPEAKER,
    DemoSpec,
    datasets_dir,
    presence,
    text_for,
)
from retrieval.encoders import create_encoder
from retrieval.media import load_audio, load_image
from retrieval.profiles import PROFILES, Field
from retrieval.space import VectorSpace
from storage import VectorStorage

SPEAKERS = ("george", "jackson", "lucas", "nicolas")
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
AUDIO = os.environ.get("BENCH_AUDIO") or PROFILES["offline"].encoders["audio"][0]
# what the recordings say (indexer/digits.transcripts.jsonl), encoded by MiniLM as the field audio@sbert
HEARD = os.environ.get("BENCH_TRANSCRIPTS") == "1"  # the profile offline-transcripts
ENCODER = {"image": "hog", "audio": AUDIO, "text": "sbert"}
FIELDS = [Field("image", "hog"), Field("audio", AUDIO), Field("text", "sbert")] + (
    [Field("audio", "sbert")] if HEARD else []
)
DIMS = {"hog": 388, "mfcc": 120, "speech": 192, "whisper-encoder": 384, "sbert": 384}
DIMS["speech+whisper-encoder"] = 576
# phrasings that no item's text uses (the items' come from indexer.demo's templates)
QUERY_TEMPLATES = [
    "someone saying {word}",
    "handwritten {digit}",
    "a {word} written by hand",
    "the spoken word {word}",
    "{word} on paper",
    "digit {word}",
]
OFF_TOPIC = ["a photo of a cat", "the weather is nice today", "traffic on the highway", "a red bicycle"]
MNIST_RANGES = {"train": (0, 2500), "corpus": (2500, 3750), "query": (3750, 5000)}


@dataclass
class Media:
    """Every vector the benchmark needs, by key: `audio[stem]`, `image[mnist index]`, `text[string]`."""

    audio: dict[str, np.ndarray]
    image: dict[int, np.ndarray]
    image_digit: dict[int, int]
    text: dict[str, np.ndarray] = field(default_factory=dict)
    special: dict[str, np.ndarray] = field(default_factory=dict)  # noise / silent clips, blank image
    heard: dict[str, np.ndarray] = field(default_factory=dict)  # audio[stem]'s transcript, encoded (or zeros)
    # audio stems and special clips the audio encoder finds nothing in (`Encoder.finds_nothing`: no voice)
    unheard: set[str] = field(default_factory=set)

    def text_vector(self, text: str) -> np.ndarray:
        if text not in self.text:
            self.text[text] = create_encoder("sbert").encode("text", [text])[0]
        return self.text[text]


def encode_media(cache: Path) -> Media:
    if "+" in AUDIO:
        return _paired(cache)
    return _encode_media(cache, AUDIO)


def _paired(cache: Path) -> Media:
    """Two audio encoders as one field: each part's unit vector, concatenated and scaled by 1/sqrt(2)."""
    media = [_encode_media(cache.with_name(f"media-{part}.npz"), part) for part in AUDIO.split("+")]

    def joined(vs: list[np.ndarray]) -> np.ndarray:
        return (np.concatenate([v / max(np.linalg.norm(v), 1e-12) for v in vs]) / np.sqrt(len(vs))).astype(np.float32)

    first = media[0]
    first.audio = {k: joined([m.audio[k] for m in media]) for k in first.audio}
    for k in ("noise0", "noise1", "noise2", "noise3", "noise4", "silence"):
        first.special[k] = joined([m.special[k] for m in media])
    first.unheard = set().union(*(m.unheard for m in media))
    return first


def _encode_media(cache: Path, encoder: str) -> Media:
    """Encode (or load from `cache`) every recording and MNIST image, and the noisy query inputs. A cache
    written by encoders that encode differently now (another preprocessing) is encoded again."""
    hog, voice = create_encoder("hog"), create_encoder(encoder)
    made_by = np.array(f"{hog.preprocessing}|{voice.preprocessing}|{type(voice).finds_nothing.__qualname__}")
    data = np.load(cache, allow_pickle=False) if cache.exists() else None
    if data is not None and "made_by" in data.files and data["made_by"] == made_by:
        audio = {k[6:]: data[k] for k in data.files if k.startswith("audio/")}
        image = {int(k[6:]): data[k] for k in data.files if k.startswith("image/")}
        special = {k[8:]: data[k] for k in data.files if k.startswith("special/")}
        digits = {int(k[6:]): int(data[k]) for k in data.files if k.startswith("digit/")}
        text = {k[5:]: data[k] for k in data.files if k.startswith("text/")}
        unheard = {str(name) for name in data["unheard"]}
        return Media(audio, image, digits, text, special, heard_vectors(audio) if HEARD else {}, unheard)
    root = datasets_dir()
    wavs = sorted((root / "fsdd" / "recordings").glob("*.wav"))
    pngs = sorted((root / "mnist" / "images").glob("*.png"))
    waves = [load_audio(p, voice.sample_rate) for p in wavs]
    audio_vectors = voice.encode("audio", waves)
    unheard = {p.stem for p, nothing in zip(wavs, voice.finds_nothing("audio", waves)) if nothing}
    image_vectors = hog.encode("image", [load_image(p) for p in pngs])
    rng = np.random.default_rng(0)
    clips = [load_audio(0.1 * rng.standard_normal(8000).astype(np.float32), 16_000, input_rate=8000) for _ in range(5)]
    # the product refuses digital silence, so a "silent" clip is a quiet room: -60 dBFS hiss and mains hum
    t = np.arange(8000) / 8000
    quiet = 1e-3 * rng.standard_normal(8000) + 5e-4 * np.sin(2 * np.pi * 50 * t)
    clips.append(load_audio(quiet.astype(np.float32), 16_000, input_rate=8000))
    clip_vectors = voice.encode("audio", clips)
    special = {f"noise{i}": clip_vectors[i] for i in range(5)}
    special["silence"] = clip_vectors[5]
    names = [*(f"noise{i}" for i in range(5)), "silence"]
    unheard |= {name for name, nothing in zip(names, voice.finds_nothing("audio", clips)) if nothing}
    special["blank"] = hog.encode("image", [load_image(np.zeros((28, 28), np.uint8))])[0]
    audio = {p.stem: v for p, v in zip(wavs, audio_vectors)}
    image, digits = {}, {}
    for p, v in zip(pngs, image_vectors):
        match = re.match(r"(\d+)_(\d)\.png$", p.name)
        if match:
            image[int(match[1])], digits[int(match[1])] = v, int(match[2])
    texts = all_texts()
    text = dict(zip(texts, create_encoder("sbert").encode("text", texts)))  # one batch: ~1 s a text one by one
    cache.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"made_by": made_by} | {f"audio/{k}": v for k, v in audio.items()}
    arrays |= {f"image/{k}": v for k, v in image.items()}
    arrays |= {f"digit/{k}": np.array(d) for k, d in digits.items()}
    arrays |= {f"special/{k}": v for k, v in special.items()}
    arrays |= {f"text/{k}": v for k, v in text.items()}
    arrays["unheard"] = np.array(sorted(unheard), dtype=str)
    np.savez(cache, **arrays)
    return Media(audio, image, digits, text, special, heard_vectors(audio) if HEARD else {}, unheard)


def heard_vectors(audio: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each recording's committed transcript through MiniLM, as the indexer encodes it (zeros: no words)."""
    import hashlib
    import json

    from indexer.transcripts import DIGITS_TRANSCRIPTS
    from retrieval.transcribe import searchable_text

    said = {}
    for line in DIGITS_TRANSCRIPTS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        said[row["sha256"]] = searchable_text(row["text"])
    root = datasets_dir() / "fsdd" / "recordings"
    texts = {stem: said.get(hashlib.sha256((root / f"{stem}.wav").read_bytes()).hexdigest(), "") for stem in audio}
    words = sorted({t for t in texts.values() if t.strip()})
    encoded = dict(zip(words, create_encoder("sbert").encode("text", words)))
    return {stem: encoded.get(t, np.zeros(DIMS["sbert"], np.float32)) for stem, t in texts.items()}


def all_texts() -> list[str]:
    """Every text an item or a query can carry: the demo's templates for items, ours for queries."""
    out = list(OFF_TOPIC)
    for d, word in enumerate(WORDS):
        out += [t.format(word=word, digit=d) for t in TEMPLATES_DIGIT + QUERY_TEMPLATES]
        for speaker in SPEAKERS:
            out += [t.format(word=word, digit=d, speaker=speaker) for t in TEMPLATES_BOTH + TEMPLATES_SPEAKER]
    return sorted(set(out))


@dataclass
class Collection:
    space: VectorSpace
    digits: np.ndarray  # digit of item id i at position i (ids start at 1; position 0 unused)

    @property
    def ids(self) -> np.ndarray:
        return self.space.item_ids()


def _space(folder: Path, vectors: dict[str, dict[int, np.ndarray]]) -> VectorSpace:
    storage = VectorStorage(folder)
    dims = {}
    for f in FIELDS:
        rows = vectors.get(f.key, vectors.get(f.modality, {}))  # a transcript field has its own key
        dim = len(next(iter(rows.values()))) if rows else DIMS[f.encoder]
        dims[f.encoder] = dim
        table = storage.load(f.key, dim=dim, encoder=f.encoder)
        if rows:
            table.upsert(np.array(list(rows), np.int64), np.stack(list(rows.values())).astype(np.float32))
        storage.save(f.key, table)
    return VectorSpace(FIELDS, storage, generation=1, dims=dims)


def demo_like(media: Media, speakers: tuple[str, ...], mnist: tuple[int, int], seed: int, folder: Path) -> Collection:
    """One item per recording of `speakers`, paired with an MNIST image of its digit in `mnist`, demo presence."""
    rng = random.Random(seed)
    pools: dict[int, list[int]] = {}
    for index, digit in sorted(media.image_digit.items()):
        if mnist[0] <= index < mnist[1]:
            pools.setdefault(digit, []).append(index)
    for pool in pools.values():
        rng.shuffle(pool)
    vectors: dict[str, dict[int, np.ndarray]] = {"image": {}, "audio": {}, "text": {}}
    digits = [0]
    stems = sorted(s for s in media.audio if s.split("_")[1] in speakers)
    for item, stem in enumerate(stems, start=1):
        spoken, speaker, _ = stem.split("_")
        d = int(spoken)
        has_image, has_audio, has_text = presence(rng, DemoSpec())
        if has_image:
            vectors["image"][item] = media.image[pools[d][item % len(pools[d])]]
        if has_audio:
            vectors["audio"][item] = media.audio[stem]
            if HEARD:
                vectors.setdefault("audio@sbert", {})[item] = media.heard[stem]
        if has_text:
            vectors["text"][item] = media.text_vector(text_for(rng, d, speaker))
        digits.append(d)
    return Collection(_space(folder, vectors), np.array(digits))


def image_only(media: Media, mnist: tuple[int, int], folder: Path) -> Collection:
    indices = [i for i in sorted(media.image) if mnist[0] <= i < mnist[1]]
    vectors = {"image": {n: media.image[i] for n, i in enumerate(indices, start=1)}}
    return Collection(_space(folder, vectors), np.array([0] + [media.image_digit[i] for i in indices]))


def audio_only(media: Media, speakers: tuple[str, ...], folder: Path) -> Collection:
    """Every recording of `speakers` and nothing else: what a text query reaches only by what was said."""
    stems = sorted(s for s in media.audio if s.split("_")[1] in speakers)
    vectors = {"audio": {n: media.audio[s] for n, s in enumerate(stems, start=1)}}
    if HEARD:
        vectors["audio@sbert"] = {n: media.heard[s] for n, s in enumerate(stems, start=1)}
    return Collection(_space(folder, vectors), np.array([0] + [int(s.split("_")[0]) for s in stems]))


@dataclass
class QueryBase:
    digit: int
    vectors: dict[str, np.ndarray]  # image, audio, text, noise, silence, blank, offtopic
    unheard: set[str] = field(default_factory=set)  # which of `vectors` the audio encoder finds nothing in


def take(stem: str) -> int:
    return int(stem.rsplit("_", 1)[1])


def query_bases(media: Media, speaker: str, per_kind: int, seed: int) -> list[QueryBase]:
    """`per_kind` bases, digits balanced; media from the query speaker and MNIST 3750-4999."""
    rng = random.Random(seed)
    low, high = MNIST_RANGES["query"]
    images = {d: [i for i, x in media.image_digit.items() if x == d and low <= i < high] for d in range(10)}
    takes = {d: sorted((s for s in media.audio if s.startswith(f"{d}_{speaker}_")), key=take) for d in range(10)}
    bases = []
    for n in range(per_kind):
        d = n % 10
        template = rng.choice(QUERY_TEMPLATES)
        image = media.image[rng.choice(images[d])]  # the draws in this order: the queries of earlier runs
        stem = rng.choice(takes[d])  # all 50 takes: as randrange(50) drew them
        text = media.text_vector(template.format(word=WORDS[d], digit=d))
        noise = f"noise{rng.randrange(5)}"
        sources = {"image": image, "audio": media.audio[stem], "text": text, "noise": media.special[noise]}
        sources |= {"silence": media.special["silence"], "blank": media.special["blank"]}
        sources["offtopic"] = media.text_vector(rng.choice(OFF_TOPIC))
        named = {"audio": stem, "noise": noise, "silence": "silence"}
        bases.append(QueryBase(d, sources, {k for k, name in named.items() if name in media.unheard}))
    return bases


# kind -> (query modality -> which of the base's vectors), and which collection it searches
KINDS: dict[str, tuple[dict[str, str], str]] = {
    "image": ({"image": "image"}, "corpus"),
    "audio": ({"audio": "audio"}, "corpus"),
    "text": ({"text": "text"}, "corpus"),
    "image+audio": ({"image": "image", "audio": "audio"}, "corpus"),
    "image+text": ({"image": "image", "text": "text"}, "corpus"),
    "audio+text": ({"audio": "audio", "text": "text"}, "corpus"),
    "image+audio+text": ({"image": "image", "audio": "audio", "text": "text"}, "corpus"),
    "image+noise clip": ({"image": "image", "audio": "noise"}, "corpus"),
    "image+silent clip": ({"image": "image", "audio": "silence"}, "corpus"),
    "audio+off-topic text": ({"audio": "audio", "text": "offtopic"}, "corpus"),
    "text+blank image": ({"text": "text", "image": "blank"}, "corpus"),
    "audio→image-only": ({"audio": "audio"}, "image-only"),
    "text→image-only": ({"text": "text"}, "image-only"),
    "text→audio-only": ({"text": "text"}, "audio-only"),
}
MULTI = ["image+audio", "image+text", "audio+text", "image+audio+text"]
# a noisy kind, and the clean kind it should cost nothing against
NOISY = {
    "image+noise clip": "image",
    "image+silent clip": "image",
    "audio+off-topic text": "audio",
    "text+blank image": "text",
}
