"""SearchEngine: the Python API. Open a collection, search it with any mix of image, text and audio."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from retrieval.catalogue import Catalogue
from retrieval.checkpoints import Models
from retrieval.checks import MAX_WEIGHT, check_k, check_weights, finite_float, whole_number
from retrieval.compare import Comparison, compare_results
from retrieval.encoders import Encoder, create_encoder, create_encoders
from retrieval.encoders.base import refuse_changed_encoder
from retrieval.errors import USER_ERRORS, InvalidInputError, MediaError, NotFoundError
from retrieval.fusion import create_strategy
from retrieval.fusion.base import Scored, channel_shares
from retrieval.fusion.registry import STRATEGIES, current_method
from retrieval.fusion.weighing import Weighing
from retrieval.media import MODALITIES, MediaInput, Modality, load_audio_rates, load_image, load_text
from retrieval.profiles import Profile
from retrieval.results import Hit, Method, QueryInput, SearchResult
from retrieval.space import EncodedQuery, VectorSpace, indexes_used
from retrieval.transcribe import (
    DEFAULT_TRANSCRIBER,
    SAMPLE_RATE,
    Transcriber,
    reads_transcript,
    searchable_text,
)
from storage import Database, IndexCatalog
from storage.catalog import check_tables_present, collection_storage
from storage.repository import (
    get_collection,
    get_preset,
    index_build,
    items_by_ids,
    list_presets,
    save_preset,
)

# Presets the demo saved before a strategy took their place (learned early's, before 0.19.0): the name still
# searches, with the strategy, where the collection has no such preset
FORMER_PRESETS = {"learned_early": "learned_early"}
WARM_UP_TONE = (0.1 * np.sin(np.linspace(0, 88 * np.pi, 1600))).astype(np.float32)  # silence is refused


class CollectionNotFoundError(NotFoundError):
    pass


def check_preset_name(name: str) -> None:
    """A preset may not take a strategy's name: its results would carry the strategy's label beside the
    strategy's own (before 0.19.0 the demo saved trained early as the preset `learned_early`)."""
    if name in STRATEGIES.names():
        raise InvalidInputError(f"{name!r} is the name of a fusion strategy; give the preset another name")


