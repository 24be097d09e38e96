"""Fusion strategies on small synthetic vectors where the right answer is known."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.fusion import create_strategy, list_strategies, strategy_class
from retrieval.fusion.scoring import normalise, ranks, rrf
from retrieval.profiles import Field
from retrieval.space import EncodedQuery, VectorSpace
from storage import VectorStorage
from storage.vector_store import VectorStore

IMAGE, AUDIO = Field("image", "img-enc"), Field("audio", "aud-enc")
RAW = {"normalisation": "none", "weighting": "fixed"}  # late's raw weighted sum (not its default)


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make_space(tmp_path: Path, image: dict[int, list[float]], audio: dict[int, list[float]]) -> VectorSpace:
    storage = VectorStorage(tmp_path)
    for f, rows in ((IMAGE, image), (AUDIO, audio)):
        table = storage.load(f.key, dim=len(next(iter(rows.values()))), encoder=f.encoder)
        table.upsert(np.array(list(rows)), unit(np.array(list(rows.values()), np.float32)))
        storage.save(f.key, table)
    return VectorSpace([IMAGE, AUDIO], storage, generation=1)


@pytest.fixture
def space(tmp_path: Path) -> VectorSpace:
    rng = np.random.default_rng(0)
    image = {i: rng.normal(size=8).tolist() for i in range(1, 41)}
    audio = {i: rng.normal(size=6).tolist() for i in range(1, 41) if i % 4}  # every fourth item has no audio
    return make_space(tmp_path, image, audio)


def query(space: VectorSpace, seed: int = 1, **weights: float) -> EncodedQuery:
    rng = np.random.default_rng(seed)
    return EncodedQuery(
        {
            ("image", "img-enc"): unit(rng.normal(size=8).astype(np.float32)),
            ("audio", "aud-enc"): unit(rng.normal(size=6).astype(np.float32)),
        },
        weights,
    )


def exact(space: VectorSpace, q: EncodedQuery, item: int) -> float:
    total = 0.0
    for (modality, _encoder), vector in q.vectors.items():
        f = IMAGE if modality == "image" else AUDIO
        vectors, present = space.tables[f.key].lookup(np.array([item]))
        total += q.weight(modality) * float(vectors[0] @ vector) * bool(present[0])
    return total


def test_registry_describes_each_strategy() -> None:
    for name in list_strategies():
        cls = strategy_class(name)
        assert cls.name == name and cls.fuses_at in ("index", "query") and cls.missing
    with pytest.raises(ValueError, match="no parameter"):
        create_strategy("late", normalization="minmax")
    with pytest.raises(LookupError, match="unknown fusion strategy"):
        create_strategy("magic")


def test_early_identity_equals_weighted_sum_of_similarities(space: VectorSpace) -> None:
    q = query(space, image=0.7, audio=1.5)
    early = create_strategy("early", standardise=False).search(space, q, k=40)
    assert len(early) == 40
    for hit in early:
        assert hit.score == pytest.approx(exact(space, q, hit.item_id), abs=2e-3)  # float16 storage
        assert sum(hit.contributions.values()) == pytest.approx(hit.score, abs=1e-5)
    late = create_strategy("late", candidates=40, **RAW).search(space, q, k=40)
    assert [h.item_id for h in late] == [h.item_id for h in early]


def test_rrf_matches_a_hand_computation(tmp_path: Path) -> None:
    # image ranks items 1,2,3; audio ranks 3,1 (item 2 has no audio)
    space = make_space(tmp_path, image={1: [1, 0.0], 2: [1, 0.5], 3: [1, 1.2]}, audio={1: [0.5, 1], 3: [1, 0]})
    q = EncodedQuery(
        {
            ("image", "img-enc"): unit(np.array([1, 0], np.float32)),
            ("audio", "aud-enc"): unit(np.array([1, 0], np.float32)),
        }
    )
    hits = create_strategy("late", fusion="rrf", rrf_k=10).search(space, q, k=3)
    expected = {1: 1 / 11 + 1 / 12, 2: 1 / 12, 3: 1 / 13 + 1 / 11}
    assert [h.item_id for h in hits] == sorted(expected, key=lambda i: -expected[i])
    for h in hits:
        assert h.score == pytest.approx(expected[h.item_id], rel=1e-6)


def test_normalisations_and_ranks() -> None:
    scores = np.array([0.2, 0.8, 0.5, 9.0])
    present = np.array([True, True, True, False])
    np.testing.assert_allclose(normalise(scores, present, "minmax"), [0, 1, 0.5, 0])
    z = normalise(scores, present, "zscore")
    assert z[:3].mean() == pytest.approx(0, abs=1e-6) and z[3] == 0
    np.testing.assert_allclose(normalise(scores, present, "arctan")[:3], np.arctan(scores[:3]) * 2 / np.pi, rtol=1e-6)
    assert ranks(scores, present).tolist() == [3, 1, 2, 0]
    np.testing.assert_allclose(rrf(np.array([1, 0]), 60), [1 / 61, 0])
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise(scores, present, "softmax")  # type: ignore[arg-type]


def test_normalisation_can_reorder_results(tmp_path: Path) -> None:
    # audio scores spread widely, image scores are all close: min-max gives image a bigger say.
    space = make_space(
        tmp_path, image={1: [1, 0.30], 2: [1, 0.0], 3: [1, 0.1]}, audio={1: [1, 0], 2: [1, 0.6], 3: [1, 3.0]}
    )
    q = EncodedQuery(
        {
            ("image", "img-enc"): unit(np.array([1, 0], np.float32)),
            ("audio", "aud-enc"): unit(np.array([1, 0], np.float32)),
        }
    )
    raw = [h.item_id for h in create_strategy("late", **RAW).search(space, q, k=3)]
    scaled = [h.item_id for h in create_strategy("late", normalisation="minmax").search(space, q, k=3)]
    assert raw != scaled


def test_missing_modalities_on_both_sides(space: VectorSpace) -> None:
    audio_only = EncodedQuery({("audio", "aud-enc"): query(space).vectors[("audio", "aud-enc")]})
    for name in ("late", "early"):
        hits = create_strategy(name).search(space, audio_only, k=40)
        assert hits and all(h.item_id % 4 for h in hits), f"{name}: items without audio cannot match audio"
        assert set(hits[0].contributions) == {"audio"}
    both = create_strategy("late", candidates=40).search(space, query(space), k=40)
    no_audio = [h for h in both if h.item_id % 4 == 0]
    assert no_audio and all(h.contributions["audio"] == 0 for h in no_audio)


def test_zero_weight_silences_a_modality(space: VectorSpace) -> None:
    muted = create_strategy("early").search(space, query(space, audio=0.0), k=10)
    image_only = create_strategy("early").search(
        space, EncodedQuery({("image", "img-enc"): query(space).vectors[("image", "img-enc")]}), k=10
    )
    assert [h.item_id for h in muted] == [h.item_id for h in image_only]


def test_centring_removes_a_shared_offset(tmp_path: Path) -> None:
    # Every image vector shares a big common direction (a "modality gap"); only the rest tells items apart.
    rng = np.random.default_rng(5)
    offset = np.zeros(8)
    offset[0] = 3.0
    signal = rng.normal(size=(30, 8))
    signal[:, 0] = 0
    space = make_space(
        tmp_path, image={i + 1: (offset + signal[i]).tolist() for i in range(30)}, audio={1: [1, 0, 0, 0, 0, 0]}
    )
    q = EncodedQuery({("image", "img-enc"): unit(signal[4].astype(np.float32))})  # a query without the offset
    for name, extra in (("late", {}), ("early", {"standardise": False})):  # raw cosines, comparable scores
        plain = create_strategy(name, **extra).search(space, q, k=3)
        centred = create_strategy(name, centre=True, **extra).search(space, q, k=3)
        assert centred[0].item_id == 5, name
        assert centred[0].score > plain[0].score
    assert abs(space.centred().tables["image@img-enc"].as_float32().mean(axis=0)[0]) < 0.2


def test_late_without_rescoring_uses_each_list_only(space: VectorSpace) -> None:
    q = query(space, seed=3)
    full = {h.item_id: h.score for h in create_strategy("late", candidates=40, **RAW).search(space, q, k=40)}
    listed = create_strategy("late", candidates=40, rescore=False, **RAW).search(space, q, k=40)
    assert {h.item_id: round(h.score, 5) for h in listed} == {i: round(s, 5) for i, s in full.items()}
    # with 5 candidates per channel, an item scores only in the channels whose top 5 hold it
    expected: dict[int, float] = {}
    for key, f in ((("image", "img-enc"), IMAGE), (("audio", "aud-enc"), AUDIO)):
        table = space.tables[f.key]
        sims = table.as_float32() @ q.vectors[key]
        for n in np.argsort(-sims)[:5]:
            expected[int(table.ids[n])] = expected.get(int(table.ids[n]), 0.0) + float(sims[n])
    short = create_strategy("late", candidates=5, rescore=False, **RAW).search(space, q, k=5)  # lists of max(k, 5)
    best = sorted(expected.items(), key=lambda kv: -kv[1])[:5]
    assert [(h.item_id, round(h.score, 4)) for h in short] == [(i, round(s, 4)) for i, s in best]


def test_late_reuses_exact_list_scores_and_looks_up_the_rest(space: VectorSpace) -> None:
    from retrieval.fusion.late import union, unit_candidates, unit_totals

    q = query(space, seed=5, image=0.7, audio=1.6)
    hits = create_strategy("late", candidates=6, **RAW).search(space, q, k=12)  # union of two lists of 12
    assert len(hits) == 12
    for h in hits:  # every fused score is the exact weighted sum, whether listed or looked up
        assert h.score == pytest.approx(exact(space, q, h.item_id), abs=1e-5)
    for channel in space.channels(q):
        lists = [unit_candidates(space, q, [c], 12) for c in space.channels(q)]
        ids = union(lists)
        own = next(found for found, c in zip(lists, space.channels(q)) if c == channel)
        assert own.exact and 0 < len(own.ids) < len(ids)
        reused, reached = unit_totals(space, q, [channel], ids, own)
        looked_up, present = unit_totals(space, q, [channel], ids)
        assert np.allclose(reused, looked_up, atol=1e-6) and (reached == present).all()


@pytest.mark.parametrize(
    "params", [RAW, {}, {"normalisation": "zscore", "weighting": "fixed"}, {"fusion": "mnz"}, {"rescore": False}]
)
def test_unit_contributions_split_each_score_by_modality(space: VectorSpace, params: dict) -> None:
    q = query(space, seed=7, image=0.5, audio=2.0)
    q.negatives = {("image", "img-enc"): query(space, seed=8).vectors[("image", "img-enc")]}
    for name, extra in (("late", {}), ("hybrid", {"groups": [["image", "audio"]]})):
        hits = create_strategy(name, candidates=10, **extra, **params).search(space, q, k=10)
        assert len(hits) == 10 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for h in hits:
            assert set(h.contributions) == {"image", "audio", "-image"}
            assert sum(h.contributions.values()) == pytest.approx(h.score, abs=1e-5)
    # one unit of both modalities, raw scores: each modality's part is its own weighted cosine
    for h in create_strategy("hybrid", groups=[["image", "audio"]], candidates=10, standardise=False, **RAW).search(
        space, query(space, seed=7, image=0.5, audio=2.0), k=10
    ):
        for modality, f in (("image", IMAGE), ("audio", AUDIO)):
            vectors, present = space.tables[f.key].lookup(np.array([h.item_id]))
            key = (modality, f.encoder)
            cosine = float(vectors[0] @ query(space, seed=7).vectors[key]) if present[0] else 0.0
            assert h.contributions[modality] == pytest.approx({"image": 0.5, "audio": 2.0}[modality] * cosine, abs=1e-5)


def labelled_space(tmp_path: Path, audio_noise: float, seed: int = 0) -> tuple[VectorSpace, np.ndarray]:
    """120 items of 4 classes: images close to their class centre, recordings `audio_noise` away from it;
    every recording has the same component along the first axis (the direction all speech shares)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(120) % 4
    image_centres, audio_centres = rng.normal(size=(4, 16)), rng.normal(size=(4, 11))
    image = image_centres[labels] + 0.8 * rng.normal(size=(120, 16))
    audio = np.hstack(
        [np.full((120, 1), 0.6), 0.8 * unit(audio_centres[labels] + audio_noise * rng.normal(size=(120, 11)))]
    )
    space = make_space(
        tmp_path, {i + 1: v.tolist() for i, v in enumerate(image)}, {i + 1: v.tolist() for i, v in enumerate(audio)}
    )
    return space, labels


