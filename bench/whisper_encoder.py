"""Does Whisper tiny.en's encoder carry a spoken digit across voices better than `speech`, alone or beside it?

Issue 36. The recordings, speaker pairs, P@10 and 1-NN test of bench/speech_encoder.py (its own helpers):
for every ordered pair of the four FSDD speakers, one speaker's 500 clips are the corpus and the other's the
queries, P@10 by cosine, mean and spread over the 12 pairs; 1-NN over takes 0-9 (400 clips), neighbours from
the other speakers only. No training. `whisper-encoder` is tried with several layouts (silence before and
after the clip, a least length) and poolings of the frames that cover the clip, and beside `speech`: as one
vector of two unit halves (its cosine is the mean of the two cosines) or as two channels, each channel's
cosines z-scored over the corpus (late fusion's default normalisation) or reciprocal-rank fused (k 60).
Whisper was trained on 30 s inputs only: the chosen layout is compared with the clip padded to 30 s on takes
below --long-takes (that input costs ~1 s a clip). Then speed, two cores: ms a clip over the 400, and one
1 s query clip (encoders already loaded), median of --queries, speech and Whisper alternating.

    .venv/bin/python bench/whisper_encoder.py     # ~10 minutes on 2 shared cores
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
from common import write_report
from fusion_cross_data import SPEAKERS
from speech_encoder import clips, cross_speaker, nearest_neighbour, pooled

from retrieval.encoders import whisper_encoder
from retrieval.encoders.registry import create_encoder
from retrieval.fusion.scoring import normalise, ranks, rrf
from retrieval.linalg import l2_normalise
from retrieval.media import Waveform

LAYOUTS = ((0.0, 0.0), (0.4, 1.5), (0.4, 2.0))  # (silence each side, least length), seconds
POOLINGS = ("mean", "mean+max (unit halves)", "mean+std (unit halves)")
Similarity = Callable[[np.ndarray, np.ndarray], np.ndarray]  # query rows, corpus rows -> scores


@contextmanager
def layout_of(layout: tuple[float, float]) -> Iterator[whisper_encoder.WhisperEncoderEncoder]:
    """The product encoder under another layout: its module constants, set for the block (as speech_encoder.py
    sets `speech`'s)."""
    encoder = create_encoder("whisper-encoder")
    assert isinstance(encoder, whisper_encoder.WhisperEncoderEncoder)
    default = whisper_encoder.LEAD_SECONDS, whisper_encoder.MIN_SECONDS
    whisper_encoder.LEAD_SECONDS, whisper_encoder.MIN_SECONDS = layout
    try:
        yield encoder
    finally:
        whisper_encoder.LEAD_SECONDS, whisper_encoder.MIN_SECONDS = default


def frames_with(layout: tuple[float, float], samples: list[np.ndarray]) -> list[np.ndarray]:
    with layout_of(layout) as encoder:
        return [f for i in range(0, len(samples), 64) for f in encoder.frames(samples[i : i + 64])]


def all_frames_mean(layout: tuple[float, float], samples: list[np.ndarray]) -> np.ndarray:
    """Mean of every output frame, the silence around the clip included (clips under 30 s: one piece each)."""
    with layout_of(layout) as encoder:
        outputs = encoder.outputs([encoder.log_mels(encoder.pieces(s)[0][0]) for s in samples])
    return l2_normalise(np.stack([o.mean(0) for o in outputs]).astype(np.float32))


def pair_scores(similarity: Similarity, speakers: np.ndarray, digits: np.ndarray) -> tuple[float, float]:
    """cross_speaker's P@10 for scores that are not one vector's cosines (two channels fused)."""
    scores = []
    for corpus, query in itertools.permutations(SPEAKERS, 2):
        c, q = np.flatnonzero(speakers == corpus), np.flatnonzero(speakers == query)
        top = np.argsort(-similarity(q, c), axis=1)[:, :10]
        scores.append(float((digits[c][top] == digits[q][:, None]).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def two_channels(a: np.ndarray, b: np.ndarray, how: str) -> Similarity:
    """Each channel's cosines normalised over the query's corpus (`retrieval.fusion.scoring`), then summed."""
    everything = np.ones(1, bool)

    def fused(q: np.ndarray, c: np.ndarray) -> np.ndarray:
        out = np.zeros((len(q), len(c)), np.float32)
        present = np.broadcast_to(everything, len(c))
        for vectors in (a, b):
            for row, scores in enumerate(vectors[q] @ vectors[c].T):
                out[row] += rrf(ranks(scores, present)) if how == "rrf" else normalise(scores, present, "zscore")
        return out

    return fused


def row(name: str, pooling: str, vectors: np.ndarray, labels: tuple[np.ndarray, ...]) -> str:
    speakers, digits, takes = labels
    p10, sd = cross_speaker(vectors, speakers, digits)
    return f"| {name} | {pooling} | {p10:.3f} ± {sd:.3f} | {nearest_neighbour(vectors, speakers, digits, takes):.3f} |"


def quality(samples: list[np.ndarray], labels: tuple[np.ndarray, ...], speech: np.ndarray) -> list[str]:
    rows = [
        "| encoder | pooling | cross-speaker P@10 (mean ± sd, 12 pairs) | 1-NN (takes 0-9) |",
        "|---|---|---|---|",
        row("speech (as shipped)", "mean+std (unit halves)", speech, labels),
    ]
    chosen = (whisper_encoder.LEAD_SECONDS, whisper_encoder.MIN_SECONDS)
    whisper = np.zeros(0)
    for layout in LAYOUTS:
        frames = frames_with(layout, samples)
        name = f"whisper-encoder, {layout[0]} s each side, ≥ {layout[1]} s"
        for how in POOLINGS:
            rows.append(row(name, f"{how} of the clip's frames", pooled(frames, how), labels))
        if layout == chosen:
            whisper = pooled(frames, "mean")
            rows.append(row(name, "mean of all frames, silence included", all_frames_mean(layout, samples), labels))
    both = l2_normalise(np.concatenate([whisper, speech], 1))
    rows.append(row("speech + whisper-encoder (chosen)", "one vector, two unit halves", both, labels))
    for how in ("zscore", "rrf"):
        p10, sd = pair_scores(two_channels(whisper, speech, how), labels[0], labels[1])
        rows.append(f"| speech + whisper-encoder (chosen) | two channels, {how} | {p10:.3f} ± {sd:.3f} | - |")
    return rows


def thirty_seconds(samples: list[np.ndarray], labels: tuple[np.ndarray, ...], takes: int) -> list[str]:
    """The chosen layout beside the clip padded to Whisper's 30 s, on takes below `takes`."""
    speakers, digits, take = labels
    keep = np.flatnonzero(take < takes)
    subset = [samples[i] for i in keep]
    rows = [
        f"| input ({len(keep)} clips: takes 0-{takes - 1}) | pooling | 1-NN | ms a clip |",
        "|---|---|---|---|",
    ]
    chosen = (whisper_encoder.LEAD_SECONDS, whisper_encoder.MIN_SECONDS)
    for layout in (chosen, (chosen[0], 30.0)):
        started = time.perf_counter()
        frames = frames_with(layout, subset)
        ms = 1000 * (time.perf_counter() - started) / len(subset)
        nn = nearest_neighbour(pooled(frames, "mean"), speakers[keep], digits[keep], take[keep])
        rows.append(f"| {layout[0]} s each side, ≥ {layout[1]} s | mean of the clip's frames | {nn:.3f} | {ms:.0f} |")
    nn = nearest_neighbour(all_frames_mean((chosen[0], 30.0), subset), speakers[keep], digits[keep], take[keep])
    rows.append(f"| {chosen[0]} s each side, ≥ 30.0 s | mean of all 1,500 frames | {nn:.3f} | (same) |")
    return rows


def speed(samples: list[np.ndarray], queries: int) -> list[str]:
    encoders = {name: create_encoder(name) for name in ("speech", "whisper-encoder")}
    waves = [Waveform(s, 16_000) for s in samples]
    per_clip = {}
    for name, encoder in encoders.items():
        started = time.perf_counter()
        encoder.encode("audio", waves)
        per_clip[name] = 1000 * (time.perf_counter() - started) / len(waves)
    one = [Waveform(np.random.default_rng(0).standard_normal(16_000).astype(np.float32) * 0.1, 16_000)]
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for n in range(queries):
        for name in list(encoders)[n % 2 :] + list(encoders)[: n % 2]:
            started = time.perf_counter()
            encoders[name].encode("audio", one)
            times[name].append(1000 * (time.perf_counter() - started))
    median = {name: float(np.median(t)) for name, t in times.items()}
    sum_median = float(np.median(np.add(times["speech"], times["whisper-encoder"])))
    return [
        f"| encoder | ms a clip ({len(waves):,} FSDD clips: takes 0-9, batches of 32) | one 1 s query clip, median of {queries} |",
        "|---|---|---|",
        *(f"| {name} | {per_clip[name]:.1f} | {median[name]:.1f} ms |" for name in encoders),
        f"| both (two channels) | {sum(per_clip.values()):.1f} | {sum_median:.1f} ms |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50, help="timed encodings of one 1 s query clip")
    parser.add_argument("--long-takes", type=int, default=3, help="takes a digit a speaker padded to 30 s")
    args = parser.parse_args()
    load = os.getloadavg()
    samples, speakers, digits, takes = clips()
    labels = (speakers, digits, takes)
    speech = create_encoder("speech").encode("audio", [Waveform(s, 16_000) for s in samples])
    rows = quality(samples, labels, speech)
    long = thirty_seconds(samples, labels, args.long_takes)
    timing = speed([s for s, take in zip(samples, takes) if take < 10], args.queries)
    title = (
        "# Whisper tiny.en's encoder for spoken audio, beside `speech`: cross-speaker, no training\n\n"
        "Issue 36. The layouts and poolings were chosen on these same recordings, so only differences larger than\n"
        "the spread over speaker pairs are findings. CTranslate2 (4.8.5 here) takes Whisper inputs shorter than\n"
        "3000 mel frames; the 30 s input is shown for what Whisper was trained on and what it costs.\n"
        f"Timings: a 2-core machine shared with other work (load average {load[0]:.1f} when the run began,\n"
        f"{os.getloadavg()[0]:.1f} when it ended); compare rows of one table only.\n\n"
    )
    markdown = title + "\n".join([*rows, "", *long, "", *timing]) + "\n"
    write_report("whisper_encoder", {"rows": rows, "thirty_seconds": long, "speed": timing}, markdown)


if __name__ == "__main__":
    main()
