"""The fusion contract: every strategy says when it fuses, whether it learns, and how it treats gaps."""

from __future__ import annotations

import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from retrieval.checks import check_params
from retrieval.errors import InvalidInputError
from retrieval.fusion.scoring import rank_order
from retrieval.space import Channel, EncodedQuery, HeldRows, VectorSpace

if TYPE_CHECKING:
    from retrieval.fusion.weighing import Weighing


@dataclass
class Scored:
    """One ranked item before metadata is attached; `contributions` is each query modality's share."""

    item_id: int
    score: float
    contributions: dict[str, float]


@dataclass
class NoParams:
    pass


class FusionStrategy(ABC):
    """Turns an encoded query into ranked items over a `VectorSpace`.

    Index-time strategies fuse each item into one vector and search one FAISS index; query-time
    strategies search one index per channel and fuse the results. Parameters are a dataclass, so an
    unknown or mistyped parameter is an error, not silently ignored.
    """

    name: ClassVar[str]
    fuses_at: ClassVar[Literal["index", "query"]]
    learns: ClassVar[bool] = False  # needs a trained checkpoint before it can search
    module_kind: ClassVar[str | None] = None  # the torch module training fits (modules.py); None: trains none
    missing: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams

    def __init__(self, **params: Any) -> None:
        known = {f.name for f in fields(self.Params)}
        unknown = set(params) - known
        if unknown:
            raise InvalidInputError(
                f"strategy {self.name!r} has no parameter(s) {sorted(unknown)}; it takes {sorted(known) or 'none'}"
            )
        self.params = self.Params(**check_params(self.name, self.Params, params))  # values, not only names

    def prepare(self, space: VectorSpace) -> None:  # noqa: B027 (a hook: most strategies prepare nothing)
        """Build (or load) the indexes this strategy searches, ahead of the first query."""

    @abstractmethod
    def search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]: ...

    def explain(self, space: VectorSpace, query: EncodedQuery, ids: np.ndarray) -> dict[str, Any]:
        """Why `ids` scored as they did, beyond `Scored.contributions`: what this strategy weighs (a gate, an
        attention map, a channel's rank), as plain arrays keyed by name; {} where there is nothing more."""
        return {}

    def weighing(self, space: VectorSpace, query: EncodedQuery, k: int) -> Weighing:
        """What each query input counted for in a search of the top `k`, against the weight set: as set,
        unless a strategy weighs or screens inputs per query (then it says so here)."""
        from retrieval.fusion.weighing import as_set  # weighing -> adaptive -> this module

        return as_set(query)


_found: dict[int, list[Any]] = {}


def _blas() -> list[Any]:
    """The loaded BLAS libraries (numpy's, and any torch or scipy brings), found again only when modules
    were imported since: their thread counts are then set directly (threadpoolctl's `limit` inspects every
    loaded library on each call, ~40 us), and a library loaded after the first query is not missed."""
    loaded = len(sys.modules)
    libraries = _found.get(loaded)
    if libraries is None:
        from threadpoolctl import ThreadpoolController

        libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        _found.clear()
        _found[loaded] = libraries
    return libraries