def precision_at_10(hits: list, labels: np.ndarray, label: int) -> float:
    return sum(labels[h.item_id - 1] == label for h in hits[:10]) / 10


def test_a_flat_channel_is_screened_out_and_costs_nothing(tmp_path: Path) -> None:
    """A "noise clip" along the direction every recording shares scores every item about alike. Its few
    best items still fall in one class, so coherence alone would trust it (the weights no longer count
    spread: docs/benchmarks/adaptive_powers.md); the screen leaves it out, and late ranks as the image alone."""
    from retrieval.fusion.adaptive import flat_modalities

    space, _ = labelled_space(tmp_path, audio_noise=0.8)
    rng = np.random.default_rng(3)
    image_query = unit(0.3 * rng.normal(size=16) + space.tables[IMAGE.key].lookup(np.array([1]))[0][0]).astype(
        np.float32
    )
    flat = np.eye(12)[0] + 0.05 * rng.normal(size=12)
    q = EncodedQuery({("image", "img-enc"): image_query, ("audio", "aud-enc"): unit(flat.astype(np.float32))})
    assert flat_modalities(space, q) == {"audio"}
    image_only = EncodedQuery({("image", "img-enc"): image_query})
    alone = [h.item_id for h in create_strategy("late").search(space, image_only, k=10)]
    assert [h.item_id for h in create_strategy("late").search(space, q, k=10)] == alone
    # one switch, as on every strategy: the screen leaves it out at fixed weights too
    for name in ("late", "hybrid"):
        fixed = create_strategy(name, weighting="fixed")
        assert [h.item_id for h in fixed.search(space, q, k=10)] == alone
        assert {o.modality: o.screened for o in fixed.weighing(space, q, 10).inputs} == {"audio": True, "image": False}
    # unscreened, the same flat channel at a fixed weight, z-scored to full range, does change the results
    unscreened = create_strategy("late", weighting="fixed", screen=False)
    assert {h.item_id for h in unscreened.search(space, q, k=10)} != set(alone)
    assert not any(o.screened for o in unscreened.weighing(space, q, 10).inputs)


