"""Executors: where decoding and encoding run. The pipeline plans the work and writes the results; an
executor turns planned work into encoded batches. `local` decodes in threads beside the encoder in this
process; `ray` (indexer.ray_executor) runs the same decode + encode step as Ray actors across a cluster.
Both yield `EncodedBatch`es, so writing, checkpoints and crash safety are the pipeline's, whatever runs them.
"""

from __future__ import annotations

import itertools
import math
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from indexer.work import Decoded, WorkItem, decode_asset
from retrieval.encoders import Encoder
from retrieval.media import MAX_AUDIO_SECONDS, MODALITIES
from retrieval.profiles import Field
from retrieval.transcribe import reads_transcript
from storage.models import TEXT_PREVIEW
from storage.registry import Registry

# Decoded audio the local executor holds at once (clips being decoded, waiting, and the batch being encoded):
# 128M float32 samples, 512 MiB, whatever --batch-size. A batch of long clips is cut short to stay within it;
# 64 clips of 600 s at 16 kHz used to be 2.5 GB a batch, three batches in flight.
AUDIO_BUDGET_SAMPLES = 128 * 2**20


@dataclass
class EncodedBatch:
    """Decoding results without the media (text keeps a preview) and, per field, the new vectors."""

    decoded: list[Decoded]
    vectors: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # field key -> (ids, vectors)

    def failed(self, modality: str) -> np.ndarray:
        return np.array(
            [d.work.item_id for d in self.decoded if d.error is not None and d.work.spec.modality == modality], np.int64
        )


@dataclass(frozen=True)
class ExecutorSettings:
    """What every executor is built from; each takes the parts it needs."""

    encoders: dict[str, Encoder]
    fields: list[Field]
    rates: dict[str, tuple[int, ...]]
    device: str | None = None
    batch_size: int = 64
    workers: int | None = None  # decode threads (local)
    address: str | None = None  # a cluster to join (ray)
    transcripts: Mapping[str, str] = field(default_factory=dict)  # sha256 -> text, for transcript fields


class Executor(Protocol):
    name: str

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> Executor: ...

    def batches(self, work: list[WorkItem]) -> Iterator[EncodedBatch]: ...

    def close(self) -> None:
        """Release what `batches` kept for the next call (a run calls it once per chunk, then this)."""


def encode_batch(
    batch: list[Decoded],
    encoders: dict[str, Encoder],
    fields: list[Field],
    batch_size: int,
    transcripts: Mapping[str, str] | None = None,
) -> EncodedBatch:
    """Encode every decoded asset of a batch with each field's encoder; then drop the decoded media.
    A transcript field encodes what `transcripts` says each recording says; one that says nothing gets
    the zero vector (a missing field, in a fused index).

    An asset whose vector comes out NaN or infinite becomes an error (naming the encoder) instead of a
    vector: one would poison every inner product it takes part in, in every index built from it."""
    out = EncodedBatch([])
    batch = list(batch)
    for f in fields:
        good = [n for n, d in enumerate(batch) if d.error is None and d.work.spec.modality == f.modality]
        if good:
            encoder = encoders[f.encoder]
            if reads_transcript(f.modality, f.encoder):
                vectors = _transcript_vectors([batch[n] for n in good], encoder, transcripts or {}, batch_size)
            else:
                inputs = [_for_encoder(batch[n].value, encoder) for n in good]
                vectors = np.asarray(encoder.encode(f.modality, inputs, batch_size=batch_size), np.float32)
            finite = np.isfinite(vectors).all(axis=1)
            for n in np.asarray(good)[~finite]:
                batch[n] = replace(batch[n], error=f"encoder {f.encoder} gave a non-finite vector for this file")
            ids = np.array([batch[n].work.item_id for n in good], np.int64)
            out.vectors[f.key] = (ids[finite], vectors[finite])
    out.decoded = [replace(d, value=d.value[:TEXT_PREVIEW] if isinstance(d.value, str) else None) for d in batch]
    return out


def _transcript_vectors(
    decoded: list[Decoded], encoder: Encoder, transcripts: Mapping[str, str], batch_size: int
) -> np.ndarray:
    texts = [transcripts.get(d.work.sha256 or "", "") for d in decoded]
    said = [n for n, text in enumerate(texts) if text.strip()]
    vectors = np.zeros((len(texts), encoder.dim), np.float32)
    if said:
        vectors[said] = encoder.encode("text", [texts[n] for n in said], batch_size=batch_size)
    return vectors


def _for_encoder(value: object, encoder: Encoder) -> object:
    """Decoded audio is {rate: Waveform}; an encoder reads its own rate's copy."""
    return value[encoder.sample_rate] if isinstance(value, dict) else value


def sample_rates(
    encoders: dict[str, Encoder], profile_encoders: Mapping[str, Sequence[str]]
) -> dict[str, tuple[int, ...]]:
    """The rates each modality is decoded at: every rate its encoders read (audio: one copy per rate)."""
    rates: dict[str, tuple[int, ...]] = {}
    for modality in MODALITIES:
        names = list(profile_encoders.get(modality, ()))
        rates[modality] = tuple(sorted({encoders[n].sample_rate for n in names})) or (16_000,)
    return rates


