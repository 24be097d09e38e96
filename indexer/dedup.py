"""Identical content is decoded and encoded once: a manifest naming one file on 200,000 rows encodes it once.

Within a chunk of work, copies wait for their leader's batch (`split_duplicates`, `with_copies`). Across
chunks, `EncodedContents` remembers what this run encoded, by content, so that a later chunk's copies take
the leader's decoding and its vectors from the tables instead of being decoded again.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np

from indexer.executors import EncodedBatch
from indexer.work import Decoded, WorkItem
from retrieval.profiles import Field
from storage import VectorTable

# Distinct contents remembered across chunks, the most recently used kept: ~0.9 KB each (a decoding without its
# media), up to ~3 KB for a text (its 2,000-character preview): 15 to 48 MB at most, whatever the source's length.
CONTENTS_REMEMBERED = 16_384

ContentKey = tuple[str, str]  # (modality, sha256)


def split_duplicates(work: list[WorkItem]) -> tuple[list[WorkItem], dict[ContentKey, list[WorkItem]]]:
    """The work to encode, one asset per distinct content (modality and hash), and the assets that are copies
    of one of those."""
    unique: list[WorkItem] = []
    copies: dict[ContentKey, list[WorkItem]] = {}
    for item in work:
        if item.sha256 is None or item.error is not None:
            unique.append(item)
        elif (key := (item.spec.modality, item.sha256)) in copies:
            copies[key].append(item)
        else:
            copies[key] = []
            unique.append(item)
    return unique, copies


def with_copies(batch: EncodedBatch, copies: dict[ContentKey, list[WorkItem]]) -> EncodedBatch:
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


class EncodedContents:
    """What this run has encoded, by content: each content's decoding (media already dropped), whose item's
    vectors are in the tables once its chunk is written."""

    def __init__(self, limit: int = CONTENTS_REMEMBERED) -> None:
        self.limit = limit
        self.known: OrderedDict[ContentKey, Decoded] = OrderedDict()

    def remember(self, batch: EncodedBatch) -> None:
        for d in batch.decoded:
            if d.work.sha256 is not None and d.work.error is None:
                key = (d.work.spec.modality, d.work.sha256)
                self.known[key] = d
                self.known.move_to_end(key)
        while len(self.known) > self.limit:
            self.known.popitem(last=False)

    def reuse(
        self, work: list[WorkItem], tables: dict[str, VectorTable], fields: list[Field]
    ) -> tuple[list[WorkItem], EncodedBatch]:
        """(the work still to encode, a batch giving the rest what their content was given before). A content
        whose vectors are not all in the tables any more is encoded again."""
        rest: list[WorkItem] = []
        reused: list[Decoded] = []
        for w in work:
            d = self._known(w)
            if d is not None and (d.error is not None or _has_vectors(d.work, tables, fields)):
                reused.append(dataclasses.replace(d, work=w))
            else:
                rest.append(w)
        vectors = {}
        for f in fields:
            ok = [d for d in reused if d.error is None and d.work.spec.modality == f.modality]
            if ok:
                leaders = np.array([self.known[(d.work.spec.modality, d.work.sha256 or "")].work.item_id for d in ok])
                rows, _ = tables[f.key].lookup(leaders)
                vectors[f.key] = (np.array([d.work.item_id for d in ok], np.int64), rows)
        return rest, EncodedBatch(reused, vectors)

    def _known(self, work: WorkItem) -> Decoded | None:
        if work.sha256 is None or work.error is not None:
            return None
        key = (work.spec.modality, work.sha256)
        if key in self.known:
            self.known.move_to_end(key)
        return self.known.get(key)


def _has_vectors(work: WorkItem, tables: dict[str, VectorTable], fields: list[Field]) -> bool:
    return all(work.item_id in tables[f.key] for f in fields if f.modality == work.spec.modality)