def test_weighing_reports_the_weights_each_strategy_searched_with(tmp_path: Path) -> None:
    """Issue 37, item 2: what a strategy says each input counted for is what its search used. A recording of
    another class beside an image: late's unit weights (its `explain`), early's per-vector factors
    (`channel_weights` over its candidates); fixed weights and learned strategies count the inputs as set."""
    from retrieval.fusion.adaptive import channel_weights, standardised
    from retrieval.fusion.concat import present_fields, search_concat

    space, _ = labelled_space(tmp_path, audio_noise=0.8)
    rng = np.random.default_rng(5)
    image = unit(0.3 * rng.normal(size=16) + space.tables[IMAGE.key].lookup(np.array([1]))[0][0])
    recording = unit(space.tables[AUDIO.key].lookup(np.array([2]))[0][0] + 2.0 * rng.normal(size=12))
    q = EncodedQuery(
        {("image", "img-enc"): image.astype(np.float32), ("audio", "aud-enc"): recording.astype(np.float32)},
        {"audio": 0.5},
    )
    late = create_strategy("late")
    weighing = late.weighing(space, q, 10)
    explained = late.explain(space, q, np.array([h.item_id for h in late.search(space, q, 10)]))
    used = {one.modality: one.used for one in weighing.inputs}
    assert weighing.how == "adaptive" and weighing.changed()
    assert [used[u.split("→")[0].strip()] for u in explained["units"]] == pytest.approx(list(explained["weight"]))
    assert {one.modality: one.chosen for one in weighing.inputs} == {"image": 1.0, "audio": 0.5}
    early = create_strategy("early")
    ids, _ = search_concat(space, present_fields(space), standardised(space, q), 100)
    factors = channel_weights(space, q, ids)
    assert {o.modality: o.used for o in early.weighing(space, q, 10).inputs} == pytest.approx(
        {m: q.weight(m) * factors[(m, enc)] for m, enc in q.vectors}
    )
    for fixed in (
        create_strategy("late", weighting="fixed"),
        create_strategy("early", weighting="fixed"),
        create_strategy("gated"),
    ):
        assert not fixed.weighing(space, q, 10).changed()


