"""The indexing pipeline: scan → plan → encode → write → index, a chunk of the source's items at a time.

Each stage is a module that reads alone: `sources` (scan), `plan`, `encode` (with `executors`, `dedup`),
`write`, `index`; `target` opens the collection they write into, and `Indexer` here runs them.
Incremental: an asset whose content hash is unchanged and whose vectors exist is not re-encoded.
Crash-safe (`write`): vectors are saved before the rows that point at them, and each run starts by dropping
vectors no committed row backs. A source is read, planned, encoded and written `CHUNK_ROWS` items at a time,
then released: besides one chunk, a run keeps ~24 bytes a row (`sources.KeySet`, `plan.Seen`).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from indexer.dedup import EncodedContents
from indexer.encode import encoded, make_executor, transcribe
from indexer.executors import Executor
from indexer.index import build_indexes, summarise
from indexer.plan import Planner
from indexer.report import ChunkProgress, IndexSummary, ProgressFn, Stopwatch
from indexer.sources import ItemSpec, Problem, Scan, Stream, confine, stream
from indexer.target import Target
from indexer.write import FAULTS, Writer
from retrieval.checks import check_collection_name, whole_number
from retrieval.device import check_device
from retrieval.encoders import Encoder
from retrieval.media import MODALITIES
from retrieval.profiles import Profile
from storage import Collection, CollectionLock, Database, StorageError, VectorStorage, remove_stale_temporaries
from storage.catalog import owner_of
from storage.errors import WRITE_ERRNOS
from storage.repository import set_collection

__all__ = ["CHUNK_ROWS", "DEFAULT_STRATEGIES", "FAULTS", "IndexSummary", "Indexer", "ProgressFn"]

DEFAULT_STRATEGIES = ("late", "early", "hybrid")

# A source's items are planned, encoded and written this many at a time, then released: with a few bytes a
# row kept for pruning (`plan.Seen`) and for repeated ids (`sources.KeySet`), what bounds a manifest's memory.
CHUNK_ROWS = 8192


@dataclass
class _Run:
    """One run's stages and what they carry from chunk to chunk."""

    writer: Writer
    planner: Planner
    executor: Executor  # one a run: Ray's actors load their encoders once
    contents: EncodedContents
    summary: IndexSummary
    stage: Stopwatch
    progress: ChunkProgress


