"""Learned strategies on synthetic fields where the right answer is known."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.errors import InvalidInputError
from retrieval.fusion import create_strategy, learned_strategies, strategy_class
from retrieval.fusion.checkpoint import FusionCheckpoint
from retrieval.fusion.registry import checkpoint_strategy
from retrieval.profiles import Field
from retrieval.space import EncodedQuery, VectorSpace
from retrieval.train import TrainConfig, contrastive_loss, corrupt_views, random_views, train
from storage import EncoderMismatchError, VectorStorage

A, B, C = Field("image", "enc-a"), Field("audio", "enc-b"), Field("text", "enc-c")
CLASSES = 5


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def synthetic_space(
    root: Path, n: int = 300, seed: int = 0, informative=(True, True, False), dims=(16, 12, 10)
) -> tuple[VectorSpace, np.ndarray]:
    """Items of CLASSES classes; informative fields are class centre + noise, the others pure noise.
    Every third item lacks field B, every seventh lacks field A (both coprime with CLASSES)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    storage = VectorStorage(root)
    for f, dim, useful in zip((A, B, C), dims, informative):
        centres = rng.normal(size=(CLASSES, dim))
        vectors = (centres[labels] + 0.6 * rng.normal(size=(n, dim))) if useful else rng.normal(size=(n, dim))
        keep = np.ones(n, bool)
        keep[::3] = f != B
        keep[::7] &= f != A
        table = storage.load(f.key, dim=dim, encoder=f.encoder)
        table.upsert(np.arange(n)[keep] + 1, unit(vectors[keep].astype(np.float32)))
        storage.save(f.key, table)
    return VectorSpace([A, B, C], storage, generation=1), labels


def fit(space: VectorSpace, labels: np.ndarray, strategy: str, out: Path, **overrides) -> Path:
    config = TrainConfig(
        strategy,
        label_field="label",
        epochs=overrides.pop("epochs", 25),
        batch_size=128,
        hidden=64,
        width=32,
        out_dim=32,
        **overrides,
    )
    return train(space, space.item_ids(), [int(labels[i - 1]) for i in space.item_ids()], config, out).path


def only(space: VectorSpace, field: Field, item: int) -> EncodedQuery:
    vector = space.tables[field.key].lookup(np.array([item]))[0][0]
    return EncodedQuery({(field.modality, field.encoder): vector})


def precision(hits, labels: np.ndarray, label: int) -> float:
    return float(np.mean([labels[h.item_id - 1] == label for h in hits]))


def test_a_noisy_modality_gets_a_low_gate(tmp_path: Path) -> None:
    space, labels = synthetic_space(tmp_path / "v", informative=(True, True, False))
    ckpt = FusionCheckpoint.load(fit(space, labels, "gated", tmp_path / "g.safetensors"))
    ids = space.item_ids()
    blocks, mask = space.item_blocks(ckpt.fields, ckpt.dims, ids)
    full = mask.all(axis=1)
    with torch.no_grad():
        gates = ckpt.module.gates(
            [torch.from_numpy(b) for b in ckpt.prepare(blocks, mask)], torch.from_numpy(mask)
        ).numpy()[full]
    assert gates[:, 2].mean() < 0.5 * min(gates[:, 0].mean(), gates[:, 1].mean())


@pytest.mark.parametrize("strategy", ["gated", "cross_attention", "learned_early"])
def test_learned_strategies_align_modalities_across_spaces(tmp_path: Path, strategy: str) -> None:
    space, labels = synthetic_space(tmp_path / "v")
    path = fit(space, labels, strategy, tmp_path / f"{strategy}.safetensors")
    fusion = create_strategy(strategy, checkpoint=str(path))
    # An item that has field A only in the query; results may hold items lacking A entirely.
    query = only(space, A, 2)
    hits = fusion.search(space, query, k=300)
    assert precision(hits[:20], labels, labels[1]) >= 0.8
    b_not_a = set(space.tables[B.key].ids) - set(space.tables[A.key].ids)
    relevant = sum(labels[i - 1] == labels[1] for i in b_not_a)  # about 5 per class
    reached = [h for h in hits if h.item_id in b_not_a][:relevant]
    assert precision(reached, labels, labels[1]) >= 0.8, "an A query must find items that lack A but have B"
    assert all(sum(h.contributions.values()) == pytest.approx(h.score, abs=1e-5) for h in hits)