@pytest.mark.parametrize(
    "name, defaults, raw",
    [
        ("late", {}, RAW),
        ("hybrid", {"groups": [["image", "audio"]]}, {"groups": [["image", "audio"]], "standardise": False, **RAW}),
        ("early", {}, {"standardise": False}),
    ],
)
def test_fused_is_never_below_its_best_modality(tmp_path: Path, name: str, defaults: dict, raw: dict) -> None:
    """The collection's recordings cluster by class. With a recording of a speaker the collection knows,
    fusing it with an image ranks above both; with an unseen speaker's (far from its class) fusion loses less
    than the raw sum (issue 13's "never below" is missed there).
    Hybrid with one group of both, and early's identity, sum the channels in one index: standardised and
    adaptively weighted, they must hold as late does."""
    space, labels = labelled_space(tmp_path, audio_noise=0.8)
    tables = {"image": space.tables[IMAGE.key], "audio": space.tables[AUDIO.key]}
    encoders = {"image": "img-enc", "audio": "aud-enc"}

    def mean_precision(params: dict, modalities: tuple[str, ...], speaker_noise: float = 0.9) -> float:
        rng = np.random.default_rng(5)  # the same unseen-speaker recordings for every call
        values = []
        for item in range(1, 41):
            partner = item + 4  # the audio of another item of the same class (labels repeat every 4)
            recording = tables["audio"].lookup(np.array([partner]))[0][0]
            vectors = {
                "image": tables["image"].lookup(np.array([item]))[0][0],
                "audio": unit(recording + speaker_noise * rng.normal(size=12)),
            }
            q = EncodedQuery({(m, encoders[m]): vectors[m].astype(np.float32) for m in modalities})
            hits = create_strategy(name, **params).search(space, q, k=12)
            values.append(
                precision_at_10([h for h in hits if h.item_id not in (item, partner)], labels, labels[item - 1])
            )
        return float(np.mean(values))

    # a recording of a speaker the collection knows (the partner's own): fusing it with the image is never
    # below the better of the two, and here above it
    seen = [mean_precision(defaults, modalities, 0.0) for modalities in (("image",), ("audio",), ("image", "audio"))]
    assert seen[2] > max(seen[:2])
    best_single = max(mean_precision(defaults, ("image",)), mean_precision(defaults, ("audio",)))
    # An unseen speaker's recording, confidently wrong: not "never below" (issue 13's goal, missed; no
    # label-free predictor tells such a recording from a good one, docs/benchmarks/notes/adaptive_powers.md).
    # Adaptive weighting loses less than the raw sum, which loses over 0.05. (A bound on the loss held on this
    # seed alone: on seeds 1-5 of `labelled_space` both lose 0.02-0.12; the benchmark measures the real case.)
    fused, summed = mean_precision(defaults, ("image", "audio")), mean_precision(raw, ("image", "audio"))
    assert summed < best_single - 0.05
    assert fused > summed


def test_a_noise_clip_does_not_move_a_learned_strategys_top_results(tmp_path: Path) -> None:
    from retrieval.train import TrainConfig, train

    space, labels = labelled_space(tmp_path / "v", audio_noise=0.8)
    config = TrainConfig("gated", label_field="label", epochs=15, batch_size=64, hidden=32, out_dim=16)
    result = train(space, space.item_ids(), [int(labels[i - 1]) for i in space.item_ids()], config, tmp_path / "g")
    image = space.tables[IMAGE.key].lookup(np.array([1]))[0][0]
    noise = unit(np.eye(12)[0] + 0.05 * np.random.default_rng(3).normal(size=12)).astype(np.float32)
    alone = EncodedQuery({("image", "img-enc"): image})
    noisy = EncodedQuery({("image", "img-enc"): image, ("audio", "aud-enc"): noise})
    for name in ("gated", "early"):
        # early's identity weighs channels per query too; it must be fixed for the clip to show
        params = {"checkpoint": str(result.path)} if name == "gated" else {"weighting": "fixed"}
        top = [h.item_id for h in create_strategy(name, **params).search(space, alone, k=10)]
        assert [h.item_id for h in create_strategy(name, **params).search(space, noisy, k=10)] == top
        # without screening, the clip does move them
        unscreened = create_strategy(name, screen=False, **params).search(space, noisy, k=10)
        assert [h.item_id for h in unscreened] != top
    # Unscreened, early's adaptive weights no longer keep the clip out on their own: they weigh coherence, which
    # a flat clip's few best items (one class) fool; the screen is the defence (docs/defaults.md)


