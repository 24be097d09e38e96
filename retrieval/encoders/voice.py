"""Is anyone speaking? Silero's voice-activity detector, as openWakeWord 0.5.1 ships it (MIT, Silero Team).

A speech encoder reads words, so a recording without a voice (a quiet room, traffic, white noise) gives it
nothing to read, yet still comes out as a unit vector that matches some items best. A query leaves such a
recording out, as it does a flat input (`retrieval.fusion.adaptive.screened`). The spread test alone could
not tell them apart in the speech space: noise clips spread 0.38-0.63 of a typical recording, unseen
speakers' digits from 0.37 up (docs/benchmarks/fusion_cross_speaker.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders.base import Encoder
from retrieval.media import Modality

FILE = "silero_vad.onnx"
RATE = 16_000
FRAME = 1536  # samples a call (96 ms), the longest Silero's v4 network takes at 16 kHz: ~16 ms a clip
LOOPED_SECONDS = 1.5
THRESHOLD = 0.5  # Silero's own default


class VoiceDetector:
    """Whether a 16 kHz recording holds speech anywhere."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.inter_op_num_threads = options.intra_op_num_threads = 1  # one clip is a chain of tiny calls
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def speech_probability(self, samples: np.ndarray) -> float:
        """The highest per-frame speech probability, read after the clip has played once.

        The network is recurrent and judges a frame by what came before it: fed a clip cold, it missed 31 %
        of the spoken digits here, and fed silence first, it took the onset of white noise for a voice
        (0.7-0.8). Looped, the clip is its own context: on the two speakers it was set up on, 99.9 % of
        digits reach 0.5 and noise or a quiet room at most 0.13; on the other two speakers, 99.7 %."""
        if not len(samples):
            return 0.0
        repeats = -(-int(LOOPED_SECONDS * RATE) // len(samples)) + 1
        looped = np.tile(samples.astype(np.float32), repeats)
        h = c = np.zeros((2, 1, 64), np.float32)
        rate = np.array(RATE, np.int64)
        first_pass = -(-len(samples) // FRAME)
        best = 0.0
        for n, start in enumerate(range(0, len(looped) - FRAME + 1, FRAME)):
            out, h, c = self.session.run(
                None, {"input": looped[None, start : start + FRAME], "h": h, "c": c, "sr": rate}
            )
            if n >= first_pass:
                best = max(best, float(out[0, 0]))
        return best

    def hears(self, samples: np.ndarray) -> bool:
        return self.speech_probability(samples) >= THRESHOLD


class SpeechReader(Encoder):
    """An audio encoder that reads speech: it finds nothing in a recording in which Silero hears no one
    (`voice`, None where the detector's file is not there: then it finds something in every recording)."""

    voice: VoiceDetector | None = None

    def finds_nothing(self, modality: Modality, inputs: Sequence[Any]) -> list[bool]:
        if self.voice is None or modality != "audio":
            return super().finds_nothing(modality, inputs)
        self._check_rates(inputs)
        return [not self.voice.hears(w.samples) for w in inputs]
