"""Would other offline audio features carry the spoken digit across speakers better than `mfcc`?

Cross-speaker retrieval on FSDD alone: for every ordered pair of the four speakers, one speaker's 500
clips are the corpus and the other's the queries; P@10 (same digit) by cosine, mean and spread over the 12
pairs. Variants of the MFCC summary (segments, variance normalisation, c0, deltas, voicing threshold,
time-resampled frames, a 2-D DCT of the log-mel image) and, as a ceiling for template matching, DTW over the
frames (60 queries a pair, 4 pairs: it is slow).

Then *learned* features, as a learned fusion strategy would learn them: a network trained with digit labels
on two speakers and scored on the other two (each ordered corpus/query pair once, over the six training
pairs: the same 12 pairs as above), 3 seeds. An MLP on `mfcc`'s vector, an MLP on the time-normalised
log-mel image (40 bands x 16 frames of the voiced part), the same with vocal-tract-length perturbation
(each training image's mel axis stretched by 0.85-1.15, a standard way to fake new speakers), and a small
CNN with it. Would a richer stored vector let training carry a digit across speakers?

    .venv/bin/python bench/audio_features.py     # ~8 minutes
"""

from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from common import write_report
from fusion_cross_data import SPEAKERS
from torch import nn

from indexer.demo import datasets_dir
from retrieval.encoders.features import MfccAudioEncoder
from retrieval.media import load_audio


def log_mels(encoder: MfccAudioEncoder) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    mels, speakers, digits = [], [], []
    for path in sorted((datasets_dir() / "fsdd" / "recordings").glob("*.wav")):
        mel = encoder.log_mel(load_audio(path, encoder.sample_rate).samples)
        digit, speaker, _ = path.stem.split("_")
        mels.append(mel.astype(np.float32))
        speakers.append(speaker)
        digits.append(int(digit))
    return mels, np.array(speakers), np.array(digits)


def voiced(mel: np.ndarray, db: float = 3.0) -> np.ndarray:
    energy = mel.mean(axis=0)
    frames = mel[:, energy >= energy.max() - db]
    return frames if frames.shape[1] >= 5 else mel


def resampled(frames: np.ndarray, n: int) -> np.ndarray:
    """coefficients x frames -> coefficients x n, by linear interpolation over time."""
    t = np.linspace(0, frames.shape[1] - 1, n)
    lo = np.floor(t).astype(int)
    hi, w = np.minimum(lo + 1, frames.shape[1] - 1), t - lo
    return frames[:, lo] * (1 - w) + frames[:, hi] * w


def segments(
    mel: np.ndarray,
    n_mfcc: int = 20,
    parts: int = 5,
    cmvn: bool = False,
    drop0: bool = False,
    db: float = 3.0,
    delta: bool = False,
    interpolate: bool = False,
) -> np.ndarray:
    c = scipy.fft.dct(voiced(mel, db), type=2, axis=0, norm="ortho")[:n_mfcc]
    c = c[1:] if drop0 else c
    sd = c.std(axis=1, keepdims=True) + 1e-6
    c = c - c.mean(axis=1, keepdims=True)
    c = c / sd if cmvn else c
    out = [resampled(c, parts).T.ravel()] if interpolate else [p.mean(axis=1) for p in np.array_split(c, parts, axis=1)]
    if delta:
        d = np.diff(c, axis=1) if c.shape[1] > 1 else 0 * c
        out += [p.mean(axis=1) for p in np.array_split(d, parts, axis=1)]
    if not cmvn:
        out.append(0.5 * sd.ravel())
    return np.concatenate(out)


def dct2(mel: np.ndarray, bands: int = 12, times: int = 8) -> np.ndarray:
    image = resampled(voiced(mel), 32)
    return scipy.fft.dctn(image - image.mean(axis=1, keepdims=True), norm="ortho")[:bands, :times].ravel()


def pair_p10(vectors: np.ndarray, corpus: np.ndarray, queries: np.ndarray, digits: np.ndarray) -> float:
    vectors = vectors / (np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9)
    top = np.argsort(-(vectors[queries] @ vectors[corpus].T), axis=1)[:, :10]
    return float((digits[corpus][top] == digits[queries][:, None]).mean())


def p10(vectors: np.ndarray, speakers: np.ndarray, digits: np.ndarray) -> tuple[float, float]:
    out = [pair_p10(vectors, speakers == c, speakers == q, digits) for c, q in itertools.permutations(SPEAKERS, 2)]
    return float(np.mean(out)), float(np.std(out))