def three_text_encoders(tmp_path: Path) -> tuple[VectorSpace, EncodedQuery]:
    """As with the pretrained profile: text meets captions through three encoders, images through one.
    Items 1-20 have captions that barely match the text query; 21-40 only an image, item 40's a good match."""
    rng = np.random.default_rng(0)
    fields = [Field("image", "clip"), Field("text", "clip"), Field("text", "clap"), Field("text", "sbert")]
    query = {f.encoder: unit(rng.normal(size=8)).astype(np.float32) for f in fields}
    storage = VectorStorage(tmp_path)
    rows: dict[str, dict[int, np.ndarray]] = {f.key: {} for f in fields}
    for item in range(1, 41):
        if item <= 20:  # captioned items, each caption a weak match in every text space
            for f in fields[1:]:
                rows[f.key][item] = unit(0.5 * query[f.encoder] + rng.normal(size=8))
        else:  # uncaptioned items; item 40's image matches the text well
            rows["image@clip"][item] = unit((3.0 if item == 40 else 0.0) * query["clip"] + rng.normal(size=8))
    for f in fields:
        table = storage.load(f.key, dim=8, encoder=f.encoder)
        table.upsert(np.array(list(rows[f.key])), np.stack(list(rows[f.key].values())).astype(np.float32))
        storage.save(f.key, table)
    space = VectorSpace(fields, storage, generation=1)
    return space, EncodedQuery({("text", encoder): vector for encoder, vector in query.items()})


def test_several_encoders_of_one_modality_do_not_win_by_count(tmp_path: Path) -> None:
    """Captions that barely match must not outrank an image that matches well for having three channels."""
    space, q = three_text_encoders(tmp_path)
    for name, params in (
        ("late", {}),
        ("late", {"weighting": "fixed"}),
        ("late", RAW),
        ("early", {}),
        ("early", {"weighting": "fixed"}),
        ("early", {"standardise": False}),
        ("hybrid", {}),  # image (with audio) one group, text the other: the text group weighs as one channel
        ("hybrid", {"weighting": "fixed"}),
        ("hybrid", {"groups": [["image", "text"]], "standardise": False, **RAW}),  # one group: summed inside it
    ):
        ranked = [h.item_id for h in create_strategy(name, **params).search(space, q, 40)]
        assert ranked.index(40) < 3, (name, params)  # summed over channels, item 40 came after most captions


def test_an_empty_field_is_not_counted_among_a_modalitys_channels(tmp_path: Path) -> None:
    """A field whose table is empty reaches no item: early's index query must share a modality among the
    fields that hold vectors, as its exact scores do (with the empty one counted, the index halved the text
    channel that the exact score kept whole)."""
    from retrieval.fusion.concat import concat_query, present_fields

    full, empty = Field("text", "a"), Field("text", "b")
    storage = VectorStorage(tmp_path)
    rows = unit(np.random.default_rng(0).normal(size=(5, 4))).astype(np.float32)
    table = storage.load(full.key, dim=4, encoder="a")
    table.upsert(np.arange(1, 6), rows)
    storage.save(full.key, table)
    storage.save(empty.key, storage.load(empty.key, dim=4, encoder="b"))
    space = VectorSpace([full, empty], storage, generation=1)
    assert present_fields(space) == [full]
    q = EncodedQuery({("text", "a"): rows[0], ("text", "b"): rows[1]})
    assert concat_query(present_fields(space), [4], q) == pytest.approx(rows[0])
    hits = create_strategy("early", standardise=False).search(space, q, 5)
    assert hits[0].item_id == 1 and hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_a_hybrid_group_reached_through_several_encoders_weighs_as_one_channel(tmp_path: Path) -> None:
    """Hybrid's default groups: the image group has one channel for the text query, the text group three.
    Each group's adaptive weight is the sum of its channels' weights times their shares, so the text group
    weighs as the mean of its three channels (summed, it had three votes to the image group's one)."""
    from retrieval.fusion.adaptive import channel_weights
    from retrieval.fusion.hybrid import HybridFusion

    space, q = three_text_encoders(tmp_path)
    hybrid = HybridFusion()
    units = hybrid.units(space, q)
    assert [len(unit) for unit in units] == [1, 3]
    queries = hybrid.unit_queries(space, q, units, 10)
    lists, ids = hybrid._lists(space, queries, units, 10)
    raws = [hybrid._raw(space, uq, unit, ids, listed) for uq, unit, listed in zip(queries, units, lists)]
    weights = hybrid.unit_weights(space, q, queries, units, raws, ids)
    per_channel = channel_weights(space, q, ids)
    image, text = (np.array([per_channel[c.vector_key] for c in unit]) for unit in units)
    assert weights[1] / weights[0] == pytest.approx(text.mean() / image.sum(), rel=1e-5)
    assert not np.isclose(text.mean(), text.sum())  # the case tells a mean from a sum


def test_a_hybrid_search_uses_only_indexes_that_prepare_built(space: VectorSpace) -> None:
    """The query's channels come in its own order (audio before image); the group's index is the one
    `prepare` built in the space's field order, not a second one built by the first search. A query with
    one of the group's modalities searches that field's own index, which `prepare` built too (a first such
    query built it otherwise: ~6 min at 10M items)."""
    from retrieval.space import indexes_used

    hybrid = create_strategy("hybrid", groups=[["image", "audio"]])
    hybrid.prepare(space)
    built = set(space.loaded_indexes)
    full = query(space)
    partial = [EncodedQuery({key: vector}) for key, vector in full.vectors.items()]
    for q, searched in zip([full, *partial], ["early", "field", "field"]):
        with indexes_used(space) as used:
            assert hybrid.search(space, q, k=5)
        assert set(space.loaded_indexes) == built and {strategy for strategy, _ in used} == {searched}, used


