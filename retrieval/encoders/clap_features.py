"""CLAP's log-mel input in torch, batched, on the encoder's device, deterministic for clips of any length.

transformers' `ClapFeatureExtractor` computes it in numpy (float64), one clip at a time: ~20 clips/s with
16 threads on an H200 machine, against 4,822 clips/s for the HTSAT audio tower. Here the same
spectrogram (Hann window, centred frames, reflect padding, power 2, the extractor's own mel filters,
10*log10 with a 1e-10 floor) is one `torch.stft` over the whole batch; equal to the extractor's within
0.01 dB (tests/test_encoders.py measures it).

Lengths. HTSAT reads a fixed 10 s (1,001 frames): a shorter input is stretched in time to fit (its
`reshape_mel2img` interpolates), not padded, so a short clip cannot skip its padding; like the
reference it is repeated to fill 10 s (`repeatpad`). A longer clip is where the reference is random
(`rand_trunc`: one random 10 s crop; `fusion`: three random crops and random `is_longer` flags), so a
file did not match its own indexed copy. Here:
- unfused models: the clip is cut into ceil(L / 10 s) windows of 10 s, evenly spaced from its start to
  its end (they overlap a little; every sample is read), each encoded, and their unit vectors averaged;
- fusion models: the whole clip's mel (shrunk to 10 s) with the front, middle and back crops taken at
  the middle of the reference's three ranges, `is_longer` true; a clip of 10 s or less is marked
  `is_longer` too, which is what the reference does for a batch of one (a query).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ClapInputs:
    features: torch.Tensor  # (rows, channels, frames, mel bins): channels 1 (unfused) or 4 (fusion)
    is_longer: torch.Tensor  # (rows, 1) bool
    owner: np.ndarray  # the clip each row belongs to (unfused long clips have several rows)


class ClapLogMel:
    def __init__(self, extractor: object, device: torch.device) -> None:
        self.rate = int(extractor.sampling_rate)  # type: ignore[attr-defined]
        self.max_samples = int(extractor.nb_max_samples)  # type: ignore[attr-defined]
        self.n_fft, self.hop = int(extractor.fft_window_size), int(extractor.hop_length)  # type: ignore[attr-defined]
        self.fusion = extractor.truncation == "fusion"  # type: ignore[attr-defined]
        self.padding = str(extractor.padding)  # type: ignore[attr-defined]
        filters = extractor.mel_filters if self.fusion else extractor.mel_filters_slaney  # type: ignore[attr-defined]
        self.device = device
        self.filters = torch.as_tensor(np.asarray(filters), dtype=torch.float32, device=device)  # (freq, mel)
        self.window = torch.hann_window(self.n_fft, periodic=True, dtype=torch.float32, device=device)
        self.chunk_frames = self.max_samples // self.hop + 1

    # -- waveforms to fixed-length rows ----------------------------------------------------------------
    def pad(self, samples: np.ndarray) -> np.ndarray:
        """A clip of at most 10 s to exactly 10 s, as the reference pads it."""
        n, target = len(samples), self.max_samples
        if n >= target:
            return samples[:target]
        if self.padding == "repeat":
            samples = np.tile(samples, target // n + 1)[:target]
        elif self.padding == "repeatpad":
            samples = np.tile(samples, target // n)
        return np.pad(samples, (0, target - len(samples)))

    def windows(self, samples: np.ndarray) -> list[np.ndarray]:
        """A long clip's 10 s windows, evenly spaced from its first sample to its last."""
        count = math.ceil(len(samples) / self.max_samples)
        starts = np.linspace(0, len(samples) - self.max_samples, count).round().astype(int)
        return [samples[s : s + self.max_samples] for s in starts]

    # -- spectrograms --------------------------------------------------------------------------------
    def log_mel(self, waves: torch.Tensor) -> torch.Tensor:
        """(batch, samples) float32 -> (batch, frames, mel bins) in dB."""
        spec = (
            torch.stft(
                waves,
                self.n_fft,
                self.hop,
                window=self.window,
                center=True,
                pad_mode="reflect",
                return_complex=True,
            ).abs()
            ** 2
        )
        mel = torch.matmul(self.filters.T, spec).clamp_min(1e-10)
        return (10.0 * torch.log10(mel)).transpose(1, 2)

    def __call__(self, clips: list[np.ndarray]) -> ClapInputs:
        rows: list[np.ndarray] = []
        owner: list[int] = []
        long_fusion: list[int] = []
        for n, samples in enumerate(clips):
            if len(samples) <= self.max_samples:
                rows.append(self.pad(samples))
                owner.append(n)
            elif self.fusion:
                long_fusion.append(n)
            else:
                parts = self.windows(samples)
                rows += parts
                owner += [n] * len(parts)
        features: list[torch.Tensor] = []
        if rows:
            waves = torch.from_numpy(np.stack(rows).astype(np.float32, copy=False)).to(self.device)
            mel = self.log_mel(waves).unsqueeze(1)
            features.append(mel.expand(-1, 4, -1, -1) if self.fusion else mel)
        for n in long_fusion:
            features.append(self._fusion(clips[n]))
            owner.append(n)
        return ClapInputs(
            features=torch.cat(features),
            is_longer=torch.full((len(owner), 1), self.fusion, dtype=torch.bool, device=self.device),
            owner=np.asarray(owner),
        )

    def _fusion(self, samples: np.ndarray) -> torch.Tensor:
        """The reference's `_random_mel_fusion`, with each crop at the middle of its range."""
        mel = self.log_mel(torch.from_numpy(samples.astype(np.float32, copy=False)).to(self.device)[None])[0]
        total, chunk = mel.shape[0], self.chunk_frames
        ranges = np.array_split(np.arange(0, total - chunk + 1), 3)
        starts = [int(r[len(r) // 2]) if len(r) else 0 for r in ranges]
        crops = [mel[s : s + chunk] for s in starts]
        shrunk = torch.nn.functional.interpolate(
            mel[None, None], size=[chunk, mel.shape[1]], mode="bilinear", align_corners=False
        )[0, 0]
        return torch.stack([shrunk, *crops])[None]
