"""Encoding: a chunk's work turned into encoded batches by an executor (local threads, or Ray: `executors`),
each distinct content once (`dedup`), with what recordings say where the profile encodes it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping

from indexer.dedup import EncodedContents, split_duplicates, with_copies
from indexer.executors import EXECUTORS, EncodedBatch, Executor, ExecutorSettings, sample_rates
from indexer.report import ProgressFn
from indexer.target import Target
from indexer.transcripts import transcripts_for
from indexer.work import WorkItem
from retrieval.transcribe import DEFAULT_TRANSCRIBER, reads_transcript
from storage import VectorTable


def transcribe(target: Target, work: list[WorkItem], progress: ProgressFn | None) -> dict[str, str]:
    """What the new recordings say, when a field of the profile encodes it (`reads_transcript`)."""
    profile = target.profile
    if not any(reads_transcript(f.modality, f.encoder) for f in profile.fields):
        return {}
    return transcripts_for(target.db, profile.transcriber or DEFAULT_TRANSCRIBER, work, target.device, progress)


def make_executor(
    target: Target,
    name: str,
    batch_size: int,
    workers: int | None,
    address: str | None,
    transcripts: Mapping[str, str],
) -> Executor:
    profile = target.profile
    rates = sample_rates(target.encoders, {m: list(names) for m, names in profile.encoders.items()})
    settings = ExecutorSettings(
        target.encoders, profile.fields, rates, target.device, batch_size, workers, address, transcripts
    )
    return EXECUTORS.get(name).from_settings(settings)


def encoded(
    work: list[WorkItem],
    executor: Executor,
    contents: EncodedContents,
    tables: dict[str, VectorTable],
    target: Target,
) -> Iterator[EncodedBatch]:
    """The work's encoded batches: a content met in an earlier chunk takes what it was given then, a content
    met twice in this one is encoded once; every batch is remembered for the chunks after."""
    rest, known = contents.reuse(work, tables, target.profile.fields)
    leaders, copies = split_duplicates(rest)
    for batch in itertools.chain([known], executor.batches(leaders)):
        batch = with_copies(batch, copies)
        contents.remember(batch)
        yield batch
