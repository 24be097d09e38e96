"""A collection's rows as front ends and evaluation read them: keys, items, metadata, transcripts.

`SearchEngine.catalogue` hands one out; none of its reads opens an index or a model."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select

from retrieval.profiles import Profile
from retrieval.results import QueryInput
from retrieval.transcribe import DEFAULT_TRANSCRIBER, reads_transcript, transcriber_identity
from storage import Database, Item
from storage.repository import item_metadata, items_by_ids, stored_transcripts, unencoded_items


class Catalogue:
    """One collection's items, read in one database query each."""

    def __init__(self, db: Database, collection_id: int, generation: int, profile: Profile) -> None:
        self.db, self.collection_id, self.generation, self.profile = db, collection_id, generation, profile
        self._keys: tuple[int, dict[int, str]] | None = None  # (generation, item id -> key), read once a generation

    def item_keys(self) -> dict[int, str]:
        """Item id -> key for every item of the collection (evaluation speaks in keys)."""
        if self._keys is None or self._keys[0] != self.generation:
            with self.db.session() as session:
                rows = session.execute(select(Item.id, Item.key).where(Item.collection_id == self.collection_id))
                self._keys = (self.generation, dict(rows.all()))
        return self._keys[1]

    def unencoded(self) -> int:
        """Items with nothing encoded yet (an indexing run stopped before them): no search can find them."""
        with self.db.session() as session:
            return unencoded_items(session, self.collection_id)

    def items(self, ids: Iterable[int]) -> dict[int, Item]:
        """Items with their assets loaded (usable after the call), in one query."""
        with self.db.session() as session:
            return items_by_ids(session, ids)

    def item_query(self, item_id: int) -> QueryInput | None:
        """The query an item makes of itself (its readable text, image and audio): "search with this item"."""
        return self.item_queries([item_id]).get(item_id)

    def item_queries(self, ids: Iterable[int]) -> dict[int, QueryInput]:
        """`item_query` of each of `ids` that has a readable modality, in one database query."""
        queries = {}
        for item_id, item in self.items(ids).items():
            ok = {a.modality: a for a in item.assets if a.status == "ok"}
            if ok:
                queries[item_id] = QueryInput(
                    text=ok["text"].preview if "text" in ok else None,
                    image=ok["image"].path if "image" in ok else None,
                    audio=ok["audio"].path if "audio" in ok else None,
                )
        return queries

    def metadata(self) -> dict[int, dict]:
        """Item id -> metadata for every item of the collection."""
        with self.db.session() as session:
            return item_metadata(session, self.collection_id)

    def transcript(self, item_id: int) -> dict[str, Any] | None:
        """What the item's recording says (text, language, confidence, model), if the collection transcribes."""
        with self.db.session() as session:
            item = items_by_ids(session, [item_id]).get(item_id)
            if item is None:
                return None
            heard = self.transcripts(session, list(item.assets))
            return next((heard[a.sha256] for a in item.assets if a.sha256 in heard), None)

    @property
    def keeps_transcripts(self) -> bool:
        """Whether a field of the collection holds what its recordings say (`reads_transcript`)."""
        return any(reads_transcript(f.modality, f.encoder) for f in self.profile.fields)

    def transcripts(self, session: Any, assets: list[Any]) -> dict[str, dict[str, Any]]:
        """sha256 -> the transcript the collection's transcriber made of that recording (none if it has none),
        within the caller's `session`."""
        if not self.keeps_transcripts:
            return {}
        model = transcriber_identity(self.profile.transcriber or DEFAULT_TRANSCRIBER)
        digests = [a.sha256 for a in assets if a.modality == "audio" and a.status == "ok" and a.sha256]
        rows = stored_transcripts(session, model, digests)
        return {
            sha: {"text": r.text, "language": r.language, "confidence": r.confidence, "model": r.model}
            for sha, r in rows.items()
        }
