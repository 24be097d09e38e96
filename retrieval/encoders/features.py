"""Offline feature encoders: honest, named, and built on well-kept libraries; no weights to download.

They let the default profile run anywhere. They are not semantic models: `hog` compares shapes of
strokes and edges (scikit-image's HOG), `mfcc` compares how the spectrum of a sound evolves over time
(transformers' log-mel filter bank). Each has its own space; nothing aligns them with text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.fft
from PIL import Image
from skimage.feature import hog

from retrieval.encoders.base import Encoder
from retrieval.encoders.registry import register_encoder
from retrieval.media import Modality, Waveform

# Samples per batched spectrogram group (8 MB of float32; 125 s of 16 kHz audio): a longer clip goes alone.
MAX_GROUP_SAMPLES = 2_000_000


class HogImageEncoder(Encoder):
    """Histogram of oriented gradients of a 32x32 greyscale copy, plus a coarse 8x8 thumbnail."""

    modalities = ("image",)
    preprocessing = "hog32-o9-c8-b2+thumb8"
    side = 32

    def __init__(self) -> None:
        self.name = "hog"
        self.dim = len(self._features(Image.new("RGB", (self.side, self.side))))

    def _features(self, image: Image.Image) -> np.ndarray:
        grey = np.asarray(image.convert("L").resize((self.side, self.side), Image.Resampling.BILINEAR), np.float32)
        grey /= 255.0
        shape = hog(grey, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), feature_vector=True)
        thumb = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BOX), np.float32).ravel() / 255.0
        thumb = thumb - thumb.mean()
        return np.concatenate([shape - shape.mean(), 0.5 * thumb]).astype(np.float32)

    def _encode_batch(self, modality: Modality, batch: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([self._features(image) for image in batch])


class MfccAudioEncoder(Encoder):
    """MFCC statistics: means over five equal time segments of the voiced part, plus overall spread.

    Segment means keep the order of sounds in a word (a spoken "six" versus "seven"); subtracting the
    utterance mean (cepstral mean normalisation) removes much of the speaker's and microphone's colour.
    """

    modalities = ("audio",)
    preprocessing = "mfcc20-mel40-16k-seg5-cmn"
    sample_rate = 16_000
    segments = 5
    n_mfcc = 20

    def __init__(self) -> None:
        from transformers.audio_utils import mel_filter_bank, window_function  # 2.5 s to import: MFCC only

        self.name = "mfcc"
        self.frame, self.hop = 400, 160  # 25 ms windows every 10 ms
        self.window = window_function(self.frame, "hann")
        self.filters = mel_filter_bank(
            num_frequency_bins=self.frame // 2 + 1,
            num_mel_filters=40,
            min_frequency=60.0,
            max_frequency=7600.0,
            sampling_rate=self.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.dim = self.n_mfcc * (self.segments + 1)

    def spectrogram_options(self) -> dict[str, Any]:
        """transformers' spectrogram arguments after the window: one clip or a group alike."""
        options = {"frame_length": self.frame, "hop_length": self.hop, "power": 2.0, "mel_filters": self.filters}
        return {**options, "log_mel": "log10", "mel_floor": 1e-10, "center": True}

    def log_mel(self, samples: np.ndarray) -> np.ndarray:
        """One clip's log-mel spectrogram (mel bands x frames), as `_encode_batch` makes it for a group."""
        from transformers.audio_utils import spectrogram

        samples = np.pad(samples, (0, max(0, self.frame - len(samples))))
        return spectrogram(samples, self.window, **self.spectrogram_options())

    def summary(self, mel: np.ndarray) -> np.ndarray:
        """One clip's log-mel spectrogram (mel bands x frames) to its segment statistics."""
        mfcc = scipy.fft.dct(mel, type=2, axis=0, norm="ortho")[: self.n_mfcc].T  # frames x coefficients
        energy = mel.mean(axis=0)
        voiced = mfcc[energy >= energy.max() - 3.0]  # within 30 dB of the loudest frame
        if len(voiced) < self.segments:
            voiced = mfcc
        if len(voiced) < self.segments:  # a clip under ~50 ms: repeat its frames so no segment is empty
            voiced = np.repeat(voiced, -(-self.segments // len(voiced)), axis=0)
        spread = voiced.std(axis=0)
        voiced = voiced - voiced.mean(axis=0)
        parts = [part.mean(axis=0) for part in np.array_split(voiced, self.segments)]
        return np.concatenate([*parts, 0.5 * spread]).astype(np.float32)

    def _encode_batch(self, modality: Modality, batch: Sequence[Waveform]) -> np.ndarray:
        """Spectrograms of clips of similar length together: transformers' batched spectrogram loops over
        frames once per group, not once per clip (30x fewer Python steps for a batch of 64 short clips).
        A group is padded to its longest clip, so it holds clips within 2x of each other's length and at
        most ~2M samples (a 10-minute clip goes alone)."""
        samples = [np.pad(w.samples, (0, max(0, self.frame - len(w.samples)))) for w in batch]
        out: list[np.ndarray | None] = [None] * len(samples)
        order = sorted(range(len(samples)), key=lambda i: len(samples[i]))
        while order:
            shortest = len(samples[order[0]])
            group = [order[0]]
            for i in order[1:]:
                longest = len(samples[i])
                if longest > 2 * shortest or (len(group) + 1) * longest > MAX_GROUP_SAMPLES:
                    break
                group.append(i)
            order = order[len(group) :]
            from transformers.audio_utils import spectrogram_batch

            mels = spectrogram_batch([samples[i] for i in group], self.window, **self.spectrogram_options())
            for i, mel in zip(group, mels):
                out[i] = self.summary(mel)
        return np.stack([row for row in out if row is not None])  # every slot is filled above


@register_encoder("hog", "image: HOG + 8x8 thumbnail features (scikit-image); offline, no weights")
def _hog(argument: str | None, device: str | None) -> Encoder:
    return HogImageEncoder()


@register_encoder("mfcc", "audio: MFCC segment statistics (transformers' log-mel); offline, no weights")
def _mfcc(argument: str | None, device: str | None) -> Encoder:
    return MfccAudioEncoder()
