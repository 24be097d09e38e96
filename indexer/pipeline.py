"""The indexing pipeline: scan → hash → decode + encode (an executor: local threads, or Ray) → write → index.

Incremental: an asset whose content hash is unchanged and whose vectors exist is not re-encoded.
Crash-safe: vectors are saved (atomically) *before* the database rows that point at them are committed,
and each run starts by dropping vectors that no committed row backs, so any interruption leaves the
database and the vector files consistent and the next run finishes the job. FAISS indexes are derived
from the vectors and carry the generation they were built at, so a stale one is rebuilt, never trusted.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from indexer.executors import EXECUTORS, EncodedBatch, Executor, ExecutorSettings, sample_rates
from indexer.sources import AssetSpec, ItemSpec, Problem, Scan, confine, scan
from indexer.transcripts import transcripts_for
from indexer.unusable import drop_unusable
from indexer.work import Decoded, WorkItem
from retrieval.checks import check_collection_name, whole_number
from retrieval.device import check_device
from retrieval.encoders import Encoder, create_encoders
from retrieval.encoders.base import refuse_changed_encoder
from retrieval.fusion import create_strategy
from retrieval.media import MODALITIES, MediaError
from retrieval.profiles import PROFILES, Profile, newer_profile
from retrieval.space import VectorSpace
from retrieval.transcribe import DEFAULT_TRANSCRIBER, reads_transcript
from storage import (
    Asset,
    Collection,
    CollectionBusyError,
    CollectionLock,
    Database,
    EncoderMismatchError,
    EncoderRecord,
    IndexCatalog,
    Item,
    SkippedFile,
    StorageError,
    VectorTable,
    collection_folder,
    default_vector_base,
    field_key,
    normalise_backend,
    remove_stale_temporaries,
)
from storage.catalog import collection_storage, owner_of
from storage.errors import WRITE_ERRNOS
from storage.models import utcnow
from storage.repository import bump_generation, get_collection, ok_ids_by_modality, set_collection

ProgressFn = Callable[[str, int, int], None]
"""(stage, done, total): the CLI drives tqdm with it, the UI st.progress."""

# Named points where tests inject a crash: `FAULTS[name] = callable` (monkeypatch.setitem), a no-op otherwise.
FAULTS: dict[str, Callable[[], None]] = {}


def fault(point: str) -> None:
    hook = FAULTS.get(point)
    if hook is not None:
        hook()


DEFAULT_STRATEGIES = ("late", "early", "hybrid")


@dataclass
class IndexSummary:
    items: int = 0
    assets: dict[str, int] = field(default_factory=dict)
    encoded: int = 0
    unchanged: int = 0
    changed: int = 0
    removed: int = 0
    missing: int = 0
    unseen: int = 0  # items kept because their folder (or a manifest row) could not be read
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in vars(self).items() if k != "problems"},
            "problems": [vars(p) for p in self.problems],
        }


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
        # How much work a crash may cost: vectors and rows are written together at every flush point.
        # ("Flush", not "checkpoint": a checkpoint is a trained fusion model.)
        self.flush_assets, self.flush_seconds = flush_assets, flush_seconds
        self._created: set[int] = set()  # the items the current run made (`_plan`)
        self.encoders: dict[str, Encoder] = {}
        self.migration: Profile | None = None  # the profile a run moves an existing collection to
        self.migrating = migrate  # also: encode again what an encoder now makes differently (`_encode_again`)
        self.transcripts: dict[str, str] = {}  # sha256 -> what the recording says, for this run's work
        self.collection = self._open_collection(profile, vector_dir, vector_backend, migrate)
        self.profile = Profile.from_dict(self.collection.profile)
        self.storage = collection_storage(self.db, self.collection, write=True)

    # -- set-up ------------------------------------------------------------------------------------
    def _open_collection(
        self, profile: Profile | None, vector_dir: Path | None, vector_backend: str | None, migrate: bool = False
    ) -> Collection:
        with self.db.session() as session:
            row = get_collection(session, self.collection_name)
        if row is None:
            return self._new_collection(profile or PROFILES["offline"], vector_dir, vector_backend)
        if vector_backend is not None and normalise_backend(vector_backend) != row.vector_backend:
            raise StorageError(
                f"collection {self.collection_name!r} keeps its indexes on {row.vector_backend!r}, not "
                f"{vector_backend!r}; use another --collection name to index onto another backend"
            )
        stored = Profile.from_dict(row.profile)
        if migrate:
            self.migration = profile or newer_profile(stored)
        elif profile is not None and stored.encoders != profile.encoders:
            raise EncoderMismatchError(
                f"collection {self.collection_name!r} was indexed with profile {stored.label} "
                f"({row.profile.get('encoders')}); asked for {profile.label}. "
                + (
                    "Add --migrate to move it (only the modalities whose encoders differ are re-encoded), "
                    "or use another --collection name."
                    if profile == newer_profile(stored)
                    else "Use another --collection name or another database for a different profile."
                )
            )
        if not Path(row.vector_dir).is_absolute():
            row.vector_dir = str(self._resolve_legacy_folder(Path(row.vector_dir)))
            with self.db.session() as session:
                session.execute(update(Collection).where(Collection.id == row.id).values(vector_dir=row.vector_dir))
        return row

    def _resolve_legacy_folder(self, folder: Path) -> Path:
        """Older versions recorded a relative --vector-dir as given: it is found only from the folder the
        indexer ran in. From there, it is recorded absolute now; from anywhere else, nothing is written
        (a new empty folder here would re-encode everything and orphan the vectors already stored)."""
        if not folder.is_dir():
            raise StorageError(
                f"collection {self.collection_name!r} records its vectors at the relative path {folder}, "
                f"which is not under {Path.cwd()}; run the indexer once from the folder it first ran in "
                "(the path is then recorded absolute and any folder works)"
            )
        return folder.resolve()

    def _new_collection(self, profile: Profile, vector_dir: Path | None, vector_backend: str | None) -> Collection:
        """A new collection's row, written only once its encoders have loaded: a first run that failed on
        missing weights used to leave a collection bound to that profile, so the next run with another
        profile was refused although nothing was indexed. (The row's id names its folder, so the row is
        made here rather than at the first flush.)"""
        self._create_encoders(profile)
        try:
            with self.db.session() as session:
                row = Collection(
                    name=self.collection_name,
                    profile=profile.to_dict(),
                    vector_dir="",
                    vector_backend=normalise_backend(vector_backend),
                )
                session.add(row)
                session.flush()  # the id names the folder: collections sharing a --vector-dir never meet
                base = vector_dir if vector_dir is not None else default_vector_base(self.db.url)
                row.vector_dir = str(collection_folder(base, self.collection_name, self.db.uid, row.id))
                session.flush()
                return row
        except IntegrityError as exc:  # its name is unique: another indexer made it a moment ago
            raise CollectionBusyError(
                f"collection {self.collection_name!r} is being created by another indexer at this moment; "
                "run again once that one has finished (nothing was written by this one)"
            ) from exc

    def _create_encoders(self, profile: Profile | None = None) -> None:
        """Every encoder of the profile; all missing weights are reported at once (`create_encoders`)."""
        profile = profile or self.profile
        names = sorted({name for names in profile.encoders.values() for name in names})
        self.encoders.update(create_encoders([n for n in names if n not in self.encoders], self.device))

    def _start_migration(self) -> None:
        """Record the profile the collection moves to; the run then encodes what its new fields lack (the
        unchanged modalities' vectors are all there, so nothing else is read again)."""
        if self.migration is None or self.migration == self.profile:
            return
        if (self.migration.transcriber or DEFAULT_TRANSCRIBER) != (self.profile.transcriber or DEFAULT_TRANSCRIBER):
            # another model hears the recordings again: its transcripts' vectors replace the old ones (removed
            # before the profile changes, so a run killed in between re-encodes with one model or the other)
            for f in self.profile.fields:
                if reads_transcript(f.modality, f.encoder):
                    self.storage.remove(f.key)
        with self.db.session() as session:
            set_collection(session, self.collection.id, profile=self.migration.to_dict())
        self.collection.profile = self.migration.to_dict()
        self.profile = self.migration

    def _retire_encoders(self) -> None:
        """Vectors and records of encoders the profile no longer names (left by a migration, or by one
        killed before this step): the collection's own files, never read again."""
        named = {name for names in self.profile.encoders.values() for name in names}
        mine = (EncoderRecord.collection_id == self.collection.id) & EncoderRecord.name.notin_(named)
        with self.db.session() as session:
            retired = {r.name: list(r.modalities) for r in session.scalars(select(EncoderRecord).where(mine))}
        if not retired:
            return
        # files first, records last: a run killed in between finds the records and finishes the job
        for name, modalities in retired.items():
            for modality in modalities:
                self.storage.remove(field_key(modality, name))
        IndexCatalog.for_collection(self.db, self.collection).forget(set(retired))
        with self.db.session() as session:
            session.execute(delete(EncoderRecord).where(mine))
            bump_generation(session, self.collection.id, self.storage.take_written())

    def load_encoders(self) -> None:
        """Make the profile's encoders (once) and record them in the collection, refusing one that changed.
        A run starts with it; calling it before `run` keeps loading the models out of what a caller times."""
        self._create_encoders()
        with self.db.session() as session:
            for name in sorted(self.encoders):
                encoder = self.encoders[name]
                record = session.scalar(select(EncoderRecord).filter_by(collection_id=self.collection.id, name=name))
                if record is None:
                    session.add(
                        EncoderRecord(
                            collection_id=self.collection.id,
                            name=name,
                            weights=encoder.weights,
                            dim=encoder.dim,
                            modalities=list(encoder.modalities),
                            preprocessing=encoder.preprocessing,
                        )
                    )
                elif (record.dim, record.preprocessing) != (encoder.dim, encoder.preprocessing) and self.migrating:
                    self._encode_again(session, record, encoder)
                else:
                    refuse_changed_encoder(self.collection.name, name, record.dim, record.preprocessing, encoder)

    def _encode_again(self, session: Session, record: EncoderRecord, encoder: Encoder) -> None:
        """An encoder that now makes other vectors under its name (new preprocessing, new weights): its
        tables and indexes go, so this run encodes its modalities again; the rest is kept. Files first, the
        record last: a run killed in between finds the old record and does the same again."""
        for modality in record.modalities:
            self.storage.remove(field_key(modality, record.name))
        IndexCatalog.for_collection(self.db, self.collection).forget({record.name})
        record.dim, record.preprocessing, record.weights = encoder.dim, encoder.preprocessing, encoder.weights
        bump_generation(session, self.collection.id, self.storage.take_written())

    def _tables(self) -> dict[str, VectorTable]:
        return {
            f.key: self.storage.load(f.key, dim=self.encoders[f.encoder].dim, encoder=f.encoder)
            for f in self.profile.fields
        }

    # -- the run -------------------------------------------------------------------------------------
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
        stage = _Stopwatch(summary.stages)
        with stage("load encoders"):
            self._start_migration()
            self.load_encoders()
        with stage("scan"):
            found = scan(source)
            # what the source lists, refused or not (confine drops refused assets in place): pruning removes
            # what the source no longer lists, never what it lists but may not read this time
            listed = Scan(
                [ItemSpec(i.key, dict(i.assets), i.metadata) for i in found.items], [], found.root, found.unseen
            )
            found = confine(found, roots) if confined else found
            summary.problems.extend(found.problems)
            with self.db.session() as session:
                set_collection(session, self.collection.id, root=str(found.root))
        tables = self._tables()
        with stage("reconcile"):
            self._reconcile(tables)
        with stage("plan"):
            work = self._plan(found.items, tables, summary, progress)
            # one modality after another: every batch then fills each encoder's batch (64 images, not
            # 25 images + 25 clips + 14 texts), which is what the encoders' throughput is measured at
            work.sort(key=lambda w: MODALITIES.index(w.spec.modality))
        with stage("transcribe"):
            self.transcripts = self._transcribe(work, progress)
        with stage("decode+encode+write"):
            self._process(work, tables, summary, progress)
            not_made = self._drop_unusable()
            summary.problems.extend(not_made)
        with stage("prune"):
            self._prune(listed, tables, summary, prune)
        with stage("index"):
            self._retire_encoders()
            self._build_indexes(progress)
        self._summarise(summary, found.problems + not_made)
        summary.seconds = time.perf_counter() - started
        return summary

    def _drop_unusable(self) -> list[Problem]:
        """This run's items with no usable file are not kept (`indexer.unusable`); their files' reasons."""
        with self.db.session() as session:
            problems = drop_unusable(session, self.collection.id, self._created)
            if problems:
                bump_generation(session, self.collection.id, self.storage.take_written())
        return problems

    def _reconcile(self, tables: dict[str, VectorTable]) -> None:
        """Drop vectors that no committed 'ok' asset backs (left by a crash between the two writes)."""
        with self.db.session() as session:
            ok = ok_ids_by_modality(session, self.collection.id)
        for f in self.profile.fields:
            table = tables[f.key]
            stray = table.ids[~np.isin(table.ids, np.fromiter(ok.get(f.modality, ()), np.int64))]
            if len(stray):
                table.remove(stray)
                self.storage.save(f.key, table)
        if self.storage.written:
            with self.db.session() as session:
                bump_generation(session, self.collection.id, self.storage.take_written())

    def _plan(
        self, specs: list[ItemSpec], tables: dict[str, VectorTable], summary: IndexSummary, progress: ProgressFn | None
    ) -> list[WorkItem]:
        """Upsert item rows and pick the assets whose content changed (or whose vectors are missing)."""
        # Every file is read before the transaction opens: inserting items takes the database's write
        # lock, and a slow disk (or a file that never ends) must not hold it and stall every other writer.
        digests = self._hash(specs, progress)
        work: list[WorkItem] = []
        with self.db.session() as session:
            existing = {
                i.key: i
                for i in session.scalars(
                    select(Item).filter_by(collection_id=self.collection.id).options(selectinload(Item.assets))
                )
            }
            new = [
                {"collection_id": self.collection.id, "key": s.key, "meta": s.metadata}
                for s in specs
                if s.key not in existing
            ]
            # one multi-row INSERT for every new item, their ids returned with it (no ORM objects to build)
            fresh = (
                {key: item_id for item_id, key in session.execute(insert(Item).returning(Item.id, Item.key), new)}
                if new
                else {}
            )
            self._created = set(fresh.values())
            for spec in specs:
                item = existing.get(spec.key)
                if item is not None and item.meta != spec.metadata:
                    item.meta = spec.metadata
                current = {a.modality: a for a in item.assets} if item is not None else {}
                item_id = item.id if item is not None else fresh[spec.key]
                for modality, asset in spec.assets.items():
                    digest = digests[(spec.key, modality)]
                    work_item = self._plan_asset(item_id, asset, digest, current.get(modality), tables, summary)
                    if work_item is not None:
                        work.append(work_item)
        return work

    @staticmethod
    def _hash(specs: list[ItemSpec], progress: ProgressFn | None) -> dict[tuple[str, str], str | OSError | MediaError]:
        """Each asset's content hash, or the error that kept it from being read (a FIFO is refused unopened)."""
        total = sum(len(s.assets) for s in specs)
        digests: dict[tuple[str, str], str | OSError | MediaError] = {}
        seen: dict[tuple[int, ...], str] = {}  # a file named on many rows is read once (same inode, size, time)
        done = 0
        for spec in specs:
            for modality, asset in spec.assets.items():
                try:
                    same = _file_identity(asset)
                    digest = seen.get(same) if same else None
                    if digest is None:
                        digest = asset.sha256()
                        if same:
                            seen[same] = digest
                    digests[(spec.key, modality)] = digest
                except (MediaError, OSError) as exc:
                    digests[(spec.key, modality)] = exc
                done += 1
                if progress and (done % 256 == 0 or done == total):
                    progress("hash", done, total)
        return digests

    def _plan_asset(
        self,
        item_id: int,
        spec: AssetSpec,
        digest: str | OSError | MediaError,
        row: Asset | None,
        tables: dict[str, VectorTable],
        summary: IndexSummary,
    ) -> WorkItem | None:
        if row is not None and isinstance(digest, str) and row.sha256 == digest:
            row.path = spec.display  # same content under a new name: no re-encoding
            has_vectors = all(item_id in tables[f.key] for f in self.profile.fields if f.modality == spec.modality)
            if row.status == "error" or has_vectors:
                summary.unchanged += 1
                return None
        if row is not None and row.status == "ok":
            summary.changed += 1
        if not isinstance(digest, str):
            reason = digest.reason if isinstance(digest, MediaError) else (digest.strerror or str(digest))
            return WorkItem(item_id, spec, None, error=f"cannot read file ({reason})")
        return WorkItem(item_id, spec, digest)

    def _transcribe(self, work: list[WorkItem], progress: ProgressFn | None) -> dict[str, str]:
        """What the new recordings say, when a field of the profile encodes it (`reads_transcript`)."""
        if not any(reads_transcript(f.modality, f.encoder) for f in self.profile.fields):
            return {}
        return transcripts_for(self.db, self.profile.transcriber or DEFAULT_TRANSCRIBER, work, self.device, progress)

    def executor(self) -> Executor:
        rates = sample_rates(self.encoders, {m: list(names) for m, names in self.profile.encoders.items()})
        settings = ExecutorSettings(
            self.encoders,
            self.profile.fields,
            rates,
            self.device,
            self.batch_size,
            self.workers,
            self.ray_address,
            self.transcripts,
        )
        return EXECUTORS.get(self.executor_name).from_settings(settings)

    def _process(
        self, work: list[WorkItem], tables: dict[str, VectorTable], summary: IndexSummary, progress: ProgressFn | None
    ) -> None:
        """Collect encoded batches; at every flush point, merge them into the tables, save the touched tables,
        then commit their rows. Merging once per flush, not per batch, keeps a run linear: each
        merge copies a whole table (at 20k items, 20 MB per field per batch of 64)."""
        done, pending, staged = 0, [], []
        last_flush = time.monotonic()
        leaders, copies = split_duplicates(work)
        for batch in self.executor().batches(leaders):
            batch = with_copies(batch, copies)
            staged.append(batch)
            pending += batch.decoded
            done += len(batch.decoded)
            summary.encoded += sum(d.error is None for d in batch.decoded)
            if len(pending) >= self.flush_assets or time.monotonic() - last_flush > self.flush_seconds:
                self._flush(pending, self._merge(staged, tables), tables)
                pending, staged, last_flush = [], [], time.monotonic()
            if progress:
                progress("encode", done, len(work))
        if pending:
            self._flush(pending, self._merge(staged, tables), tables)

    def _merge(self, batches: list[EncodedBatch], tables: dict[str, VectorTable]) -> set[str]:
        """New vectors into the in-memory tables, failed assets' old vectors out; returns the fields touched."""
        touched: set[str] = set()
        for f in self.profile.fields:
            parts = [b.vectors[f.key] for b in batches if f.key in b.vectors]
            if parts:
                tables[f.key].upsert(np.concatenate([ids for ids, _ in parts]), np.concatenate([v for _, v in parts]))
                touched.add(f.key)
            failed = np.concatenate([b.failed(f.modality) for b in batches]) if batches else np.zeros(0, np.int64)
            if len(failed) and tables[f.key].remove(failed):
                touched.add(f.key)
        return touched

    def _flush(self, pending: list[Decoded], touched: set[str], tables: dict[str, VectorTable]) -> None:
        """A flush point: vector tables first (atomically), then the rows that point at them, in one commit
        (new rows in one multi-row INSERT, changed ones in one executemany UPDATE). The assets' time of encoding
        is taken before the tables are written: a table written later holds their vectors (`indexer check`
        tells a restored older table by the items encoded after it was written)."""
        encoded_at = utcnow()
        for key in sorted(touched):
            self.storage.save(key, tables[key])
        fault("flush:tables-saved")  # a crash here leaves tables ahead of rows: the next run heals it
        with self.db.session() as session:
            item_ids = sorted({d.work.item_id for d in pending})
            existing = {
                (item_id, modality): asset_id
                for asset_id, item_id, modality in session.execute(
                    select(Asset.id, Asset.item_id, Asset.modality).where(Asset.item_id.in_(item_ids))
                )
            }
            rows = [self._asset_row(d, encoded_at) for d in pending]
            new = [r for r in rows if (r["item_id"], r["modality"]) not in existing]
            changed = [
                {"id": existing[(r["item_id"], r["modality"])], **r}
                for r in rows
                if (r["item_id"], r["modality"]) in existing
            ]
            if new:
                session.execute(insert(Asset), new)
            if changed:
                session.execute(update(Asset), changed)
            bump_generation(session, self.collection.id, self.storage.take_written())

    @staticmethod
    def _asset_row(decoded: Decoded, encoded_at: datetime) -> dict[str, Any]:
        work, ok = decoded.work, decoded.error is None
        return {
            "item_id": work.item_id,
            "modality": work.spec.modality,
            "path": work.spec.display,
            "sha256": work.sha256,
            "size_bytes": decoded.size_bytes,
            "status": "ok" if ok else "error",
            "error": decoded.error,
            "width": decoded.width,
            "height": decoded.height,
            "duration_s": decoded.duration_s,
            "encoded_at": encoded_at if ok else None,
            "preview": decoded.value if isinstance(decoded.value, str) else None,
        }

    def _prune(self, found: Scan, tables: dict[str, VectorTable], summary: IndexSummary, prune: bool) -> None:
        """Remove items (and assets) the source no longer has; never one the scan could not see (under a
        folder it could not list, or named by a manifest row it could not read): those are counted as kept."""
        wanted = {s.key: set(s.assets) for s in found.items}
        gone_items: set[int] = set()
        gone_assets: list[tuple[int, str]] = []
        hidden: set[int] = set()
        with self.db.session() as session:  # plain rows, not ORM objects: this reads the whole collection
            rows = session.execute(
                select(Item.id, Item.key, Asset.modality)
                .outerjoin(Asset)
                .where(Item.collection_id == self.collection.id)
            )
            for item_id, key, modality in rows:
                incomplete = key not in wanted or (modality is not None and modality not in wanted[key])
                if incomplete and found.unseen and found.may_hide(key):
                    hidden.add(item_id)
                    continue
                if key not in wanted:
                    gone_items.add(item_id)
                if modality is not None and (key not in wanted or modality not in wanted[key]):
                    gone_assets.append((item_id, modality))
        summary.unseen = len(hidden)
        if not prune:
            summary.missing = len(gone_items)
            return
        for f in self.profile.fields:
            ids = np.array([i for i, m in gone_assets if m == f.modality], np.int64)
            if len(ids) and tables[f.key].remove(ids):
                self.storage.save(f.key, tables[f.key])
        with self.db.session() as session:
            for item_id, modality in gone_assets:
                session.execute(delete(Asset).where(Asset.item_id == item_id, Asset.modality == modality))
            if gone_items:
                session.execute(delete(Item).where(Item.id.in_(sorted(gone_items))))
            if gone_items or gone_assets:
                bump_generation(session, self.collection.id, self.storage.take_written())
        summary.removed = len(gone_items)

    def _build_indexes(self, progress: ProgressFn | None) -> None:
        with self.db.session() as session:
            generation = session.scalar(select(Collection.generation).where(Collection.id == self.collection.id)) or 0
        dims = {name: e.dim for name, e in self.encoders.items()}
        catalog = IndexCatalog.for_collection(self.db, self.collection)
        space = VectorSpace(self.profile.fields, self.storage, generation, catalog, dims=dims)
        for number, name in enumerate(self.strategies, start=1):
            create_strategy(name).prepare(space)
            if progress:
                progress("index", number, len(self.strategies))

    def _summarise(self, summary: IndexSummary, scan_problems: list[Problem]) -> None:
        with self.db.session() as session:
            session.execute(delete(SkippedFile).where(SkippedFile.collection_id == self.collection.id))
            session.add_all(
                SkippedFile(collection_id=self.collection.id, path=p.path, reason=p.reason) for p in scan_problems
            )
            in_collection = Item.collection_id == self.collection.id
            summary.items = session.scalar(select(func.count()).select_from(Item).where(in_collection)) or 0
            counts = session.execute(
                select(Asset.modality, func.count())
                .join(Item)
                .where(in_collection, Asset.status == "ok")
                .group_by(Asset.modality)
            )
            summary.assets = dict(sorted((m, n) for m, n in counts))
            errors = session.execute(
                select(Asset.path, Asset.error)
                .join(Item)
                .where(in_collection, Asset.status == "error")
                .order_by(Asset.id)
            )
            summary.problems += [Problem(path, error or "error") for path, error in errors]


def _file_identity(asset: AssetSpec) -> tuple[int, ...] | None:
    """What makes two paths the same unchanged file: device, inode, size, modification time."""
    try:
        info = os.stat(asset.path) if asset.inline_text is None else None
    except OSError:  # reading it says why, in the reader's words
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns) if info else None