def test_dropped_indexes_are_opened_again_and_answer_alike(space: VectorSpace) -> None:
    """What a benchmark frees between strategies (`drop_indexes`) and reads back (`loaded_indexes`)."""
    late = create_strategy("late")
    q = query(space)
    before = [(r.item_id, r.score) for r in late.search(space, q, k=5)]
    held = set(space.loaded_indexes)
    assert held == {("field", "image@img-enc"), ("field", "audio@aud-enc")}
    with pytest.raises(TypeError):  # a view: only `index` adds and only `drop_indexes` removes
        space.loaded_indexes[("field", "x")] = space.loaded_indexes[("field", "image@img-enc")]  # type: ignore[index]
    space.drop_indexes()
    assert not space.loaded_indexes
    assert [(r.item_id, r.score) for r in late.search(space, q, k=5)] == before
    assert set(space.loaded_indexes) == held


PRETRAINED_LIKE = [Field("image", "A"), Field("audio", "B"), Field("text", "A"), Field("text", "B"), Field("text", "C")]


@pytest.mark.parametrize("name", ["late", "hybrid"])
@pytest.mark.parametrize("centre", [False, True])
def test_prepare_builds_exactly_the_indexes_every_kind_of_query_searches(
    tmp_path: Path, name: str, centre: bool
) -> None:
    """Fields shaped like the pretrained profile's (A shared by image and text as OpenCLIP is, B by audio and
    text as CLAP is, C text only): an image+audio query reaches two of hybrid's three text fields, a subset
    whose index its first search built before; on the centred view when the strategy centres."""
    from itertools import combinations

    from retrieval.space import indexes_used

    storage, rng = VectorStorage(tmp_path), np.random.default_rng(0)
    for f in PRETRAINED_LIKE:
        table = storage.load(f.key, dim=8, encoder=f.encoder)
        table.upsert(np.arange(1, 41), unit(rng.normal(size=(40, 8)).astype(np.float32)))
        storage.save(f.key, table)
    space = VectorSpace(PRETRAINED_LIKE, storage, generation=1)
    strategy = create_strategy(name, centre=centre)
    strategy.prepare(space)
    view = space.centred() if centre else space
    built, searched = set(view.loaded_indexes), set()
    assert not centre or not space.loaded_indexes  # nothing built on the plain view that searches never use
    for size in (1, 2, 3):
        for modalities in combinations(["image", "audio", "text"], size):
            keys = [(f.modality, f.encoder) for f in PRETRAINED_LIKE if f.modality in modalities]
            q = EncodedQuery({key: unit(rng.normal(size=8).astype(np.float32)) for key in keys})
            with indexes_used(view) as used:
                assert strategy.search(space, q, k=5)
            searched |= set(used)
            assert set(view.loaded_indexes) == built, (modalities, set(view.loaded_indexes) - built)
    assert searched == built  # none built in vain
    if name == "hybrid":
        assert ("centred-" * centre + "early", "text@A+text@B") in built  # the image+audio query's text unit


@pytest.mark.parametrize("name", ["late", "hybrid", "early"])
def test_each_row_a_search_scores_is_read_from_the_tables_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Issue 38, item 1: the adaptive defaults read the same rows several times a query (the sample their
    predictors score, every query; the candidates, for the exact scores and again for the weights): the
    sample is now read once per collection and each candidate's row once per query (hybrid too: its groups
    weigh their inputs over their own lists, read from the union's rows), same results."""
    from storage import VectorTable

    space, _ = labelled_space(tmp_path, audio_noise=0.8)
    rng = np.random.default_rng(7)
    queries = [
        EncodedQuery(
            {
                ("image", "img-enc"): unit(rng.normal(size=16)).astype(np.float32),
                ("audio", "aud-enc"): unit(rng.normal(size=12)).astype(np.float32),
            }
        )
        for _ in range(3)
    ]
    strategy = create_strategy(name)
    before = [strategy.search(space, q, 10) for q in queries]  # the sample is held from here on
    read: list[tuple[str, int]] = []
    original_similarities, original_gather = VectorTable.similarities, VectorTable.gather

    def similarities(table, ids, *args):
        read.extend((table.header.get("field"), int(i)) for i in np.asarray(ids).ravel())
        return original_similarities(table, ids, *args)

    def gather(table, pos, present):  # `lookup` and held rows read through it, by row
        read.extend((table.header.get("field"), int(i)) for i in table.ids[pos[present]])
        return original_gather(table, pos, present)

    monkeypatch.setattr(VectorTable, "similarities", similarities)
    monkeypatch.setattr(VectorTable, "gather", gather)
    for q, expected in zip(queries, before):
        read.clear()
        hits = strategy.search(space, q, 10)
        assert [(h.item_id, h.score) for h in hits] == [(h.item_id, pytest.approx(h.score, abs=1e-5)) for h in expected]
        most = max(read.count(row) for row in set(read))
        assert most == 1, f"{name}: a row read {most} times in one query"


