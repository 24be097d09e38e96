"""Items a run made none of whose files could be used: not kept, each file's reason said instead.

A folder of bad files made an empty item per file (5 from 6, issue 37): rows that search never returns and
the Item page shows as nothing. Only items this run made are dropped; an item from an earlier run keeps its
row, since its file may be unreadable only for now and its id is what checkpoints and links name.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from indexer.sources import Problem
from storage.models import Asset, Item

NOT_MADE = "no item made: none of its files could be used"


def drop_unusable(session: Session, collection_id: int, created: Collection[int]) -> list[Problem]:
    """Delete the items in `created` with no usable ('ok') file, with their asset rows; return a
    problem per file of theirs, its own reason first. One query over the run's newest ids, not an IN of every id:
    a first run creates tens of thousands of items."""
    if not created:
        return []
    usable = exists().where(Asset.item_id == Item.id, Asset.status == "ok")
    newest = select(Item.id).where(Item.collection_id == collection_id, Item.id >= min(created), ~usable)
    empty = sorted(set(session.scalars(newest)) & set(created))
    if not empty:
        return []
    problems = []
    for start in range(0, len(empty), 500):  # well under every database's limit of bound parameters
        chunk = empty[start : start + 500]
        rows = session.execute(select(Asset.path, Asset.error).where(Asset.item_id.in_(chunk)).order_by(Asset.id))
        problems += [Problem(path, f"{error or 'error'}; {NOT_MADE}") for path, error in rows]
        session.execute(delete(Asset).where(Asset.item_id.in_(chunk)))
        session.execute(delete(Item).where(Item.id.in_(chunk)))
    return problems