BANDS, FRAMES = 40, 16


def mel_image(mel: np.ndarray) -> np.ndarray:
    """The voiced part's log-mel image resampled to FRAMES frames, each band's mean removed (as CMN)."""
    image = resampled(voiced(mel), FRAMES)
    return (image - image.mean(axis=1, keepdims=True)).ravel()


def stretched(batch: torch.Tensor, low: float = 0.85, high: float = 1.15) -> torch.Tensor:
    """Vocal-tract-length perturbation: each mel image's band axis read at a random stretch."""
    images = batch.view(len(batch), BANDS, FRAMES)
    source = (torch.arange(BANDS).float() * torch.empty(len(batch), 1).uniform_(low, high)).clamp(0, BANDS - 1)
    below = source.floor().long()
    above, share = (below + 1).clamp(max=BANDS - 1), (source - below)[..., None]
    rows = [torch.gather(images, 1, index[..., None].expand(-1, -1, FRAMES)) for index in (below, above)]
    return (rows[0] * (1 - share) + rows[1] * share).view(len(batch), -1)


def network(dim: int, cnn: bool) -> nn.Module:
    if not cnn:
        return nn.Sequential(nn.Linear(dim, 256), nn.ReLU(), nn.Dropout(0.2), nn.Linear(256, 64))
    return nn.Sequential(
        nn.Unflatten(1, (1, BANDS, FRAMES)),
        *(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        *(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Flatten(),
        nn.Linear(32 * (BANDS // 4) * (FRAMES // 4), 64),
    )


def learned(x: np.ndarray, digits: np.ndarray, seed: int, perturb: bool, cnn: bool, epochs: int = 60) -> np.ndarray:
    """Embeddings of every clip from a network trained on the rows of `digits` that are not -1: a 64-d
    unit vector per clip, classified by cosine to ten learned class directions (a cosine softmax)."""
    torch.manual_seed(seed)
    inputs = torch.tensor(x, dtype=torch.float32)
    train = torch.from_numpy(np.flatnonzero(digits >= 0))
    labels = torch.from_numpy(digits)
    mean, scale = inputs[train].mean(0), inputs[train].std(0) + 1e-6
    net, classes = network(x.shape[1], cnn), nn.Parameter(0.1 * torch.randn(10, 64))
    optimiser = torch.optim.Adam([*net.parameters(), classes], 1e-3, weight_decay=1e-4)
    for _ in range(epochs):
        for batch in train[torch.randperm(len(train))].split(128):
            rows = stretched(inputs[batch]) if perturb else inputs[batch]
            z = F.normalize(net((rows - mean) / scale), dim=1)
            loss = F.cross_entropy(16 * z @ F.normalize(classes, dim=1).T, labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        return F.normalize(net((inputs - mean) / scale), dim=1).numpy()


def learned_p10(
    x: np.ndarray, speakers: np.ndarray, digits: np.ndarray, epochs: int = 60, **options: bool
) -> tuple[float, float]:
    """Trained on each pair of speakers, scored on the other two both ways, 3 seeds: mean and spread."""
    out = []
    for pair in itertools.combinations(SPEAKERS, 2):
        unseen = [s for s in SPEAKERS if s not in pair]
        for seed in range(3):
            vectors = learned(x, np.where(np.isin(speakers, pair), digits, -1), seed, epochs=epochs, **options)
            out += [pair_p10(vectors, speakers == c, speakers == q, digits) for c, q in itertools.permutations(unseen)]
    return float(np.mean(out)), float(np.std(out))


def dtw_p10(mels: list[np.ndarray], speakers: np.ndarray, digits: np.ndarray, per_pair: int = 60) -> float:
    import numba

    @numba.njit(cache=False)
    def dtw(a: np.ndarray, b: np.ndarray) -> float:
        n, m = a.shape[0], b.shape[0]
        cost = np.full((n + 1, m + 1), np.inf)
        cost[0, 0] = 0.0
        for i in range(1, n + 1):
            for j in range(1, m + 1):
                d = np.sqrt(((a[i - 1] - b[j - 1]) ** 2).sum())
                cost[i, j] = d + min(cost[i - 1, j], cost[i, j - 1], cost[i - 1, j - 1])
        return cost[n, m] / (n + m)

    frames = []
    for mel in mels:
        c = scipy.fft.dct(voiced(mel), type=2, axis=0, norm="ortho")[1:13]
        frames.append(np.ascontiguousarray((c - c.mean(axis=1, keepdims=True)).T.astype(np.float64)))
    rng, out = np.random.default_rng(0), []
    for corpus, queries in [
        (SPEAKERS[0], SPEAKERS[1]),
        (SPEAKERS[2], SPEAKERS[3]),
        (SPEAKERS[3], SPEAKERS[0]),
        (SPEAKERS[1], SPEAKERS[2]),
    ]:
        items = np.flatnonzero(speakers == corpus)
        for q in rng.choice(np.flatnonzero(speakers == queries), per_pair, replace=False):
            distances = np.array([dtw(frames[q], frames[i]) for i in items])
            out.append(float((digits[items[np.argsort(distances)[:10]]] == digits[q]).mean()))
    return float(np.mean(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtw-queries", type=int, default=60, help="queries a speaker pair for DTW")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs of each learned feature")
    args = parser.parse_args()
    encoder = MfccAudioEncoder()
    mels, speakers, digits = log_mels(encoder)
    variants = {
        "mfcc (today: 5 segments, CMN, spread)": encoder.summary,
        "5 segments, CMVN": lambda m: segments(m, cmvn=True),
        "8 segments": lambda m: segments(m, parts=8),
        "8 segments, CMVN": lambda m: segments(m, parts=8, cmvn=True),
        "8 segments, no c0": lambda m: segments(m, parts=8, drop0=True),
        "10 segments, 13 coefficients, no c0, CMVN": lambda m: segments(m, 13, 10, cmvn=True, drop0=True),
        "10 resampled frames, 13 coefficients, no c0": lambda m: segments(m, 13, 10, drop0=True, interpolate=True),
        "5 segments + deltas": lambda m: segments(m, delta=True),
        "voiced within 20 dB": lambda m: segments(m, db=2.0),
        "voiced within 40 dB": lambda m: segments(m, db=4.0),
        "2-D DCT of the log-mel image, 12 x 8": dct2,
        "2-D DCT, 20 x 10": lambda m: dct2(m, 20, 10),
    }
    rows = []
    for name, features in variants.items():
        vectors = np.stack([features(m) for m in mels]).astype(np.float64)
        mean, spread = p10(vectors, speakers, digits)
        rows.append({"variant": name, "dim": vectors.shape[1], "p10": round(mean, 3), "sd": round(spread, 3)})
        print(rows[-1], flush=True)
    images = np.stack([mel_image(m) for m in mels])
    trained = {
        "MLP on mfcc's vector": (np.stack([encoder.summary(m) for m in mels]), {}),
        "MLP on the log-mel image, 40 x 16": (images, {}),
        "MLP on the log-mel image + length perturbation": (images, {"perturb": True}),
        "CNN on the log-mel image + length perturbation": (images, {"perturb": True, "cnn": True}),
    }
    learned_rows = []
    for name, (x, options) in trained.items():
        mean, spread = learned_p10(
            x, speakers, digits, args.epochs, perturb=options.get("perturb", False), cnn=options.get("cnn", False)
        )
        learned_rows.append({"variant": name, "p10": round(mean, 3), "sd": round(spread, 3)})
        print(learned_rows[-1], flush=True)
    dtw = round(dtw_p10(mels, speakers, digits, args.dtw_queries), 3)
    lines = [
        "# Offline audio features across speakers (FSDD, 4 speakers, 12 corpus/query pairs)",
        "",
        "| features | dim | P@10 (mean ± sd over pairs) |",
        "|---|---|---|",
        *[f"| {r['variant']} | {r['dim']} | {r['p10']:.3f} ± {r['sd']:.3f} |" for r in rows],
        f"| DTW over MFCC frames (template matching, 60 queries × 4 pairs) | - | {dtw:.3f} |",
        "",
        "## Learned on two speakers, scored on the other two (the same 12 pairs; 3 seeds each)",
        "",
        "| trained features | P@10 (mean ± sd over pairs and seeds) |",
        "|---|---|",
        *[f"| {r['variant']} | {r['p10']:.3f} ± {r['sd']:.3f} |" for r in learned_rows],
    ]
    report = {"rows": rows, "dtw_p10": dtw, "learned_rows": learned_rows}
    write_report("audio_features", report, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