def test_a_hybrid_search_searches_each_index_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 38: a standardised, adaptive group was searched twice a query, once to weigh its inputs and once
    with the weighted query; its one list is now re-scored with the weighted query, so the image+audio group's
    best item is still the best of the weighted sum of its channels over the candidates."""
    from storage import FaissStore

    space, _ = labelled_space(tmp_path, audio_noise=0.8)
    hybrid = create_strategy("hybrid", candidates=20)  # image and audio: one group
    rng = np.random.default_rng(4)
    q = EncodedQuery(
        {
            ("image", "img-enc"): unit(rng.normal(size=16)).astype(np.float32),
            ("audio", "aud-enc"): unit(rng.normal(size=12)).astype(np.float32),
        }
    )
    hybrid.prepare(space)
    searched: list[int] = []
    original = FaissStore.search

    def search(store: FaissStore, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        searched.append(id(store))
        return original(store, vectors, k)

    monkeypatch.setattr(FaissStore, "search", search)
    hits = hybrid.search(space, q, 5)
    assert len(searched) == len(set(searched)) == 1, "the group's index was searched more than once"
    group = hybrid.units(space, q)[0]
    weighted = hybrid.searched(space, q, [group], 5)[0][0]
    ids = np.array([h.item_id for h in hits])
    parts = channel_parts_total(space, weighted, ids)
    assert list(np.argsort(-parts, kind="stable")) == list(range(len(ids)))  # ranked by the weighted sum


def channel_parts_total(space: VectorSpace, q: EncodedQuery, ids: np.ndarray) -> np.ndarray:
    from retrieval.fusion.base import channel_parts

    return sum(part for part, _ in channel_parts(space, q, space.channels(q), ids).values())


class RemoteStore:
    """A store that answers over a network: its search waits until every unit's search has been sent."""

    remote = True

    def __init__(self, store: VectorStore, barrier: threading.Barrier) -> None:
        self.store, self.barrier = store, barrier

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.barrier.wait()  # one unit at a time would never meet the others here: BrokenBarrierError
        return self.store.search(queries, k)


def test_late_sends_its_units_searches_to_a_server_together(space: VectorSpace) -> None:
    """A Milvus server costs a round trip a search: late's units (one a field here) go out together, and
    rank as they did one at a time."""
    late = create_strategy("late")
    late.prepare(space)
    q = query(space)
    alone = [(h.item_id, round(h.score, 5)) for h in late.search(space, q, k=10)]
    barrier = threading.Barrier(2, timeout=10)
    space._indexes = {key: RemoteStore(store, barrier) for key, store in space._indexes.items()}
    assert [(h.item_id, round(h.score, 5)) for h in late.search(space, q, k=10)] == alone


def test_coherence_leaves_out_zero_vectors(tmp_path: Path) -> None:
    """A transcript with no words is stored as the zero vector, a field with nothing in it: the best items'
    likeness in that field is that of the items that have words (counted as items unlike every other, ten
    identical transcripts beside ten empty ones looked a mix, and the channel lost its weight)."""
    from retrieval.fusion.adaptive import coherence

    image, heard = Field("image", "img-enc"), Field("audio", "sbert")
    rng = np.random.default_rng(0)
    said = unit(rng.normal(size=4)).astype(np.float32)
    words = {
        i: said if i <= 10 else np.zeros(4, np.float32) if i <= 20 else unit(rng.normal(size=4)) for i in range(1, 41)
    }
    storage = VectorStorage(tmp_path)
    for f, rows in ((image, {i: unit(rng.normal(size=8)) for i in range(1, 41)}), (heard, words)):
        table = storage.load(f.key, dim=len(rows[1]), encoder=f.encoder)
        table.upsert(np.array(list(rows)), np.stack(list(rows.values())).astype(np.float32))
        storage.save(f.key, table)
    space = VectorSpace([image, heard], storage, generation=1)
    channel = space.channels(EncodedQuery({("image", "img-enc"): unit(rng.normal(size=8)).astype(np.float32)}))
    assert coherence(space, channel, np.arange(1, 21)) == pytest.approx(1.0)  # the ten that have words agree
    assert coherence(space, channel, np.arange(1, 21)) == pytest.approx(coherence(space, channel, np.arange(1, 11)))


