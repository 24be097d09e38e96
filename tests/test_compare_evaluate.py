"""Comparison statistics, evaluation against ranx, tuning and presets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retrieval.compare import compare_results, kendall_tau, pair_stats, rank_biased_overlap
from retrieval.results import Hit, Method, SearchResult
from retrieval.tune import grid, ndcg_at


def result(name: str, keys: list[int], assets: dict[int, list[str]] | None = None) -> SearchResult:
    hits = [
        Hit(n + 1, i, f"item{i}", 1.0 - n / 10, {}, {}, dict.fromkeys((assets or {}).get(i, ["image"]), "x"))
        for n, i in enumerate(keys)
    ]
    return SearchResult(name, hits, 0.001)


def test_rank_biased_overlap_matches_reference_values() -> None:
    # reference values from the `rbo` package (0.1.3, RankingSimilarity.rbo_ext, p=0.9), checked by hand once
    assert rank_biased_overlap([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(1.0)
    assert rank_biased_overlap([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]) == pytest.approx(0.0)
    assert rank_biased_overlap([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == pytest.approx(0.737775)
    assert rank_biased_overlap(list("abcdefg"), list("abdcfge")) == pytest.approx(0.9500365)
    # top-weighted: a swap at the top costs more than one at the bottom
    assert rank_biased_overlap([1, 2, 3, 4], [2, 1, 3, 4]) < rank_biased_overlap([1, 2, 3, 4], [1, 2, 4, 3])


def test_pair_statistics() -> None:
    stats = pair_stats("a", [1, 2, 3, 4], "b", [3, 4, 5, 6], k=4)
    assert (stats.overlap, stats.jaccard) == (0.5, pytest.approx(2 / 6))
    assert kendall_tau([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) < 0
    assert kendall_tau([1, 2, 3], [4, 5, 6]) is None, "nothing in common: undefined, not -0.71"
    assert kendall_tau([1, 2, 3], [1, 5, 6]) is None, "one shared item orders nothing"


def test_movements_and_summary() -> None:
    comparison = compare_results(
        {"late": result("late", [1, 2, 3, 4]), "gated": result("gated", [3, 1, 9, 8], {9: ["audio"], 8: ["audio"]})},
        k=4,
    )
    moves = {m.item_id: m.change.get("gated") for m in comparison.items}
    assert moves == {1: "down 1", 2: "dropped", 3: "up 2", 4: "dropped", 9: "new", 8: "new"}
    assert comparison.items[0].ranks == {"late": 1, "gated": 2}
    assert "gated keeps 2 of late's top 4" in comparison.summary[0]
    assert "brought in 2 (2 only audio)" in comparison.summary[0]


def test_binary_ndcg_equals_ranx() -> None:
    from ranx import Qrels, Run, evaluate

    rng = np.random.default_rng(0)
    for trial in range(5):
        relevant = rng.random(30) < 0.3
        scores = rng.random(30)
        order = np.argsort(-scores)
        total = int(relevant.sum()) + 2  # two relevant items the run never found
        ours = ndcg_at(order, relevant, total, 10)
        qrels = {str(i): 1 for i in np.flatnonzero(relevant)} | {"x1": 1, "x2": 1}
        ref = evaluate(Qrels({"q": qrels}), Run({"q": {str(i): float(s) for i, s in enumerate(scores)}}), "ndcg@10")
        assert ours == pytest.approx(float(ref), abs=1e-9), trial


def test_grid_covers_sum_and_rrf() -> None:
    settings = grid(["audio", "image"])
    assert len(settings) == 4 * 16 + 4 * 16
    assert {s["fusion"] for s in settings} == {"sum", "rrf"}


@pytest.mark.slow
@pytest.mark.datasets
def test_evaluate_compare_and_tune_on_the_demo(
    ui_demo: dict[str, str], tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture
) -> None:
    from conftest import copy_demo
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    from retrieval import SearchEngine
    from retrieval.__main__ import main as retrieval_main
    from retrieval.evaluate import evaluate, label_qrels, load_queries

    demo = copy_demo(ui_demo, tmp_path_factory)  # a private copy: `tune` saves a preset in it
    url = demo["url"]
    queries_file = Path(demo["queries"])
    engine = SearchEngine.open(url)
    queries = load_queries(queries_file, "digit")
    assert {q.kind for q in queries} >= {"image", "audio", "text", "image+audio+text"}
    qrels = label_qrels(engine, queries, "digit")
    assert all(q.exclude not in qrels[q.qid] for q in queries)
    methods = [Method("late", "late"), Method("rrf", "late", {"fusion": "rrf"}), Method("late again", "late")]
    evaluation = evaluate(engine, queries, qrels, methods, k=10)
    # the table is ranx's own numbers on the same runs
    usable = [q.qid for q in queries if qrels[q.qid]]
    reference = ranx_evaluate(
        Qrels({i: qrels[i] for i in usable}), Run({i: evaluation.runs["rrf"][i] for i in usable}), "ndcg@10"
    )
    assert evaluation.table["rrf"]["all"]["ndcg@10"] == pytest.approx(float(reference), abs=1e-4)
    p = evaluation.pvalues["ndcg@10"]
    assert p["late"]["late again"] == 1.0, "the same ranking twice is no difference at all"
    assert p["late"]["rrf"] == p["rrf"]["late"] and p["late"]["rrf"] < 1.0  # two rankings that differ
    assert "Paired randomisation test" in evaluation.to_markdown()

    out = tmp_path_factory.mktemp("eval")
    assert (
        retrieval_main(
            [
                "evaluate",
                "--db",
                url,
                "--queries",
                str(queries_file),
                "--label-field",
                "digit",
                "--strategy",
                "late",
                "--strategy",
                "early",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert {p.name for p in out.iterdir()} >= {"evaluation.json", "evaluation.md", "ndcg@10.html", "bump.html"}
    assert "### ndcg@10" in capsys.readouterr().out

    some = queries_file.with_name("some-queries.jsonl")  # beside it: its media paths are relative to it
    some.write_text("".join(queries_file.read_text().splitlines(keepends=True)[::3]))
    assert (
        retrieval_main(["tune", "--db", url, "--queries", str(some), "--label-field", "digit", "--name", "best"]) == 0
    )
    printed = capsys.readouterr().out
    assert "saved as preset 'best'" in printed and "gain in nDCG@10" in printed
    preset = engine.preset("best")
    assert preset.strategy == "late" and set(preset.weights) <= {"image", "audio", "text"}
    hits = engine.search(image=queries[0].query.image, preset="best", k=3).hits
    spelled_out = engine.search(
        image=queries[0].query.image, strategy=preset.strategy, weights=preset.weights, k=3, **preset.params
    ).hits
    assert [(h.key, h.score) for h in hits] == [(h.key, h.score) for h in spelled_out] and len(hits) == 3

    assert (
        retrieval_main(
            [
                "compare",
                "--db",
                url,
                "--text",
                "seven",
                "--image",
                str(queries[0].query.image),
                "--strategy",
                "late",
                "--strategy",
                "early",
                "--preset",
                "best",
                "--json",
            ]
        )
        == 0
    )
    compared = json.loads(capsys.readouterr().out)
    assert set(compared["methods"]) == {"late", "early", "best"} and len(compared["pairs"]) == 3
    assert compared["summary"] and all("latency" not in s for s in compared["summary"])
    with pytest.raises(LookupError, match="no preset"):
        engine.preset("nope")
    # a preset `tune` saved before late fusion weighed channels per query named no weighting: it was tuned
    # with fixed weights and keeps them; a preset saved by other means keeps what it named
    old = {k: v for k, v in preset.params.items() if k != "weighting"}
    engine.save_preset(Method("tuned before", "late", old, preset.weights), {"held_out": {}})
    engine.save_preset(Method("hand-made", "late", old, preset.weights))
    assert engine.preset("tuned before").params == {**old, "weighting": "fixed"}
    assert engine.preset("hand-made").params == old


def test_tied_items_did_not_move() -> None:
    """Equal scores express no order: two methods listing a tie differently moved nothing."""

    def tied(name: str, keys: list[int]) -> SearchResult:
        return SearchResult(
            name, [Hit(n + 1, i, f"item{i}", 1.0, {}, {}, {"text": "x"}) for n, i in enumerate(keys)], 0.0
        )

    comparison = compare_results({"late": tied("late", [1, 2, 3, 4]), "early": tied("early", [4, 3, 2, 1])}, k=4)
    assert {m.change["early"] for m in comparison.items} == {"same"}
    assert not any(m.moved for m in comparison.items)
    assert comparison.pairs[0].kendall_tau is None, "all tied: no order to correlate"
    assert "promoted 0 and demoted 0" in comparison.summary[0] and "Kendall" not in comparison.summary[0]
    # a real move past a tie group still counts: 5 jumps from below the tie to the top
    moved = compare_results({"late": tied("late", [1, 2, 3]), "early": result("early", [5, 1, 2])}, k=3)
    assert {m.item_id: m.change["early"] for m in moved.items}[5] == "new"