_inside = threading.local()  # one_thread's depth on this thread: an inner one changes nothing


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch's threads (where torch is loaded: the tables cast gathered rows with it) and numpy's BLAS threads
    at one while the calling thread scores one query, as FAISS searches one query on one thread
    (`storage.faiss_store`). A query casts a few hundred rows a field; beside other work on a 2-core machine
    two threads waiting on each other made late fusion at 10k items 127 ms p50, against 15 ms on one thread
    (bench/search_latency.py). OpenBLAS split a product of a query's few dozen rows over its threads, which
    then spun on into the next FAISS search (docs/benchmarks/search_latency.md). Nested, only the outer
    one sets and restores the counts (each costs a few microseconds)."""
    if getattr(_inside, "depth", 0):
        _inside.depth += 1
        try:
            yield
        finally:
            _inside.depth -= 1
        return
    torch = sys.modules.get("torch")
    blas = _blas()
    before = torch.get_num_threads() if torch is not None else 0
    threads = [lib.get_num_threads() for lib in blas]
    if torch is not None:
        torch.set_num_threads(1)
    for lib in blas:
        lib.set_num_threads(1)
    _inside.depth = 1
    try:
        yield
    finally:
        _inside.depth = 0
        if torch is not None:
            torch.set_num_threads(before)
        for lib, count in zip(blas, threads):
            lib.set_num_threads(count)


def channel_shares(channels: list[Channel]) -> list[float]:
    """Each channel's share of the channels that join its query modality to its item modality.

    With the pretrained profile a text query meets a caption through three encoders (CLIP, CLAP, MiniLM)
    but an image through one: summed, every captioned item outranked every uncaptioned one for having three
    text channels to one. Each such channel counts 1/3, so an item modality weighs the same however many
    encoders reach it (the mean of its channels' cosines). Every sum of channels uses this one rule: late's
    units, a concatenated index's query blocks, the exact scores of early and of a hybrid group.
    """
    pairs = [(c.query_modality, c.field.modality) for c in channels]
    return [1.0 / pairs.count(pair) for pair in pairs]


def _channel_scores(
    space: VectorSpace,
    query: EncodedQuery,
    channel: Channel,
    ids: np.ndarray,
    held: HeldRows | None,
    negative: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """`VectorSpace.channel_scores` for `ids`, from `held` rows (of exactly these ids) where given."""
    if held is None:
        return space.channel_scores(query, channel, ids, negative)  # 0 where absent
    return held.channel_scores(query, channel, negative)


def channel_parts(
    space: VectorSpace, query: EncodedQuery, channels: list[Channel], ids: np.ndarray, held: HeldRows | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each query modality's Σ share × weight × cosine over `channels` for `ids` (`channel_shares`), and
    which ids it reaches; from `held` rows (of exactly these ids) where given, else from the tables."""
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for channel, share in zip(channels, channel_shares(channels)):
        scores, present = _channel_scores(space, query, channel, ids, held)
        value = scores * np.float32(share * query.weight(channel.query_modality))
        before, reached = parts.get(channel.query_modality, (0.0, np.zeros(len(ids), bool)))
        parts[channel.query_modality] = (before + value, reached | present)
    return parts


def weighted_channel_scores(
    space: VectorSpace, query: EncodedQuery, ids: np.ndarray, held: HeldRows | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Σ share × weight × cosine over all channels for `ids` (`channel_shares`), each query modality's part,
    and which ids matched any.

    This is the exact score of weighted-sum fusion without normalisation, and the contributions that any
    strategy can show beside its own score. From `held` rows (of exactly these ids) where given.
    """
    total = np.zeros(len(ids), np.float32)
    parts: dict[str, np.ndarray] = {}
    matched = np.zeros(len(ids), bool)
    for modality, (value, reached) in channel_parts(space, query, space.channels(query), ids, held).items():
        parts[modality] = value
        total += value
        matched |= reached
    negatives = space.channels(query, negative=True)
    for channel, share in zip(negatives, channel_shares(negatives)):
        scores, present = _channel_scores(space, query, channel, ids, held, negative=True)
        weighted = -np.where(present, scores, 0.0) * np.float32(share * query.negative_weight)
        parts["-" + channel.query_modality] = parts.get("-" + channel.query_modality, 0) + weighted
        total += weighted
    return total, parts, matched


def to_scored(ids: np.ndarray, scores: np.ndarray, parts: dict[str, np.ndarray], k: int) -> list[Scored]:
    order = rank_order(scores, ids, k)
    return [Scored(int(ids[i]), float(scores[i]), {m: float(p[i]) for m, p in parts.items()}) for i in order]
