"""The collection a run writes: its database row (opened, or made once the encoders load), its profile and
the move to a new one, its encoders (recorded, and refused when they changed) and its vector storage."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from retrieval.encoders import Encoder, create_encoders
from retrieval.encoders.base import refuse_changed_encoder
from retrieval.profiles import PROFILES, Profile, newer_profile
from retrieval.transcribe import DEFAULT_TRANSCRIBER, reads_transcript
from storage import (
    Collection,
    CollectionBusyError,
    Database,
    EncoderMismatchError,
    EncoderRecord,
    IndexCatalog,
    StorageError,
    VectorTable,
    collection_folder,
    default_vector_base,
    field_key,
    normalise_backend,
)
from storage.catalog import collection_storage
from storage.repository import bump_generation, get_collection, set_collection


class Target:
    """One collection of one database, opened for writing."""

    def __init__(
        self,
        db: Database,
        name: str,
        profile: Profile | None,
        device: str | None,
        vector_dir: Path | None,
        vector_backend: str | None,
        migrate: bool,
    ) -> None:
        self.db, self.collection_name, self.device = db, name, device
        self.encoders: dict[str, Encoder] = {}
        self.migration: Profile | None = None  # the profile a run moves an existing collection to
        self.migrating = migrate  # also: encode again what an encoder now makes differently (`_encode_again`)
        self.collection = self._open_collection(profile, vector_dir, vector_backend, migrate)
        self.profile = Profile.from_dict(self.collection.profile)
        self.storage = collection_storage(self.db, self.collection, write=True)

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

    def start_migration(self) -> None:
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

    def retire_encoders(self) -> None:
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

    def tables(self) -> dict[str, VectorTable]:
        return {
            f.key: self.storage.load(f.key, dim=self.encoders[f.encoder].dim, encoder=f.encoder)
            for f in self.profile.fields
        }