@pytest.mark.parametrize("name", ["late", "hybrid", "early"])
def test_a_query_multiplies_on_one_blas_thread_and_gives_the_threads_back(
    space: VectorSpace, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Issue 38, item 2: OpenBLAS split a query's products of a few hundred rows over its threads, which then
    spun on into the next FAISS search (late at 100k items: p50 x0.7 with one thread). Every product a
    search makes on the held rows runs on one BLAS thread; the caller's thread count comes back after."""
    from threadpoolctl import ThreadpoolController

    from retrieval.space import HeldRows

    blas = ThreadpoolController().select(user_api="blas")
    seen: list[int] = []
    original = HeldRows.scores

    def scores(held: HeldRows, key: str, vector: np.ndarray) -> np.ndarray:
        seen.extend(lib["num_threads"] for lib in blas.info())
        return original(held, key, vector)

    monkeypatch.setattr(HeldRows, "scores", scores)
    with blas.limit(limits=2):
        hits = create_strategy(name).search(space, query(space), 3)
        after = [lib["num_threads"] for lib in blas.info()]
    assert hits and seen and set(seen) == {1}, f"{name}: products on {sorted(set(seen))} BLAS threads"
    assert after == [2] * len(after)


def test_a_groups_weights_from_the_unions_scores_equal_those_of_its_own_rows(tmp_path: Path) -> None:
    """Issue 38, item 2: a hybrid group's inputs are weighed over its own list; their scores are now taken
    from the union's held rows (`at`) rather than from a copy of the list's rows: the same weights."""
    from retrieval.fusion.adaptive import channel_judgements

    space, _ = labelled_space(tmp_path, audio_noise=0.8)
    rng = np.random.default_rng(3)
    q = EncodedQuery(
        {
            ("image", "img-enc"): unit(rng.normal(size=16)).astype(np.float32),
            ("audio", "aud-enc"): unit(rng.normal(size=12)).astype(np.float32),
        }
    )
    ids = space.item_ids()
    held = space.held_rows(ids)
    at = np.flatnonzero(rng.random(len(ids)) < 0.5)
    from_union = channel_judgements(space, q, ids[at], held, at)
    own = channel_judgements(space, q, ids[at], space.held_rows(ids[at]))
    assert from_union.keys() == own.keys() and len(own) == 2
    for key, (weight, judgement) in own.items():
        assert from_union[key][0] == pytest.approx(weight, rel=1e-6)
        assert from_union[key][1].coherence == pytest.approx(judgement.coherence, rel=1e-6)
        assert weight != pytest.approx(1.0, abs=1e-3)  # the channels differ: the weights say something


def three_field_space(tmp_path: Path) -> tuple[VectorSpace, np.ndarray]:
    """120 items of 4 classes: images and recordings cluster by class; captions cluster by one of 4
    templates that has nothing to do with the class (as "seven, read aloud by george" lies nearer
    "eight, read aloud by george" than "the digit seven")."""
    rng = np.random.default_rng(0)
    labels, templates = np.arange(120) % 4, (np.arange(120) // 4) % 4
    centres = {m: rng.normal(size=(4, 8)) for m in ("image", "audio", "text")}
    rows = {
        "image": centres["image"][labels] + 0.5 * rng.normal(size=(120, 8)),
        "audio": centres["audio"][labels] + 0.5 * rng.normal(size=(120, 8)),
        "text": centres["text"][templates] + 0.3 * rng.normal(size=(120, 8)),
    }
    fields = [IMAGE, AUDIO, Field("text", "txt-enc")]
    storage = VectorStorage(tmp_path)
    for f in fields:
        table = storage.load(f.key, dim=8, encoder=f.encoder)
        table.upsert(np.arange(1, 121), unit(rows[f.modality].astype(np.float32)))
        storage.save(f.key, table)
    return VectorSpace(fields, storage, generation=1), labels


def test_coherence_runs_from_any_items_to_nearest_neighbours(tmp_path: Path) -> None:
    """0 for a set no more alike than any items, about 1 for a set as alike as an item's nearest neighbours."""
    from retrieval.fusion.adaptive import coherences_in, neighbour_sets, yardstick

    space, labels = three_field_space(tmp_path)
    random, near = yardstick(space, AUDIO.key)
    assert near > random + 0.3  # recordings cluster by class
    one_class = np.flatnonzero(labels == 2)[:10] + 1  # ten images of one class, judged by their recordings
    mixed = np.arange(1, 11)  # every class
    a_class, a_mix = coherences_in(space, [{IMAGE.key, "text@txt-enc"}] * 2, [one_class, mixed])
    assert a_mix < 0.1 < 0.7 < a_class
    assert len(neighbour_sets(space, AUDIO.key)) == 64


def test_a_field_whose_neighbours_disagree_elsewhere_counts_less(tmp_path: Path) -> None:
    """Captions whose nearest captions share a template, not a class, have less agreement than recordings
    whose nearest recordings share a class; the factor enters the weight as the other predictors do."""
    from retrieval.fusion.adaptive import AGREEMENT_POWER, Judgement, field_agreement

    space, _ = three_field_space(tmp_path)
    text, audio, image = (field_agreement(space, key) for key in ("text@txt-enc", AUDIO.key, IMAGE.key))
    # recordings' neighbours agree in the images, not in the captions: about half of the way to 1
    assert text < 0.05 < 0.3 < min(audio, image)
    assert AGREEMENT_POWER > 0
    assert Judgement(1.0, 2.0, 0.5, text).raw < Judgement(1.0, 2.0, 0.5, audio).raw


def test_a_field_too_small_for_neighbours_keeps_the_old_yardstick(tmp_path: Path) -> None:
    """Ten nearest of twelve items are most of the field, not neighbours: there coherence stays a share of 1
    and agreement neutral (a text query lost its one transcript-only match to that, on 12 real recordings)."""
    from retrieval.fusion.adaptive import NEIGHBOURED, field_agreement, neighbour_sets, yardstick

    rng = np.random.default_rng(0)
    small = make_space(
        tmp_path / "small",
        {i: rng.normal(size=8).tolist() for i in range(1, 13)},
        {i: rng.normal(size=6).tolist() for i in range(1, 13)},
    )
    assert NEIGHBOURED > 12 and neighbour_sets(small, AUDIO.key) == []
    assert yardstick(small, AUDIO.key)[1] == 1.0 and field_agreement(small, AUDIO.key) == 1.0
    big, _ = labelled_space(tmp_path / "big", audio_noise=0.8)  # 120 items: neighbours of their own
    assert len(neighbour_sets(big, AUDIO.key)) == 64 and yardstick(big, AUDIO.key)[1] < 1.0
