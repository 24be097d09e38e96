"""A small digits collection made at test time, in the shared datasets' layout, for tests that need media but
not real media (`tests/conftest.py` uses it where ../shared/datasets is absent, or always with
RETRIEVAL_TEST_MEDIA=synthetic).

- `fsdd/recordings/{digit}_{speaker}_{take}.wav`: 8 kHz 16-bit mono, 0.3-0.6 s. A digit is two tones of its
  own frequencies, the same in every voice; a speaker is a timbre (how strong each tone's overtones are) and
  a loudness contour; a take jitters the pitch by up to 2 % and adds noise. Four speakers, 15 takes a digit.
- `transcripts.jsonl`: what each recording stands for (its digit's word), as the transcript the indexer would
  otherwise ask Whisper for: tones carry no words, and hearing 600 of them would cost each run minutes. The
  indexer reads it through $RETRIEVAL_TRANSCRIPTS; Whisper itself is tested on the real recordings.
- `mnist/images/{index:05d}_{digit}.png`: 28x28 greyscale, the digit drawn white on black in a scalable
  font, shifted, thickened or thinned, with noise. 1,000 images whose indices run 0-4,995 in steps of 5,
  so the demo's split (below 2,500: train) holds as it does on MNIST.

Seeded by file, so every run and every pytest-xdist worker makes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import wave
import zlib
from pathlib import Path

import numpy as np

from retrieval.transcribe import DEFAULT_TRANSCRIBER, transcriber_identity

SPEAKERS = ("george", "jackson", "lucas", "nicolas")
TAKES = 15
IMAGES = 1000
RATE = 8000
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
VERSION = 2  # bump when the media change, so a stale copy in the temporary folder is not reused


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def recording(digit: int, speaker: int, take: int) -> np.ndarray:
    rng = rng_for(f"{digit}_{speaker}_{take}")
    seconds = 0.3 + 0.3 * rng.random()
    t = np.arange(int(seconds * RATE)) / RATE
    jitter = 1 + 0.02 * rng.uniform(-1, 1)
    overtones = (0.5, 0.25, 0.6, 0.15)[speaker], (0.2, 0.5, 0.1, 0.4)[speaker]
    signal = np.zeros_like(t)
    for base in (280.0 + 60 * digit, 1100.0 + 170 * digit):
        f = base * jitter
        signal += np.sin(2 * np.pi * f * t) + overtones[0] * np.sin(4 * np.pi * f * t)
        signal += overtones[1] * np.sin(6 * np.pi * f * t)
    rise = (0.05, 0.15, 0.3, 0.1)[speaker]
    envelope = np.minimum(1, t / (rise * seconds)) * np.minimum(1, (seconds - t) / (0.2 * seconds))
    signal = signal * envelope + 0.05 * rng.standard_normal(len(t))
    return (signal / np.abs(signal).max() * 0.8 * 32767).astype("<i2")


def image(index: int, digit: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = rng_for(f"image-{index}")
    canvas = Image.new("L", (28, 28), 0)
    font = ImageFont.load_default(size=int(rng.integers(18, 23)))
    ImageDraw.Draw(canvas).text((14 + rng.integers(-2, 3), 14 + rng.integers(-2, 3)), str(digit), 255, font, "mm")
    if rng.random() < 0.5:
        canvas = canvas.filter(ImageFilter.MaxFilter(3))
    pixels = np.asarray(canvas, dtype=np.float64) + rng.normal(0, 12, (28, 28))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())


def build(root: Path) -> Path:
    """Write the collection under `root` (fsdd/recordings, mnist/images) and return `root`."""
    from PIL import Image

    recordings, images = root / "fsdd" / "recordings", root / "mnist" / "images"
    recordings.mkdir(parents=True, exist_ok=True)
    images.mkdir(parents=True, exist_ok=True)
    said = []
    for digit in range(10):
        for s, speaker in enumerate(SPEAKERS):
            for take in range(TAKES):
                path = recordings / f"{digit}_{speaker}_{take}.wav"
                write_wav(path, recording(digit, s, take))
                said.append({"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "text": WORDS[digit]})
    model = {"language": "en", "confidence": None, "model": transcriber_identity(DEFAULT_TRANSCRIBER)}
    (root / "transcripts.jsonl").write_text("".join(json.dumps(row | model) + "\n" for row in said))
    labels = rng_for("labels").integers(0, 10, IMAGES)
    for n, digit in enumerate(labels):
        index = 5 * n
        Image.fromarray(image(index, int(digit))).save(images / f"{index:05d}_{digit}.png")
    return root