class LocalExecutor:
    """Decode in worker threads, a bounded window ahead of the encoder, and encode here, batch by batch."""

    name = "local"

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> LocalExecutor:
        return cls(
            settings.encoders,
            settings.fields,
            settings.rates,
            settings.batch_size,
            settings.workers,
            settings.transcripts,
        )

    def __init__(
        self,
        encoders: dict[str, Encoder],
        fields: list[Field],
        rates: dict[str, tuple[int, ...]],
        batch_size: int = 64,
        workers: int | None = None,
        transcripts: Mapping[str, str] | None = None,
        audio_budget: int = AUDIO_BUDGET_SAMPLES,
        clip_seconds: float = MAX_AUDIO_SECONDS,
    ) -> None:
        self.encoders, self.fields, self.rates = encoders, fields, rates
        self.transcripts = transcripts if transcripts is not None else {}  # the run's, updated chunk by chunk
        # one decode thread per core (at most 4): more only take CPU from the encoders (2 cores: 4 threads
        # indexed 2,000 generated items in 7.3 s, 2 threads in 6.8 s, medians of 3)
        self.batch_size, self.workers = batch_size, min(4, os.cpu_count() or 1) if workers is None else workers
        # the most one decoded clip can hold (every rate's copy; the decoder refuses longer clips): what a clip
        # still being decoded is counted as
        self.audio_budget = audio_budget
        self.clip_samples = math.ceil(clip_seconds * sum(rates.get("audio", ()))) + 64 * len(rates.get("audio", ()))

    def batches(self, work: list[WorkItem]) -> Iterator[EncodedBatch]:
        for batch in self._decoded(work):
            encoded = encode_batch(batch, self.encoders, self.fields, self.batch_size, self.transcripts)
            batch.clear()  # the decoded media go now, not when the next batch replaces this one
            yield encoded

    def close(self) -> None:
        """Nothing is kept between calls: each call's decode threads end with it."""

    def _decoded(self, work: list[WorkItem]) -> Iterator[list[Decoded]]:
        """Decoded batches in the order of `work`: audio within the in-flight budget, the rest by count."""
        for audio, run in itertools.groupby(work, key=_is_audio):
            yield from (self._audio_batches if audio else self._batches)(list(run))

    def _audio_batches(self, work: list[WorkItem]) -> Iterator[list[Decoded]]:
        """Decoded clips in batches of at most `batch_size`, holding at most `audio_budget` samples at once.

        `held` counts a clip being decoded as the most it can hold (`clip_samples`), then as what it holds;
        a batch's clips count until the encoder is done with it. A clip is sent to decode only while it fits
        beside what is held, and a batch is cut short when nothing more fits: long clips make small batches,
        short ones full batches. (A single clip over the whole budget still goes, alone.)"""
        rates = self.rates.get("audio", (16_000,))
        items = iter(work)
        upcoming = next(items, None)
        pending: deque[Future[Decoded]] = deque()
        batch: list[Decoded] = []
        held = in_batch = 0
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            while upcoming is not None or pending:
                while upcoming is not None and len(pending) < 2 * self.batch_size:
                    if held + self.clip_samples > self.audio_budget and (pending or batch):
                        break
                    pending.append(pool.submit(decode_asset, upcoming, rates))
                    held += self.clip_samples
                    upcoming = next(items, None)
                batch.append(pending.popleft().result())  # no other name for it: cleared with the batch
                size = _samples(batch[-1])
                held += size - self.clip_samples
                in_batch += size
                stuck = not pending and (upcoming is None or held + self.clip_samples > self.audio_budget)
                if len(batch) == self.batch_size or stuck:
                    yield batch  # the caller clears it once encoded
                    held -= in_batch
                    batch, in_batch = [], 0
        if batch:
            yield batch

    def _batches(self, work: list[WorkItem]) -> Iterator[list[Decoded]]:
        """Decoded batches, two ahead of the encoder; each batch is split into one slice per worker (a
        future per asset cost ~80 us of locking and wake-ups each, as much as decoding a small image)."""
        batches = [work[start : start + self.batch_size] for start in range(0, len(work), self.batch_size)]
        if self.workers <= 0:  # decode in this thread, batch by batch
            for batch in batches:
                yield self._decode(batch)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:

            def submit(batch: list[WorkItem]) -> list[Future[list[Decoded]]]:
                step = -(-len(batch) // self.workers)
                return [pool.submit(self._decode, batch[start : start + step]) for start in range(0, len(batch), step)]

            ahead = deque(submit(batch) for batch in batches[:2])
            for upcoming in batches[2:]:
                futures = ahead.popleft()
                ahead.append(submit(upcoming))
                yield [decoded for future in futures for decoded in future.result()]
            for futures in ahead:
                yield [decoded for future in futures for decoded in future.result()]

    def _decode(self, items: list[WorkItem]) -> list[Decoded]:
        return [decode_asset(item, self.rates[item.spec.modality]) for item in items]


def _is_audio(item: WorkItem) -> bool:
    return item.spec.modality == "audio"


def _samples(decoded: Decoded) -> int:
    """Samples a decoded clip holds, every rate's copy together."""
    value = decoded.value
    return sum(len(wave.samples) for wave in value.values()) if isinstance(value, dict) else 0


EXECUTORS: Registry[type[Executor]] = Registry("executor")
EXECUTORS.register("local", LocalExecutor, "decode in threads, encode in this process (the default)")
EXECUTORS.register("ray", "indexer.ray_executor:RayExecutor", "decode + encode on Ray actors (--ray-address)")