def test_learned_early_is_a_learned_strategy_and_early_takes_no_checkpoint(tmp_path: Path) -> None:
    """Early was two strategies behind one name: the identity, and with a checkpoint a learned projection."""
    assert learned_strategies() == ["gated", "cross_attention", "learned_early"]
    assert strategy_class("learned_early").module_kind == "early" and strategy_class("learned_early").learns
    assert strategy_class("early").module_kind is None and not strategy_class("early").learns
    with pytest.raises(InvalidInputError, match="no checkpoint; a trained projection is the strategy 'learned_early'"):
        create_strategy("early", checkpoint=str(tmp_path / "early.safetensors"))
    space, _ = synthetic_space(tmp_path / "v", n=20)
    with pytest.raises(InvalidInputError, match="does not learn; these do: gated, cross_attention, learned_early"):
        train(space, space.item_ids(), None, TrainConfig("early"), tmp_path / "e.safetensors")


def test_checkpoint_round_trip_determinism_and_refusal(tmp_path: Path) -> None:
    space, labels = synthetic_space(tmp_path / "v")
    first = fit(space, labels, "gated", tmp_path / "one.safetensors", epochs=3)
    second = fit(space, labels, "gated", tmp_path / "two.safetensors", epochs=3)
    a, b = FusionCheckpoint.load(first), FusionCheckpoint.load(second)
    for (name, x), (_, y) in zip(a.module.state_dict().items(), b.module.state_dict().items()):
        assert torch.equal(x, y), f"seeded training must be deterministic ({name})"
    assert a.meta["config"]["strategy"] == "gated" and len(a.meta["losses"]) == 3
    assert a.means is not None and len(a.means) == 3  # centred by default
    assert Path(f"{first}.loss.json").exists()

    # Same encoders, another collection: it indexes and searches.
    other, other_labels = synthetic_space(tmp_path / "other", n=100, seed=0)
    hits = create_strategy("gated", checkpoint=str(first)).search(other, only(other, A, 2), k=5)  # item 1: no A
    assert len(hits) == 5 and precision(hits, other_labels, other_labels[1]) >= 0.6  # item 2's class
    # Other encoders (dimensions): refused with a clear message.
    wrong, _ = synthetic_space(tmp_path / "wrong", n=50, dims=(16, 12, 11))
    with pytest.raises(EncoderMismatchError, match="was trained on fields"):
        create_strategy("gated", checkpoint=str(first)).search(wrong, only(wrong, A, 1), k=5)
    with pytest.raises(ValueError, match="holds a gated model"):
        create_strategy("cross_attention", checkpoint=str(first)).search(space, only(space, A, 1), k=5)
    with pytest.raises(ValueError, match="train it first"):
        create_strategy("gated").search(space, only(space, A, 1), k=5)