def split_duplicates(work: list[WorkItem]) -> tuple[list[WorkItem], dict[tuple[str, str], list[WorkItem]]]:
    """The work to encode, one asset per distinct content (modality and hash), and the assets that are copies
    of one of those: a manifest naming one file on 200,000 rows decodes and encodes it once."""
    unique: list[WorkItem] = []
    copies: dict[tuple[str, str], list[WorkItem]] = {}
    for item in work:
        if item.sha256 is None or item.error is not None:
            unique.append(item)
        elif (key := (item.spec.modality, item.sha256)) in copies:
            copies[key].append(item)
        else:
            copies[key] = []
            unique.append(item)
    return unique, copies


def with_copies(batch: EncodedBatch, copies: dict[tuple[str, str], list[WorkItem]]) -> EncodedBatch:
    """`batch` with each of its assets' copies given the same decoding result and the same vectors."""
    decoded = list(batch.decoded)
    extra: dict[tuple[str, int], list[int]] = {}  # (modality, the encoded asset's item id) -> its copies' items
    for d in batch.decoded:
        if d.work.sha256 is None or d.work.error is not None:
            continue
        for copy in copies.pop((d.work.spec.modality, d.work.sha256), []):
            decoded.append(dataclasses.replace(d, work=copy))
            extra.setdefault((d.work.spec.modality, d.work.item_id), []).append(copy.item_id)
    if not extra:
        return dataclasses.replace(batch, decoded=decoded)
    vectors = {}
    for key, (ids, rows) in batch.vectors.items():
        modality = key.split("@")[0]
        per_row = [extra.get((modality, item_id), []) for item_id in ids.tolist()]
        at = [n for n, items in enumerate(per_row) for _ in items]
        more = np.array([c for items in per_row for c in items], ids.dtype)
        vectors[key] = (np.concatenate([ids, more]), np.concatenate([rows, rows[at]]))
    return EncodedBatch(decoded, vectors)


class _Stopwatch:
    """Per-stage wall time, so the summary (and the benchmarks) can show where time goes."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into

    def __call__(self, name: str) -> _Stopwatch:
        self.name = name
        return self

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.into[self.name] = self.into.get(self.name, 0.0) + time.perf_counter() - self.started
