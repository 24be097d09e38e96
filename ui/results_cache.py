"""Search results kept per query and method for the session, so a rerun searches only what changed.

A weight change or an added method reruns the whole page; with this cache only the new method (or the
method whose weights changed) is searched again, and a query is encoded once (the weights are applied
at search time, so the encoded query serves every weighting).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import streamlit as st

from retrieval.fusion.weighing import Weighing
from retrieval.results import Method, QueryInput, SearchResult
from retrieval.space import EncodedQuery

MAX_ENTRIES = 256  # results of one method for one query: a few KB each


def query_digest(query: QueryInput) -> str:
    digest = hashlib.sha256()
    for value in (query.text, query.image, query.audio):
        if isinstance(value, bytes | bytearray):
            digest.update(b"bytes:" + hashlib.sha256(value).digest())
        elif isinstance(value, str | Path):
            digest.update(b"path:" + str(value).encode())
        elif value is None:
            digest.update(b"none")
        else:  # arrays and other inputs: not cached by content
            digest.update(repr(id(value)).encode())
        digest.update(b"|")
    digest.update(repr(sorted(query.weights.items())).encode())
    digest.update(b"|transcribe" if query.transcribe else b"")
    return digest.hexdigest()


def forget_answering() -> None:
    """At each script run's start (app.py) and after training: `answering` asks the database again."""
    st.session_state.pop("_answering", None)


def answering(engine, strategy: str) -> str | None:  # noqa: ANN001
    """`engine.models.latest(strategy)`, asked once per script run: every search and weighing of a rerun asked
    it per method, 14 database queries (~40 ms) with five methods, at each view change."""
    memo = st.session_state.setdefault("_answering", {})
    key = (id(engine), strategy)
    if key not in memo:
        memo[key] = engine.models.latest(strategy)
    return memo[key]


def method_key(method: Method, engine=None) -> str:  # noqa: ANN001
    """The method as a cache key; with `engine`, also the checkpoint that answers for a learned method named
    without one: training or choosing another model changes what it returns for the same query."""
    answering_file = answering(engine, method.strategy) if engine and not method.params.get("checkpoint") else None
    return repr(
        (method.label, method.strategy, sorted(method.params.items()), sorted(method.weights.items()), answering_file)
    )


def _store(engine) -> OrderedDict:  # noqa: ANN001
    """The session's cache for this engine; a new engine (the collection re-indexed) starts an empty one."""
    held = st.session_state.get("_results_cache")
    if held is None or held[0] is not engine:
        held = (engine, OrderedDict())
        st.session_state["_results_cache"] = held
    return held[1]


def encoded_query(engine, query: QueryInput) -> EncodedQuery:  # noqa: ANN001
    """The query encoded once per session: encoding is most of a search's time (0.1-0.25 s for a text), and a
    weight change, a new method or the explanations reuse it (the weights are applied at search time)."""
    store = _store(engine)
    key = ("encoded", query_digest(query))
    if key not in store:
        store[key] = engine.encode_query(query)
    return store[key]


def cached_search(
    engine,  # noqa: ANN001
    collection: str,
    query: QueryInput,
    methods: list[Method],
    k: int,
) -> dict[str, SearchResult]:
    """`engine.search_many(..., keep_going=True)` for the methods not searched before with this query."""
    store = _store(engine)
    digest = query_digest(query)
    base = (collection, digest, k)
    keys = {m.label: (*base, method_key(m, engine)) for m in methods}
    missing = [m for m in methods if keys[m.label] not in store]
    if missing:
        for label, result in engine.search_many(encoded_query(engine, query), missing, k=k, keep_going=True).items():
            if result.error is None:  # an untrained method may be trained in a moment: ask again then
                store[keys[label]] = result
                while len(store) > MAX_ENTRIES:
                    store.popitem(last=False)
            else:
                store[(*keys[label], "error")] = result
    out = {}
    for method in methods:
        key = keys[method.label]
        if key in store:
            store.move_to_end(key)
            out[method.label] = store[key]
        else:
            out[method.label] = store.pop((*key, "error"))
    return out


def cached_weighing(engine, collection: str, query: QueryInput, method: Method, k: int) -> Weighing:  # noqa: ANN001
    """`engine.weighing` for the method and query, kept beside its results (a few ms each, at every rerun)."""
    store = _store(engine)
    key = ("weighing", collection, query_digest(query), k, method_key(method, engine))
    if key not in store:
        store[key] = engine.weighing(method, encoded_query(engine, query), k)
        while len(store) > MAX_ENTRIES:
            store.popitem(last=False)
    store.move_to_end(key)
    return store[key]