class SearchEngine:
    """One collection, opened once: its profile's encoders, its vectors, its indexes. It encodes, searches,
    compares and explains; `catalogue` reads the collection's rows and `models` trains and chooses its learned
    models."""

    def __init__(
        self,
        db: Database,
        collection: str,
        device: str | None = None,
        nprobe: int | None = None,
        rescore_bytes: int | None = None,
    ) -> None:
        self.db, self.device, self.collection_name = db, device, collection
        with db.session() as session:
            row = get_collection(session, collection)
            if row is None:
                raise CollectionNotFoundError(
                    f"no collection {collection!r} in {db.url}; index one first: python -m indexer PATH --db {db.url}"
                )
            self.collection_id, self.generation = row.id, row.generation
            self.profile = Profile.from_dict(row.profile)
            self.records = {e.name: e for e in row.encoders}
            storage = collection_storage(db, row)
            catalog = IndexCatalog.for_collection(db, row)
        check_tables_present(db, row, storage, [(f.key, f.modality) for f in self.profile.fields])
        self._encoders: dict[str, Encoder] = {}
        self._transcriber: Transcriber | None = None
        self._strategies: dict[str, Any] = {}  # strategy instances by name and parameters (checkpoints stay loaded)
        dims = {name: rec.dim for name, rec in self.records.items()}
        self.space = VectorSpace(
            self.profile.fields,
            storage,
            self.generation,
            catalog,
            dims=dims,
            nprobe=nprobe,
            rescore_bytes=rescore_bytes,
        )
        self.catalogue = Catalogue(db, self.collection_id, self.generation, self.profile)
        self.models = Models(db, self.collection_id, collection, self.space)

    @classmethod
    def open(
        cls,
        url: str,
        collection: str = "default",
        device: str | None = None,
        nprobe: int | None = None,
        rescore_bytes: int | None = None,
    ) -> SearchEngine:
        """How hard a large collection's compressed indexes search (None: the defaults): `nprobe`, the lists an
        inverted file visits (`storage.vector_store.default_nprobe`: a sixteenth, at least 16, in a compressed
        index no more than hold ~65k vectors); `rescore_bytes`, the float16 rows a shortlist re-scores exactly
        (300 KB: 300 rows of 512-d; at least 1 row per 10,000 vectors of the default 2-bit codes, 3 under
        coarser ones). More of either finds more true neighbours, slower. Late's and hybrid's `candidates` is a
        floor: their lists also hold one per 25,000 items (`retrieval.fusion.late.ITEMS_PER_CANDIDATE`)."""
        return cls(Database(url), collection, device, nprobe, rescore_bytes)

    def encoder(self, name: str) -> Encoder:
        """The encoder `name`, created on first use and checked against what made the stored vectors."""
        if name not in self._encoders:
            encoder = create_encoder(name, self.device)
            record = self.records.get(name)
            if record is not None:
                refuse_changed_encoder(self.collection_name, name, record.dim, record.preprocessing, encoder)
            self._encoders[name] = encoder
        return self._encoders[name]

    def load_encoders(self) -> None:
        """Create every encoder of the profile now (a UI does this once, so the first search is fast);
        missing weights are reported for every model at once."""
        create_encoders([n for names in self.profile.encoders.values() for n in names], self.device)
        for names in self.profile.encoders.values():
            for name in names:
                self.encoder(name)

    def encode_query(self, query: QueryInput) -> EncodedQuery:
        if not query.present():
            raise InvalidInputError("empty query: give at least one of text, image or audio")
        check_weights(query.weights)
        finite_float("negative weight", query.negative_weight, -MAX_WEIGHT, MAX_WEIGHT)
        empty: set[tuple[str, str]] = set()
        vectors = self._encode_inputs({m: getattr(query, m) for m in query.present()}, query.transcribe, empty)
        negatives = self._encode_inputs(
            {m: getattr(query, f"negative_{m}") for m in MODALITIES if getattr(query, f"negative_{m}") is not None}
        )
        return EncodedQuery(vectors, dict(query.weights), negatives, query.negative_weight, frozenset(empty))

    def _encode_inputs(
        self, inputs: dict[Modality, Any], transcribe: bool = False, empty: set[tuple[str, str]] | None = None
    ) -> dict[tuple[str, str], np.ndarray]:
        """One vector per (modality, encoder). A recording is heard for the transcript fields only when
        `transcribe` asks (a second of speech costs ~0.4 s to hear on two cores, ~20 ms to embed). Where
        `empty` is given, the keys of inputs an encoder found nothing in are added to it, when the query has
        other inputs to go on (screening never leaves a query with none)."""
        vectors: dict[tuple[str, str], np.ndarray] = {}
        for modality, value in inputs.items():
            names = self.profile.encoders.get(modality, ())
            heard = {n: self.encoder(n) for n in names if reads_transcript(modality, n)} if transcribe else {}
            encoders = {n: self.encoder(n) for n in names if not reads_transcript(modality, n)}
            rates = {e.sample_rate for e in encoders.values()} | ({SAMPLE_RATE} if heard else set())
            if not rates:
                continue
            decoded = self._decode(modality, value, sorted(rates))
            for name, encoder in encoders.items():
                one = decoded[encoder.sample_rate] if isinstance(decoded, dict) else decoded
                vectors[(modality, name)] = encoder.encode(modality, [one])[0]
                if empty is not None and len(inputs) > 1 and encoder.finds_nothing(modality, [one])[0]:
                    empty.add((modality, name))
            said = searchable_text(self.transcriber().transcribe(decoded[SAMPLE_RATE]).text) if heard else ""
            for name, encoder in heard.items() if said.strip() else ():
                vectors[(modality, name)] = encoder.encode("text", [said])[0]
        return vectors

    def transcriber(self) -> Transcriber:
        """The collection's transcriber, loaded on first use."""
        if self._transcriber is None:
            self._transcriber = Transcriber(self.profile.transcriber or DEFAULT_TRANSCRIBER, self.device)
        return self._transcriber

    @staticmethod
    def _decode(modality: str, value: Any, rates: list[int]) -> Any:
        """The indexer's decode step (`load_audio_rates`: one read, one copy per encoder's rate)."""
        if modality == "image":
            return load_image(value)
        if modality == "audio":
            if isinstance(value, tuple):  # (samples, sample_rate): arrays carry no rate of their own
                if len(value) != 2:
                    raise MediaError(value, f"audio as a tuple must be (samples, sample_rate), not {len(value)} values")
                rate = whole_number("the audio's sample rate", value[1])
                return load_audio_rates(np.asarray(value[0]), rates, input_rate=rate)
            return load_audio_rates(value, rates)
        return load_text(value)

    def search(
        self,
        text: str | None = None,
        image: MediaInput | None = None,
        audio: MediaInput | None = None,
        strategy: str = "late",
        k: int = 10,
        weights: dict[str, float] | None = None,
        negative: dict[str, Any] | None = None,
        preset: str | None = None,
        transcribe: bool = False,
        **params: Any,
    ) -> SearchResult:
        """Search with any non-empty mix of text, image and audio.

        Images and audio may be paths, bytes or arrays; give audio arrays as `(samples, sample_rate)`
        (a bare array is taken to be at the encoder's own rate). `negative={"text": "blurry"}` pushes
        results away from a text, image or audio clip. `preset` uses a saved method (see `tune`);
        `transcribe` also searches by what the audio clip says, where the collection keeps transcripts;
        other keywords are the strategy's parameters.
        """
        negative = negative or {}
        if not isinstance(negative, dict):
            raise InvalidInputError(f"negative must map text, image or audio to a query, not {negative!r}")
        weights = check_weights(weights)
        unknown = set(negative) - {"text", "image", "audio"}
        if unknown:
            raise InvalidInputError(f"negative terms are text, image or audio, not {sorted(unknown)}")
        query = QueryInput(
            text,
            image,
            audio,
            dict(weights or {}),
            transcribe=transcribe,
            **{f"negative_{m}": v for m, v in negative.items()},
        )
        if preset is not None:
            saved = self.preset(preset)
            method = Method(preset, saved.strategy, {**saved.params, **params}, saved.weights)
            return self.search_many(query, [method], k=k)[preset]
        return self.search_many(query, [strategy], k=k, params={strategy: params})[strategy]

    def search_many(
        self,
        query: QueryInput | EncodedQuery,
        methods: Sequence[str | Method],
        k: int = 10,
        params: dict[str, dict[str, Any]] | None = None,
        keep_going: bool = False,
    ) -> dict[str, SearchResult]:
        """Encode once (or take a query `encode_query` already encoded), search with each method: what
        comparisons are made of.

        A method is a strategy name (with `params[name]`), or a `Method` (a label, a strategy, its
        parameters and query weights), such as a saved preset; results are keyed by label. With
        `keep_going`, a method that cannot run (say, an untrained one) gets an error instead of raising.
        """
        # k beyond the collection's size only asks FAISS to allocate rows that cannot be filled
        k = min(check_k(k), max(1, len(self.catalogue.item_keys())))
        chosen = [m if isinstance(m, Method) else Method(m, m, dict((params or {}).get(m, {}))) for m in methods]
        for method in chosen:  # parameters and weights are checked before any media is decoded or encoded
            check_weights(method.weights, f"weights of {method.label!r}")
            if not keep_going:
                self.strategy(method.strategy, **method.params)
        encoded = query if isinstance(query, EncodedQuery) else self.encode_query(query)
        results: dict[str, SearchResult] = {}
        for method in chosen:
            started = time.perf_counter()
            try:
                strategy, scored = self._search(method, encoded, k)
                hits = self._hits(scored)
            except USER_ERRORS as exc:  # the user's to fix: a bug still raises
                if not keep_going:
                    raise
                results[method.label] = SearchResult(method.strategy, [], 0.0, dict(method.params), str(exc))
                continue
            results[method.label] = SearchResult(
                method.strategy,
                hits,
                time.perf_counter() - started,
                {**vars(strategy.params), **({"weights": method.weights} if method.weights else {})},
            )
        return results

    def preset(self, name: str) -> Method:
        """A saved, named method (strategy, parameters, weights), e.g. one chosen by `tune`."""
        with self.db.session() as session:
            row = get_preset(session, self.collection_id, name)
            if row is None and name in FORMER_PRESETS:
                return Method(name, FORMER_PRESETS[name])
            if row is None:
                raise NotFoundError(
                    f"no preset {name!r} for collection {self.collection_name!r}; "
                    "make one with python -m retrieval tune"
                )
            strategy, params = current_method(row.strategy, row.params)
            if strategy == "late" and "held_out" in (row.report or {}) and "weighting" not in params:
                # `tune` scores fixed weights; before late fusion weighed channels per query (issue 13) its
                # presets named no weighting, and the new default would change what they were tuned to do
                params["weighting"] = "fixed"
            return Method(name, strategy, params, dict(row.weights))

    def save_preset(self, method: Method, report: dict[str, Any] | None = None) -> None:
        check_preset_name(method.label)
        with self.db.session() as session:
            save_preset(
                session, self.collection_id, method.label, method.strategy, method.params, method.weights, report or {}
            )

    def _hits(self, scored: list) -> list[Hit]:
        with self.db.session() as session:
            items = items_by_ids(session, [s.item_id for s in scored])
            heard = self.catalogue.transcripts(session, [a for item in items.values() for a in item.assets])
            hits: list[Hit] = []
            for s in scored:
                item = items.get(s.item_id)
                if item is None:  # removed since the vectors were loaded
                    continue
                assets = {a.modality: a.path for a in item.assets if a.status == "ok"}
                text = next((a.preview for a in item.assets if a.modality == "text" and a.status == "ok"), None)
                said = next((heard[a.sha256] for a in item.assets if a.modality == "audio" and a.sha256 in heard), None)
                hits.append(
                    Hit(
                        len(hits) + 1,
                        s.item_id,
                        item.key,
                        s.score,
                        s.contributions,
                        dict(item.meta),
                        assets,
                        text,
                        said,
                    )
                )
        return hits

    def _search(self, method: Method, encoded: EncodedQuery, k: int) -> tuple[Any, list[Scored]]:
        strategy = self.strategy(method.strategy, **method.params)
        return strategy, strategy.search(self.space, encoded.reweighted(method.weights), k)

    def scored(self, method: Method, encoded: EncodedQuery, k: int) -> list[Scored]:
        """The method's top k as item ids, scores and contributions, without looking the items up: what
        evaluation and tuning rank by (give it a `pinned` method to search many queries)."""
        return self._search(method, encoded, k)[1]

    def pinned(self, method: Method) -> Method:
        """The method with the checkpoint its learned strategy uses named in its parameters (the latest
        trained on this collection, looked up once), so searching it again asks the database nothing;
        raises now, as `strategy` does, when the method cannot be made."""
        params = self._with_checkpoint(method.strategy, dict(method.params))
        self.strategy(method.strategy, **params)
        return Method(method.label, method.strategy, params, method.weights)

    def explain(self, method: Method, encoded: EncodedQuery, ids: Sequence[int]) -> dict[str, Any]:
        """What the method weighed for these items (see each strategy's `explain`)."""
        strategy = self.strategy(method.strategy, **method.params)
        return strategy.explain(self.space, encoded.reweighted(method.weights), np.asarray(ids, np.int64))

    def weighing(self, method: Method, encoded: EncodedQuery, k: int = 10) -> Weighing:
        """What each query input counted for in the method's search of the top k, against its weight (see
        each strategy's `weighing`: adaptive weighting and screening change it per query)."""
        k = min(check_k(k), max(1, len(self.catalogue.item_keys())))
        strategy = self.strategy(method.strategy, **method.params)
        return strategy.weighing(self.space, encoded.reweighted(method.weights), k)

    def candidates(self, encoded: EncodedQuery, n: int) -> np.ndarray:
        """Late fusion's candidates for the query: the union of each channel's top n."""
        return self.strategy("late", candidates=n).candidates(self.space, encoded, n)

    def channel_scores(self, encoded: EncodedQuery, ids: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
        """Per channel of the query: (query modality, cosine of each id, whether the id has that field, its
        share among the channels joining its query modality to its item modality: `channel_shares`)."""
        channels = self.space.channels(encoded)
        return [
            (c.query_modality, *self.space.channel_scores(encoded, c, ids), share)
            for c, share in zip(channels, channel_shares(channels))
        ]

    def prepare_method(self, method: Method) -> list[tuple[str, str]]:
        """Build or load the method's indexes; the (strategy, key) of each index it uses."""
        strategy = self.strategy(method.strategy, **method.params)
        with indexes_used(self.space) as used:
            strategy.prepare(self.space)
        return used

    def strategy(self, name: str, **params: Any):  # noqa: ANN201
        """A strategy by name; a learned one without `checkpoint` gets the latest trained on this collection."""
        params = self._with_checkpoint(name, params)
        key = f"{name}:{json.dumps(params, sort_keys=True, default=str)}"
        if key not in self._strategies:
            if len(self._strategies) > 64:
                self._strategies.clear()
            self._strategies[key] = create_strategy(name, **params)
        return self._strategies[key]

    def _with_checkpoint(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """`params`, plus the latest checkpoint trained on this collection for a learned strategy given none."""
        from retrieval.fusion.registry import STRATEGIES

        cls = STRATEGIES.get(name) if name in STRATEGIES else None
        if cls is None or not cls.learns or params.get("checkpoint"):
            return params
        file = self.models.latest(name)
        return params if file is None else {**params, "checkpoint": file}

    def index_location(self, strategy: str, key: str) -> str | None:
        """Where the catalogued index (`strategy`, `key`) is stored (a file, or a Milvus location), if built."""
        with self.db.session() as session:
            row = index_build(session, self.collection_id, strategy, key)
            return None if row is None else row.file

    def compare(
        self,
        query: QueryInput,
        strategies: Sequence[str | Method],
        k: int = 10,
        params: dict[str, dict[str, Any]] | None = None,
        baseline: str | None = None,
    ) -> Comparison:
        """One query under several methods: lists, scores, contributions, latency, overlaps and movements."""
        return compare_results(self.search_many(query, strategies, k, params), k, baseline)

    def presets(self) -> list[str]:
        """Names of the presets saved for this collection (see `tune`)."""
        with self.db.session() as session:
            return [p.name for p in list_presets(session, self.collection_id)]

    def prepare(self, strategies: list[str]) -> None:
        for name in strategies:
            self.strategy(name).prepare(self.space)

    def warm_up(self, strategies: Sequence[str]) -> list[str]:
        """Search once with each of `strategies` (those that can run: an untrained one is skipped), with a
        small query of every modality, so that a server's first real search pays none of the first-call
        costs: each encoder's first forward, a checkpoint's load, FAISS's first search. The Search page's
        first search in the browser spent 0.1-0.15 s on them. Returns the strategies that ran."""
        query = QueryInput(
            text="warm up",
            image=np.tile(np.arange(32, dtype=np.uint8)[:, None, None] * 8, (1, 32, 3)),
            audio=WARM_UP_TONE,  # a bare array: taken at each encoder's own rate, which is fine here
        )
        results = self.search_many(query, list(strategies), k=1, keep_going=True)
        return [name for name, result in results.items() if result.error is None]
