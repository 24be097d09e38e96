"""`python -m indexer check`: compare a collection's database rows, vector tables and every index.

The database says which items hold a good asset of each modality; every field's table must hold a
vector for exactly those items, and every index exactly the ids its table(s) hold, built by the encoders
on record, at the collection's generation. `repair=True` fixes what can be rebuilt from what is stored
(vectors no row backs are dropped; indexes are rebuilt from the tables) under the writer lock, and says
what cannot: vectors that are gone come back only by indexing the media again.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, select

from indexer.pipeline import ProgressFn
from indexer.status import reindex_command, unfinished_message
from retrieval.errors import NotFoundError
from retrieval.fusion.concat import concat_index
from retrieval.profiles import Field, Profile
from retrieval.space import VectorSpace
from storage import (
    Asset,
    Collection,
    CollectionLock,
    CorruptArtifactError,
    Database,
    EncoderMismatchError,
    EncoderRecord,
    IndexBuild,
    IndexCatalog,
    Item,
    StorageError,
    VectorStorage,
    VectorTable,
)
from storage.artifacts import damaged_rows
from storage.catalog import collection_storage, owner_of
from storage.lock import writer_active
from storage.repository import (
    bump_generation,
    get_collection,
    ok_ids_by_modality,
    record_tables,
    unencoded_items,
)


@dataclass
class Finding:
    """One difference: which artefact, where, what is wrong, and what repairing does (or cannot do)."""

    artefact: str  # "table", "index" or "items"
    name: str  # a field (image@hog) or an index (strategy/key)
    location: str
    problem: str
    fix: str
    repairable: bool
    repaired: bool = False


@dataclass
class CheckReport:
    collection: str
    items: int
    tables: int
    indexes: int
    findings: list[Finding] = field(default_factory=list)
    stale: int = 0  # indexes built from older vectors: not a difference, the next search rebuilds them
    busy: bool = False  # an indexer was writing: differences may be its checkpoint in progress

    @property
    def left(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "left": len(self.left)}


def check_collection(
    url: str, name: str = "default", *, repair: bool = False, progress: ProgressFn | None = None
) -> CheckReport:
    """Every difference between the rows, the tables and the indexes; with `repair`, fixed where it can be."""
    db = Database(url)
    with db.session() as session:
        row = get_collection(session, name)
        if row is None:
            raise NotFoundError(f"no collection {name!r} in {url}")
    if repair:
        db.require_writable("repair it")
    storage = collection_storage(db, row, write=repair)
    if not repair:
        return _Check(db, row, storage, repair=False, progress=progress).run(busy=writer_active(storage.root))
    with CollectionLock(storage.root, f"collection {name!r}", db=db, name=owner_of(db, row.id)):
        return _Check(db, row, storage, repair=True, progress=progress).run(busy=False)


SOURCE_SAMPLE = 1000  # items whose files name the folder to index again (a common folder: a few suffice)


class _Check:
    def __init__(
        self, db: Database, row: Collection, storage: VectorStorage, *, repair: bool, progress: ProgressFn | None
    ) -> None:
        self.db, self.row, self.storage, self.repair, self.progress = db, row, storage, repair, progress
        self.profile = Profile.from_dict(row.profile)
        self.dims: dict[str, int] = {}
        self.reindex = reindex_command(db.url, row)
        self.findings: list[Finding] = []
        self.tables: dict[str, VectorTable] = {}

    def run(self, busy: bool) -> CheckReport:
        with self.db.session() as session:
            ok = ok_ids_by_modality(session, self.row.id)
            builds = session.scalars(select(IndexBuild).where(IndexBuild.collection_id == self.row.id)).all()
            records = session.execute(
                select(EncoderRecord.name, EncoderRecord.dim).filter_by(collection_id=self.row.id)
            )
            self.dims = dict(records.tuples().all())
            items = len(set().union(*ok.values())) if ok else 0
            unencoded = unencoded_items(session, self.row.id)
        if unencoded and not busy:
            self.findings.append(
                Finding(
                    "items",
                    "unencoded",
                    self.db.url,
                    unfinished_message(unencoded, self.row, self.db.url),
                    self.reindex,
                    False,
                )
            )
        total = len(self.profile.fields) + len(builds)
        changed = False
        for number, f in enumerate(self.profile.fields, start=1):
            changed |= self._check_table(f, np.fromiter(sorted(ok.get(f.modality, ())), np.int64))
            self._tick(number, total)
        generation = self._generation()
        broken: list[tuple[IndexBuild, Finding | None]] = []
        stale = sum(b.generation != generation for b in builds)
        for number, build in enumerate(builds, start=len(self.profile.fields) + 1):
            finding = self._check_index(build, generation) if build.generation == generation else None
            if finding is not None or (changed and build.generation == generation):
                broken.append((build, finding))  # wrong, or built from tables that repairing just changed
            self._tick(number, total)
        if changed:
            generation = self._bump_generation()
        elif self.repair and self.storage.written:  # digests filled in, nothing changed: indexes stay current
            with self.db.session() as session:
                record_tables(session, self.row.id, self.storage.take_written())
        if self.repair and broken:
            self._rebuild(broken, generation)
        return CheckReport(self.row.name, items, len(self.tables), len(builds), self.findings, stale, busy)

    def _tick(self, done: int, total: int) -> None:
        if self.progress:
            self.progress("check", done, total)

    # -- tables ---------------------------------------------------------------------------------------
    def _check_table(self, f: Field, wanted: np.ndarray) -> bool:
        """Compare one field's table with the rows; returns whether repairing changed the table."""
        path = self.storage.path_for(f.key)
        try:
            table = self.storage.load(f.key, dim=self.dims.get(f.encoder), encoder=f.encoder, against_record=False)
            if not path.exists():
                raise FileNotFoundError(path)
        except FileNotFoundError:
            if len(wanted):
                self._lost(
                    f, path, f"missing, but {len(wanted)} items have {f.modality} vectors in the database", wanted
                )
            return False
        except CorruptArtifactError as exc:
            self._unreadable(f, path, exc)
            return False
        except (EncoderMismatchError, StorageError) as exc:  # another encoder's, or another collection's
            self.findings.append(Finding("table", f.key, str(path), str(exc), "cannot be repaired here", False))
            return False
        if "ids" in (damage := self.storage.damaged(f.key)):
            self._unreadable(f, path, CorruptArtifactError("its ids changed since it was written"))
            return False
        damaged, ahead = self._damaged_ids(table, damage), self.storage.ahead(f.key, table)
        changed = self._drop_suspects(f, table, damaged, self._unrecorded_ids(f, table), ahead)
        self.tables[f.key] = table
        lost, extra = np.setdiff1d(wanted, table.ids), np.setdiff1d(table.ids, wanted)
        if len(lost):
            self._lost(f, path, f"{len(lost)} items have a good {f.modality} asset but no vector ({_ids(lost)})", lost)
        if not len(extra):
            return changed
        finding = Finding(
            "table",
            f.key,
            str(path),
            f"{len(extra)} vectors that no database row backs ({_ids(extra)})",
            "drop them from the table (the indexes are rebuilt)",
            True,
        )
        self.findings.append(finding)
        if self.repair:
            table.remove(extra)
            self.storage.save(f.key, table)
            finding.repaired = True
        return self.repair

    def _damaged_ids(self, table: VectorTable, damage: dict[str, list[tuple[int, int]]]) -> np.ndarray:
        """Items whose rows lie in a block that no longer matches its checksum."""
        parts = [table.ids[start:end] for start, end in damage.get("vectors", [])]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def _unrecorded_ids(self, f: Field, table: VectorTable) -> np.ndarray | None:
        """None when the table is the one on record; else the items whose vectors it may hold from before
        they were last encoded (encoded when or after the table was written: a backup restored over newer
        vectors). A table newer than its record (the database restored) holds none such: it is adopted."""
        if self.storage.matches_record(f.key, table.digest, table.header):
            return None
        written = _when(table.header.get("written_at"))
        with self.db.session() as session:
            encoded = session.execute(
                select(Asset.item_id, Asset.encoded_at)
                .join(Item)
                .where(Item.collection_id == self.row.id, Asset.modality == f.modality, Asset.status == "ok")
            ).tuples()
            since = [item for item, at in encoded if not _before(_when(at), written)]
        return np.intersect1d(table.ids, np.asarray(since, np.int64))

    def _drop_suspects(
        self, f: Field, table: VectorTable, damaged: np.ndarray, unrecorded: np.ndarray | None, ahead: np.ndarray
    ) -> bool:
        """Report (and with `repair`, drop from the table) vectors that cannot be trusted; the items lose
        their vector, so the next indexer run encodes them again. Returns whether the table changed."""
        path, problems = self.storage.path_for(f.key), []
        if len(damaged):
            problems.append(f"{len(damaged)} vectors changed since the table was written ({_ids(damaged)})")
        if len(ahead):
            problems.append(
                f"its last write, which the database never recorded (an indexing run stopped between its two "
                f"writes, or the database was restored from a backup), changed {len(ahead)} items' vectors "
                f"({_ids(ahead)}): they may not be of the content the database describes"
            )
        if unrecorded is not None:
            problems.append(
                f"not the table the database recorded (written {table.header.get('written_at', 'before 0.15.0')}: "
                "a backup restored over newer vectors, or the database over newer tables); "
                + (
                    f"items encoded since may hold older vectors here: {len(unrecorded)} ({_ids(unrecorded)})"
                    if len(unrecorded)
                    else "no item was encoded since"
                )
            )
        none = np.zeros(0, np.int64)
        suspects = np.union1d(np.union1d(damaged, ahead), unrecorded if unrecorded is not None else none)
        if not problems:
            if self.repair and table.digest is not None:
                self.storage.accept(f.key, table.digest)  # a record made before 0.15.0 is filled in
            return False
        fix = f"drop them from the table; then index the media again to re-encode them ({self.reindex})"
        finding = Finding("table", f.key, str(path), "; ".join(problems), fix if len(suspects) else "record it", True)
        self.findings.append(finding)
        if not self.repair:
            return False
        table.remove(suspects)
        self.storage.save(f.key, table)
        finding.repaired = True
        return True

    def _lost(self, f: Field, path: Path, problem: str, ids: np.ndarray) -> None:
        fix = f"cannot be rebuilt from what is stored: index the media again to re-encode them ({self._source_of(ids)})"
        self.findings.append(Finding("table", f.key, str(path), problem, fix, False))

    def _source_of(self, ids: np.ndarray) -> str:
        """The command that re-encodes `ids`: the collection's last source when their files are under it; else
        the folder their files share, named as a hint (they came from another folder or manifest)."""
        with self.db.session() as session:
            paths = session.scalars(select(Asset.path).where(Asset.item_id.in_(ids[:SOURCE_SAMPLE].tolist())))
            folders = {str(Path(p).parent) for p in paths if p}
        source = os.path.commonpath(sorted(folders)) if folders else None
        root = self.row.root
        if source is None or (
            root and Path(source).is_relative_to(Path(root).parent if Path(root).is_file() else root)
        ):
            return self.reindex
        command = reindex_command(self.db.url, self.row, "SOURCE")
        return f"{command}, SOURCE being the folder or manifest they came from: their files are under {source}"

    def _unreadable(self, f: Field, path: Path, exc: Exception) -> None:
        """The indexer refuses a table it cannot read: repairing moves it aside first, so the advice names that."""
        fix = f"cannot be rebuilt from what is stored: index the media again to re-encode ({self.reindex})"
        if self.repair:
            aside = path.with_name(path.name + ".corrupt")
            path.replace(aside)
            fix = f"moved aside to {aside} so the indexer can run; " + fix
        else:
            repair = f"python -m indexer check --repair --db {self.db.url} --collection {self.row.name}"
            fix = (
                f"cannot be rebuilt from what is stored, and the indexer refuses it: `{repair}` moves it aside, "
                f"then index the media again to re-encode ({self.reindex})"
            )
        self.findings.append(Finding("table", f.key, str(path), f"unreadable ({exc})", fix, False))

    # -- indexes --------------------------------------------------------------------------------------
    def _check_index(self, build: IndexBuild, generation: int) -> Finding | None:
        name, fix = f"{build.strategy}/{build.key}", "rebuild it from the vector tables"
        problem = self._index_problem(build, generation)
        if problem is None:
            return None
        finding = Finding("index", name, build.file, problem, fix, True)
        self.findings.append(finding)
        return finding

    def _index_problem(self, build: IndexBuild, generation: int) -> str | None:
        catalog = IndexCatalog.for_collection(self.db, self.row)
        try:
            store = catalog.backend.open(catalog.location(build.file), {"encoders": list(build.encoders)})
        except (EncoderMismatchError, StorageError) as exc:
            return f"does not match its record: {exc}"
        if store is None:
            return "missing or unreadable"
        if build.file.endswith(".safetensors") and damaged_rows(Path(catalog.location(build.file))):
            return "its file changed since it was written (its checksums do not match)"
        if store.header.get("owner") not in (None, catalog.owner):
            return f"written for another collection or database ({store.header['owner']})"
        if store.header.get("generation") not in (None, generation):
            return f"an older copy (generation {store.header['generation']}, {generation} on record)"
        expected = self._expected_ids(build.strategy.removeprefix("centred-"), build.key)
        if expected is None:
            return None  # it indexes a table that is lost: reported there
        ids = store.ids()
        missing, extra = np.setdiff1d(expected, ids), np.setdiff1d(ids, expected)
        if len(missing) or len(extra) or len(ids) != len(expected):
            parts = [f"{len(missing)} missing ({_ids(missing)})"] if len(missing) else []
            parts += [f"{len(extra)} not in the tables ({_ids(extra)})"] if len(extra) else []
            return f"holds {len(ids)} ids, the tables {len(expected)}: " + (", ".join(parts) or "an id twice")
        return None

    def _expected_ids(self, strategy: str, key: str) -> np.ndarray | None:
        """What an index must hold: its field's ids, the union of an early group's, or every item's."""
        keys = [key] if strategy == "field" else key.split("+") if strategy == "early" else list(self.tables)
        if strategy in ("field", "early") and not all(k in self.tables for k in keys):
            return None
        parts = [self.tables[k].ids for k in keys if k in self.tables]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def _rebuild(self, broken: list[tuple[IndexBuild, Finding | None]], generation: int) -> None:
        """Forget each broken index, then build field and early indexes again now; a learned strategy's
        index needs its checkpoint, so the next search that uses it builds it (nothing stale is served)."""
        with self.db.session() as session:
            for build, _ in broken:
                session.execute(delete(IndexBuild).where(IndexBuild.id == build.id))
        for build, _ in broken:
            if "://" not in build.file and "#" not in build.file:
                Path(build.file).unlink(missing_ok=True)
        catalog = IndexCatalog.for_collection(self.db, self.row)
        space = VectorSpace(self.profile.fields, self.storage, generation, catalog, dims=self.dims)
        fields = {f.key: f for f in self.profile.fields}
        for build, finding in broken:
            strategy = build.strategy.removeprefix("centred-")
            view = space.centred() if build.strategy.startswith("centred-") else space
            keys = [build.key] if strategy == "field" else build.key.split("+")
            rebuilt = strategy in ("field", "early") and all(k in space.tables and k in fields for k in keys)
            if rebuilt:
                concat_index(view, [fields[k] for k in keys])
            if finding is not None:
                finding.fix += (
                    ": rebuilt" if rebuilt else ": its record is dropped; the next search that uses it rebuilds it"
                )
                finding.repaired = True

    def _generation(self) -> int:
        with self.db.session() as session:
            return int(session.scalar(select(Collection.generation).where(Collection.id == self.row.id)) or 0)

    def _bump_generation(self) -> int:
        """Tables changed: every index built from them is stale now, and the tables' digests are recorded."""
        with self.db.session() as session:
            bump_generation(session, self.row.id, self.storage.take_written())
        return self._generation()


def _when(value: object) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite gives naive ones back; a header holds ISO text)."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(at, datetime):
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _before(at: datetime | None, written: datetime | None) -> bool:
    """Whether an item was encoded before a table was written (unknown times: not before, so suspect)."""
    return at is not None and written is not None and at < written


def _ids(ids: np.ndarray, show: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:show])
    return f"ids {shown}" + (f" and {len(ids) - show} more" if len(ids) > show else "")