def test_rerank_mode_and_blend(tmp_path: Path) -> None:
    space, labels = synthetic_space(tmp_path / "v")
    path = str(fit(space, labels, "cross_attention", tmp_path / "x.safetensors", epochs=10))
    query = EncodedQuery({**only(space, A, 7).vectors, **only(space, B, 7).vectors})
    late_ids = set(create_strategy("late", candidates=30).candidates(space, query, 10).tolist())
    reranked = create_strategy("cross_attention", checkpoint=path, mode="rerank", candidates=30).search(
        space, query, 10
    )
    assert {h.item_id for h in reranked} <= late_ids and len(reranked) == 10
    blended = create_strategy("cross_attention", checkpoint=path, blend=1.0)
    scores = [h.score for h in blended.search(space, query, k=5)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 1.0  # learned cosine + identity part


def test_views_and_losses() -> None:
    generator = torch.Generator().manual_seed(0)
    mask = torch.tensor([[True, False, True], [False, True, False], [True, True, True]])
    for _ in range(20):
        view = random_views(mask, 0.3, generator)
        assert view.any(dim=1).all() and not (view & ~mask).any()
    a = torch.nn.functional.normalize(torch.eye(4), dim=-1)
    assert contrastive_loss(a, a, 0.1, None) < contrastive_loss(a, a.flip(0), 0.1, None)
    labels = torch.tensor([0, 0, 1, 1])
    assert contrastive_loss(a, a, 0.1, labels) > contrastive_loss(a, a, 0.1, None)  # same-label pairs are positives


def test_corruption_swaps_one_field_of_multi_field_views_for_another_rows() -> None:
    """At probability 1 every view of two or more fields has exactly one of them replaced by the same field
    of another row that has it; single-field views and the inputs themselves are untouched."""
    generator = torch.Generator().manual_seed(0)
    rows = 64
    inputs = [torch.arange(rows, dtype=torch.float32)[:, None] + 1000 * i for i in range(3)]  # row r: r, 1000+r, ...
    view = torch.ones(rows, 3, dtype=torch.bool)
    view[::4, 1:] = False  # every fourth row: one field only
    out = corrupt_views(inputs, view, 1.0, generator)
    swapped = torch.stack([(o != x).squeeze(1) for o, x in zip(out, inputs)], dim=1)
    assert not swapped[::4].any()  # a lone field is never swapped: the view would carry nothing true
    multi = torch.ones(rows, dtype=torch.bool)
    multi[::4] = False
    assert (swapped[multi].sum(dim=1) == 1).all()  # one field of each multi-field view
    for i, o in enumerate(out):
        assert set(o[swapped[:, i], 0].tolist()) <= {r + 1000.0 * i for r in range(rows)}  # another row's
    assert all(
        torch.equal(x, torch.arange(rows, dtype=torch.float32)[:, None] + 1000 * i) for i, x in enumerate(inputs)
    )
    assert corrupt_views(inputs, view, 0.0, generator) is inputs


def test_negative_terms_push_results_away(tmp_path: Path) -> None:
    space, labels = synthetic_space(tmp_path / "v")
    query = only(space, A, 2)  # item 2 is of class 1
    avoid = only(space, A, 3).vectors  # item 3, of class 2
    for name in ("late", "early", "hybrid"):
        raw = {"normalisation": "none"} if name != "early" else {}  # z-score gives the negative full scale
        plain = create_strategy(name, **raw).search(space, query, k=30)
        pushed = create_strategy(name, **raw).search(
            space, EncodedQuery(query.vectors, negatives=avoid, negative_weight=1.0), k=30
        )
        other = labels[2]
        assert precision(pushed, labels, labels[1]) >= precision(plain, labels, labels[1])
        assert sum(labels[h.item_id - 1] == other for h in pushed) <= sum(labels[h.item_id - 1] == other for h in plain)
        assert any(key.startswith("-") for key in pushed[0].contributions)


def test_hybrid_with_one_group_ranks_like_early(tmp_path: Path) -> None:
    space, _ = synthetic_space(tmp_path / "v")
    query = EncodedQuery({**only(space, A, 4).vectors, **only(space, B, 4).vectors, **only(space, C, 4).vectors})
    early = [h.item_id for h in create_strategy("early").search(space, query, k=20)]
    one_group = create_strategy("hybrid", groups=[["image", "audio", "text"]], candidates=300)
    assert [h.item_id for h in one_group.search(space, query, k=20)] == early


@pytest.mark.parametrize(
    "kind,hyper",
    [
        ("gated", {"hidden": 32}),
        ("gated", {"hidden": 0}),
        ("early", {"hidden": 32}),
        ("early", {"hidden": 0}),
        ("cross_attention", {"width": 8, "heads": 2, "layers": 2}),
    ],
)
def test_numpy_forward_pass_matches_torch(kind: str, hyper: dict) -> None:
    from retrieval.fusion.modules import build_module

    torch.manual_seed(0)
    module = build_module({"kind": kind, "dims": [12, 5, 7], "out_dim": 6, **hyper}).eval()
    with torch.no_grad():  # non-zero "missing" vectors, so the early module's gap filling is checked too
        for p in module.parameters():
            p.add_(0.1 * torch.randn_like(p))
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((5, d)).astype(np.float32) for d in (12, 5, 7)]
    mask = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], bool)
    with torch.no_grad():
        expected = module([torch.from_numpy(b) for b in blocks], torch.from_numpy(mask)).numpy()
    got = module.forward_numpy(blocks, mask)
    assert got.shape == expected.shape and np.allclose(got, expected, atol=1e-5)
    # one query row under several masks (a query and its variants) broadcasts to the same answer
    one = [b[:1] for b in blocks]
    with torch.no_grad():
        expected_one = module([torch.from_numpy(np.repeat(b, 5, axis=0)) for b in one], torch.from_numpy(mask)).numpy()
    assert np.allclose(module.forward_numpy(one, mask), expected_one, atol=1e-5)
    module.train()  # weights may change while training: the numpy copy is taken again afterwards
    with torch.no_grad():
        next(module.parameters()).mul_(2.0)
    module.eval()
    with torch.no_grad():
        changed = module([torch.from_numpy(b) for b in blocks], torch.from_numpy(mask)).numpy()
    assert np.allclose(module.forward_numpy(blocks, mask), changed, atol=1e-5)