class Indexer:
    """Indexes one collection of one database; reusable across runs."""

    def __init__(
        self,
        db_url: str,
        collection: str = "default",
        profile: Profile | None = None,
        device: str | None = None,
        batch_size: int = 64,
        workers: int | None = None,
        vector_dir: Path | None = None,
        strategies: tuple[str, ...] = DEFAULT_STRATEGIES,
        flush_assets: int = 1024,
        flush_seconds: float = 15.0,
        vector_backend: str | None = None,
        executor: str = "local",
        ray_address: str | None = None,
        migrate: bool = False,
    ) -> None:
        check_collection_name(collection)  # before any row is written: a 300-character name is refused here
        whole_number("batch_size", batch_size, 1)
        whole_number("flush_assets", flush_assets, 1)
        check_device(device)  # a device this machine lacks is refused before anything is written
        self.db = Database(db_url)
        self.db.require_writable("index into it")
        self.collection_name, self.device = collection, device
        self.batch_size, self.workers, self.strategies = batch_size, workers, strategies
        self.executor_name, self.ray_address = executor, ray_address
        self.flush_assets, self.flush_seconds = flush_assets, flush_seconds  # how much work a crash may cost
        self.transcripts: dict[str, str] = {}  # sha256 -> what the recording says, for this chunk's work
        self.target = Target(self.db, collection, profile, device, vector_dir, vector_backend, migrate)

    @property
    def collection(self) -> Collection:
        return self.target.collection

    @property
    def profile(self) -> Profile:
        return self.target.profile

    @property
    def storage(self) -> VectorStorage:
        return self.target.storage

    @property
    def encoders(self) -> dict[str, Encoder]:
        return self.target.encoders

    def load_encoders(self) -> None:
        """Make and record the profile's encoders, refusing one that changed. A run starts with it; calling it
        before `run` keeps loading the models out of what a caller times."""
        self.target.load_encoders()

    def executor(self) -> Executor:
        return make_executor(
            self.target, self.executor_name, self.batch_size, self.workers, self.ray_address, self.transcripts
        )

    def run(
        self,
        source: str | Path,
        *,
        prune: bool = False,
        progress: ProgressFn | None = None,
        roots: list[Path] | None = None,
        confined: bool = True,
    ) -> IndexSummary:
        """Index `source`; files outside its folder (or the extra `roots`) are refused, not read, unless
        `confined` is False (a manifest given by its own author on the command line: see the threat model in
        docs/reliability.md). With `prune`, items that were not seen because a folder could not be listed are kept.

        One writer per collection: a second run at the same time raises `CollectionBusyError`. A write
        that fails (disk full, read-only folder) raises `StorageError` and leaves the previous files whole.
        """
        try:  # the lock file is a write too: a full disk there is the same clear error
            what, owner = f"collection {self.collection_name!r}", owner_of(self.db, self.collection.id)
            with CollectionLock(self.storage.root, what, db=self.db, name=owner):
                remove_stale_temporaries(self.storage.root)
                return self._run(Path(source), prune, progress, roots or [], confined)
        except OSError as exc:
            if exc.errno not in WRITE_ERRNOS:
                raise
            raise StorageError(
                f"cannot write {exc.filename or self.storage.root}: {exc.strerror}; "
                "nothing was half-written: the previous index and database are intact, and "
                "running again once there is room finishes the job"
            ) from exc

    def _run(
        self, source: Path, prune: bool, progress: ProgressFn | None, roots: list[Path], confined: bool = True
    ) -> IndexSummary:
        started = time.perf_counter()
        summary = IndexSummary()
        stage = Stopwatch(summary.stages)
        with stage("load encoders"):
            self.target.start_migration()
            self.target.load_encoders()
        with stage("scan"):
            found = stream(source)
            with self.db.session() as session:
                set_collection(session, self.collection.id, root=str(found.listing.root))
        writer = Writer(self.target, self.flush_assets, self.flush_seconds)
        with stage("reconcile"):
            writer.reconcile()
        run = _Run(
            writer,
            Planner(self.target, writer.tables),
            self.executor(),
            EncodedContents(),
            summary,
            stage,
            ChunkProgress(progress),
        )
        try:
            refused, not_made = self._chunks(run, found, roots, confined)
        finally:
            run.executor.close()
        scan_problems = found.listing.problems + refused
        summary.problems += scan_problems + not_made
        with stage("prune"):
            writer.prune(run.planner.seen, found.listing, summary, prune)
        with stage("index"):
            self.target.retire_encoders()
            build_indexes(self.target, self.strategies, progress)
        summarise(self.target, summary, scan_problems + not_made)
        summary.seconds = time.perf_counter() - started
        return summary

    def _chunks(
        self, run: _Run, found: Stream, roots: list[Path], confined: bool
    ) -> tuple[list[Problem], list[Problem]]:
        """Every chunk of the source, one after another; returns the files confinement refused and the
        files of items not made."""
        refused: list[Problem] = []
        not_made: list[Problem] = []
        while True:
            with run.stage("scan"):
                chunk = list(itertools.islice(found.items, CHUNK_ROWS))
                # what the source lists, refused or not (confine drops refused assets in place): pruning removes
                # what the source no longer lists, never what it lists but may not read this time
                listed = [ItemSpec(i.key, dict(i.assets)) for i in chunk]
                kept = Scan(chunk, [], found.listing.root)
                kept = confine(kept, roots) if confined else kept
                refused += kept.problems
            if not chunk:
                return refused, not_made
            not_made += self._chunk(run, listed, kept.items)
            run.progress.next_chunk()

    def _chunk(self, run: _Run, listed: list[ItemSpec], specs: list[ItemSpec]) -> list[Problem]:
        """Plan, encode and write one chunk of the source's items; returns the files of items not made."""
        with run.stage("plan"):
            work, created = run.planner.plan(listed, specs, run.summary, run.progress)
            # one modality after another: every batch then fills each encoder's batch (64 images, not
            # 25 images + 25 clips + 14 texts), which is what the encoders' throughput is measured at
            work.sort(key=lambda w: MODALITIES.index(w.spec.modality))
        with run.stage("transcribe"):
            self.transcripts.clear()  # the executor holds this mapping: it is updated, not replaced
            self.transcripts.update(transcribe(self.target, work, run.progress))
        with run.stage("decode+encode+write"):
            batches = encoded(work, run.executor, run.contents, run.writer.tables, self.target)
            run.writer.write(batches, len(work), run.summary, run.progress)
            return run.writer.drop_unusable(created)