@pytest.mark.parametrize("blend", [0.0, 0.5])
def test_item_vectors_are_fused_a_chunk_at_a_time_with_the_same_result(tmp_path: Path, blend: float) -> None:
    space, labels = synthetic_space(tmp_path / "v", n=100)
    strategy = create_strategy(
        "gated", checkpoint=str(fit(space, labels, "gated", tmp_path / "g.safetensors", epochs=2)), blend=blend
    )
    ids = space.item_ids()
    whole = strategy._compute(space, ids)
    chunked = strategy._compute(space, ids, chunk=7)  # 100 items: 14 full chunks and a partial one
    ckpt = strategy.checkpoint
    blocks, mask = space.item_blocks(ckpt.fields, ckpt.dims, ids)
    assert whole.shape == (len(ids), 32 + (sum(ckpt.dims) if blend else 0))
    assert np.allclose(chunked, whole, atol=1e-6) and np.allclose(whole[:, :32], ckpt.fuse(blocks, mask), atol=1e-6)


def test_a_checkpoint_trained_before_issue_13_loads_and_ranks_as_it_did(tmp_path: Path) -> None:
    """Tiny checkpoints trained by the code of commit f177a05 (tests/golden/before_issue13.py made them):
    today's code loads each and returns the top 10 that code returned, scores to 1e-4."""
    spec = importlib.util.spec_from_file_location(
        "before_issue13", Path(__file__).parent / "golden" / "before_issue13.py"
    )
    assert spec is not None and spec.loader is not None
    made_by = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(made_by)
    golden = Path(__file__).parent / "golden" / "before_issue13"
    expected = json.loads((golden / "expected.json").read_text())
    made = made_by.space(tmp_path)
    for name in made_by.STRATEGIES:  # learned early was `early` given a checkpoint then
        path = golden / f"{name}.safetensors"
        hits = create_strategy(checkpoint_strategy(name), checkpoint=str(path)).search(made, made_by.query(), 10)
        assert [h.item_id for h in hits] == [item for item, _ in expected[name]], name
        assert [h.score for h in hits] == pytest.approx([score for _, score in expected[name]], abs=1e-4), name


@pytest.mark.parametrize("strategy", ["gated", "cross_attention"])
def test_contributions_add_up_and_stay_bounded_with_unequal_weights(tmp_path: Path, strategy: str) -> None:
    """Walkthrough 4: with an input at 0.5, gated's and cross-attention's shares read ±700,000 for a score of
    0.8. Unequal weights mix each input's own fused vector by weight, so each input's share is exactly its
    term of the mix; with equal weights the shares still add up to the score."""
    space, labels = synthetic_space(tmp_path / "v")
    path = fit(space, labels, strategy, tmp_path / f"{strategy}.safetensors", epochs=5)
    fusion = create_strategy(strategy, checkpoint=str(path))
    item = 2  # has fields A and B
    vectors = {(f.modality, f.encoder): space.tables[f.key].lookup(np.array([item]))[0][0] for f in (A, B)}
    for weights in ({"image": 0.5, "audio": 1.0}, {"image": 0.3, "audio": 2.0}, {}):
        query = EncodedQuery(vectors, weights)
        hits = fusion.search(space, query, k=50)
        ids = np.array([h.item_id for h in hits])
        assert all(sum(h.contributions.values()) == pytest.approx(h.score, abs=1e-5) for h in hits)
        if not weights:
            continue
        items = fusion.item_vectors(space, ids)
        for modality in ("image", "audio"):
            term = items @ fusion.fused_query(query, {modality}) / 2  # its weighted vector, over both inputs
            assert [h.contributions[modality] for h in hits] == pytest.approx(term.tolist(), abs=1e-4)
