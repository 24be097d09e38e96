"""The first run: the demo trains what learns, the Search page opens on methods that differ, the compact
comparison grid, the per-result explanations, and the Strategies page / `python -m retrieval report`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_demo, recording
from streamlit.testing.v1 import AppTest

from retrieval import SearchEngine
from retrieval.compare import compare_results
from retrieval.results import Hit, Method, QueryInput, SearchResult

pytestmark = pytest.mark.datasets
APP = str(Path(__file__).resolve().parents[1] / "app.py")
EPOCHS = 3  # enough to train and differ from late; the demo itself trains 12


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from indexer.demo import DemoSpec, index_demo

    folder = tmp_path_factory.mktemp("first-run")
    url = f"sqlite:///{folder}/demo.db"
    index_demo(url, folder / "digits", spec=DemoSpec(limit=240), epochs=EPOCHS)
    return {"url": url, "queries": str(folder / "digits" / "queries.jsonl"), "digits": str(folder / "digits")}


@pytest.fixture(scope="module")
def engine(trained_demo: dict[str, str]) -> SearchEngine:
    return SearchEngine.open(trained_demo["url"])


@pytest.fixture
def query() -> QueryInput:
    """A text and a spoken seven (a fixture, not a module constant: without the shared datasets only the
    tests that need them skip, and collection does not fail)."""
    return QueryInput(text="the digit seven", audio=recording(7, "nicolas", 0))


def test_warm_up_runs_what_can_run_and_changes_no_result(
    trained_demo: dict[str, str], ui_demo: dict[str, str], query: QueryInput
) -> None:
    """The UI warms an engine up before its first search: every strategy that can run runs once (an
    untrained one is skipped, not an error), and what a search then returns is what a cold engine returns."""
    methods = ["late", "early", "hybrid", "gated", "cross_attention"]
    cold = SearchEngine.open(trained_demo["url"]).search_many(query, methods, k=10)
    warm = SearchEngine.open(trained_demo["url"])
    assert warm.warm_up(methods) == methods
    again = warm.search_many(query, methods, k=10)
    assert {m: [(h.key, h.score) for h in cold[m].hits] for m in methods} == {
        m: [(h.key, h.score) for h in again[m].hits] for m in methods
    }
    assert SearchEngine.open(ui_demo["url"]).warm_up(methods) == ["late", "early", "hybrid"]  # untrained demo


def test_the_demo_trains_so_every_strategy_answers(
    engine: SearchEngine, trained_demo: dict[str, str], query: QueryInput
) -> None:
    methods = ["late", "early", "hybrid", "gated", "cross_attention", "learned_early"]
    results = engine.search_many(query, methods, k=10, keep_going=True)
    assert {label: r.error for label, r in results.items()} == dict.fromkeys(methods)
    assert all(len(r.hits) == 10 for r in results.values())
    late = [h.item_id for h in results["late"].hits]
    for learned in ("gated", "cross_attention", "learned_early"):
        assert [h.item_id for h in results[learned].hits] != late, f"{learned} ranks exactly as late"
    for name in ("gated", "cross_attention", "learned_early"):
        curve = json.loads(Path(trained_demo["digits"], f"{name}.safetensors.loss.json").read_text())
        assert len(curve["losses"]) == EPOCHS and curve["seconds"] > 0
        assert curve["losses"][-1] < curve["losses"][0], f"{name} did not learn"


def test_demo_cli_trains_with_progress(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from indexer.__main__ import main

    url = f"sqlite:///{tmp_path}/demo.db"
    assert main(["demo", "--db", url, "--out", str(tmp_path / "d"), "--limit", "80", "--epochs", "2"]) == 0
    out, err = capsys.readouterr()
    for name in ("gated", "cross_attention", "learned_early"):
        assert f"trained {name} on" in out
        assert f"train {name}: 100%" in err, "a tqdm bar per trained strategy"


def hit(item_id: int, rank: int, score: float) -> Hit:
    return Hit(rank, item_id, f"item-{item_id}", score, {"text": score}, {}, {})


def test_grid_colours_shared_items_alike_and_marks_moves() -> None:
    from ui.compare_view import grid_html, item_colours

    results = {
        "late": SearchResult("late", [hit(1, 1, 0.9), hit(2, 2, 0.8), hit(3, 3, 0.7)], 0.001),
        "gated": SearchResult("gated", [hit(2, 1, 0.9), hit(4, 2, 0.8), hit(1, 3, 0.7)], 0.001),
    }
    colours = item_colours(results)
    assert set(colours) == {1, 2} and colours[1] != colours[2], "only items both found get a colour, each its own"
    page = grid_html(results, compare_results(results, 3), 3)
    assert page.count("<tr") == 4, "a header and one row per rank"
    assert page.count(f"border-left:6px solid {colours[2]}") == 2
    assert page.count(f"border-left:6px solid {colours[1]}") == 2
    rows = page.split("<tr")[1:]
    assert "item-2</b> <span" in rows[1] and "▲1</span>" in rows[1], "item 2 rose from rank 2 to rank 1"
    assert ">new</span>" in rows[2] and "▼2</span>" in rows[3]


@pytest.mark.parametrize("weighting", ["adaptive", "fixed"])
def test_late_explanation_adds_up_to_the_score(engine: SearchEngine, weighting: str, query: QueryInput) -> None:
    """At the defaults (z-score, adaptive weights) and with fixed weights: the explanation's per-channel
    values add up to each hit's score, and they are its weight times its normalised value."""
    encoded = engine.encode_query(query)
    strategy = engine.strategy("late", weighting=weighting)
    scored = strategy.search(engine.space, encoded, 10)
    explained = strategy.explain(engine.space, encoded, np.array([s.item_id for s in scored]))
    # the synthetic media's stand-in for the recording is a tone: no one speaks in it, and adaptive screens it
    heard = ["text→text"] if encoded.empty else ["audio→audio", "text→text"]  # screened at fixed weights too
    assert [u.split(" [")[0] for u in explained["units"]] == heard
    np.testing.assert_allclose(explained["fused"].sum(axis=1), [s.score for s in scored], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(explained["fused"], explained["normalised"] * explained["weight"], rtol=1e-5, atol=1e-6)
    if weighting == "fixed":
        assert explained["weight"].tolist() == [1.0] * len(heard)
    elif len(heard) > 1:  # one unit left: its weight is 1, with nothing to weigh it against
        assert not np.allclose(explained["weight"], 1.0), "adaptive weights differ from 1 for this query"
    assert (explained["rank"] >= 0).all() and 1 in explained["rank"], "the best of a channel is ranked 1"


def test_gates_and_attention_are_what_the_model_weighs(engine: SearchEngine, query: QueryInput) -> None:
    import torch

    encoded = engine.encode_query(query)
    gated = engine.strategy("gated")
    ids = np.array([s.item_id for s in gated.search(engine.space, encoded, 10)])
    explained = gated.explain(engine.space, encoded, ids)
    ckpt = gated.checkpoint
    blocks, mask = engine.space.item_blocks(ckpt.fields, ckpt.dims, ids)
    with torch.no_grad():
        expected = ckpt.module.gates([torch.from_numpy(b) for b in ckpt.prepare(blocks, mask)], torch.from_numpy(mask))
    np.testing.assert_allclose(explained["item_gates"], expected.numpy(), atol=1e-5)
    assert (explained["item_gates"][~mask] == 0).all() and explained["query_gates"][0] == 0, "no image: no gate"

    attention = engine.strategy("cross_attention")
    ids = np.array([s.item_id for s in attention.search(engine.space, encoded, 10)])
    explained = attention.explain(engine.space, encoded, ids)
    maps, present = explained["item_attention"], explained["item_mask"]
    assert maps.shape == (10, 3, 3)
    np.testing.assert_allclose(maps.sum(axis=2), 1.0, atol=1e-5)
    assert np.allclose(maps[~present[:, None, :].repeat(3, axis=1)], 0.0, atol=1e-6), "absent tokens get none"


@pytest.fixture
def app(trained_demo: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("RETRIEVAL_DB", trained_demo["url"])
    monkeypatch.setenv("RETRIEVAL_QUERIES", trained_demo["queries"])
    return AppTest.from_file(APP, default_timeout=240).run()


def chart_titles(app: AppTest) -> list[str]:
    """The titles of the page's vega-lite charts, in page order (a layered chart's from its first layer)."""
    import json

    def text(title: str | dict) -> str:  # a title given as lines (a narrow column) reads as one string
        lines = title.get("text", "") if isinstance(title, dict) else title
        return " ".join(lines) if isinstance(lines, list) else lines

    specs = [json.loads(chart.proto.spec) for chart in app.get("vega_lite_chart")]
    return [text(spec.get("title") or spec["layer"][0].get("title")) for spec in specs]


def test_search_opens_on_late_and_the_best_learned_in_the_grid(app: AppTest) -> None:
    assert app.sidebar.multiselect(key="methods").value == ["late", "gated"]
    app.sidebar.multiselect(key="methods").set_value(["late", "gated", "cross_attention"])
    app.text_input(key="query_text").set_value("the digit seven").run()
    assert not app.exception, [e.value for e in app.exception]
    grid = next(h.value for h in app.html if "cmp-grid" in h.value)
    assert grid.count("<tr") == 11 and all(f"<th>{m}</th>" in grid for m in ("late", "gated", "cross_attention"))
    assert not [b for b in app.button if b.label == "Search with this item"], "the grid replaces the cards"
    explain = app.segmented_control(key="explain_method")
    assert explain.options == ["late", "gated", "cross_attention"], "each method can be explained"
    expected = {
        "late": [
            "What each query modality adds to the score",
            "Rank in each channel (#), and what it adds to the score",
        ],
        "gated": ["What each query modality adds to the score", "Gate of each modality"],
        # the item's map; the query ("the digit seven") has one modality, so a sentence stands for its map
        "cross_attention": ["What each query modality adds to the score", "attention between its modalities"],
    }
    for method, titles in expected.items():
        app.segmented_control(key="explain_method").set_value(method).run()
        shown = chart_titles(app)
        assert shown[0] == "Rank of each item under each method", "the bump chart comes first"
        assert len(shown) == 1 + len(titles) and all(t in s for t, s in zip(titles, shown[1:])), (method, shown)
    captions = " ".join(c.value for c in app.caption)  # escaped for Markdown: `md`
    assert "The query has one modality" in captions and "so there is no map to draw" in captions
    app.toggle(key="compact_view").set_value(False).run()
    assert len([b for b in app.button if b.label == "Search with this item"]) == 30


@pytest.mark.slow
def test_strategies_page_measures_every_method(app: AppTest) -> None:
    app.sidebar.radio(key="page").set_value("Strategies").run()
    app.button(key="run_report").click().run()
    assert not app.exception, [e.value for e in app.exception]
    table = app.dataframe[0].value.set_index("method")
    assert list(table.index) == ["early", "late", "hybrid", "gated", "cross_attention", "learned_early"]
    assert (table["p50 ms"] > 0).all() and (table["index MB"] > 0).all()
    assert table["nDCG@10"].between(0, 1).all() and table.loc["gated", "training s"] > 0
    assert table.loc["late", "adding a modality"].startswith("no re-indexing")
    assert len(app.get("vega_lite_chart")) == 3


@pytest.mark.slow
def test_report_cli_writes_table_and_charts(
    trained_demo: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from retrieval.__main__ import main

    argv = ["report", "--db", trained_demo["url"], "--queries", trained_demo["queries"], "--label-field", "digit"]
    assert main([*argv, "--strategy", "late", "--strategy", "gated", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["method"]: r for r in report["rows"]}
    lines = Path(trained_demo["queries"]).read_text().splitlines()
    assert list(rows) == ["late", "gated"] and report["queries"]["all"] == len(lines)
    assert set(rows["gated"]["quality"]) == {"all", *[k for k in report["queries"] if k != "all"]}
    assert rows["late"]["train_seconds"] is None and rows["gated"]["train_seconds"] > 0
    assert rows["gated"]["one_missing_ndcg"] is not None and rows["late"]["index_bytes"] > 0
    assert (tmp_path / "strategies.md").read_text().startswith("| method |")
    assert (tmp_path / "strategies-quality.html").is_file()


def test_an_items_own_query_finds_it_first(engine: SearchEngine) -> None:
    """The report's queries without labels: items searched with their own media ("search with this item")."""
    from retrieval.report import sample_queries

    queries = sample_queries(engine, n=6, seed=1)
    assert len(queries) == 6 and all(q.exclude == q.qid for q in queries)
    id_of = {key: item_id for item_id, key in engine.catalogue.item_keys().items()}
    items = engine.catalogue.items(id_of[q.qid] for q in queries)
    for q in queries:
        readable = {a.modality for a in items[id_of[q.qid]].assets if a.status == "ok"}
        assert {m for m in ("image", "audio", "text") if getattr(q.query, m)} == readable
        hits = engine.search(image=q.query.image, audio=q.query.audio, text=q.query.text, strategy="late", k=1).hits
        if readable == {"text"}:  # a demo text is a template many items share: any of them answers it exactly
            assert hits[0].text == q.query.text
        else:
            assert hits[0].key == q.qid


def test_each_learned_method_says_which_model_and_encoders_answer(app: AppTest, engine: SearchEngine) -> None:
    """Issue 37, item 1 (its smallest part): next to each learned method, the checkpoint that answers (its
    name, when it was trained, on how many items, its loss) as the collection recorded it, and the profile's
    encoders; a method that learns nothing gets no such line."""
    import re

    app.sidebar.multiselect(key="methods").set_value(["late", "gated", "cross_attention"])
    app.text_input(key="query_text").set_value("the digit seven").run()
    assert not app.exception, [e.value for e in app.exception]
    captions = [re.sub(r"\\(.)", r"\1", c.value) for c in app.caption]
    for name in ("gated", "cross_attention"):
        file = engine.models.latest(name)
        assert file is not None
        info = engine.models.info(file)
        assert info is not None and 0 < info.items <= 240 and info.final_loss is not None
        said = (
            f"**{name}** answers with the model {Path(file).name}, trained {info.trained_at:%Y-%m-%d %H:%M} UTC "
            f"on {info.items} items (split=train), final loss {info.final_loss:.3f}, for the encoders "
            f"{', '.join(info.encoders)}"
        )
        assert said in captions, (said, captions)
    print("\n".join(c for c in captions if " answers with " in c or c.startswith("Encoders")))
    assert not any(c.startswith("**late** answers") for c in captions)
    profile = engine.profile
    assert any(c.startswith(f"Encoders: profile {profile.name} v{profile.version} (") for c in captions), captions
    for modality, encoders in profile.encoders.items():
        assert any(f"{modality}: {', '.join(encoders)}" in c for c in captions if c.startswith("Encoders"))


def test_a_saved_preset_keeps_its_settings_and_says_so(
    trained_demo: dict[str, str], tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 37, item 2: "Use my own weights" changes what the sidebar sets; a preset that left an input out
    still does, and its line says it keeps its own settings. The preset is one the Index page saved before
    0.19.0 for a trained early (`early` with a checkpoint): it searches as learned early."""
    import io

    from PIL import Image

    demo = copy_demo({**trained_demo, "root": str(Path(trained_demo["digits"]).parent)}, tmp_path_factory)
    engine = SearchEngine.open(demo["url"])
    engine.save_preset(Method("trained_early", "early", {"checkpoint": engine.models.latest("learned_early")}))
    monkeypatch.setenv("RETRIEVAL_DB", demo["url"])
    monkeypatch.setenv("RETRIEVAL_QUERIES", demo["queries"])
    app = AppTest.from_file(APP, default_timeout=240).run()
    blank = io.BytesIO()
    Image.new("L", (28, 28), 255).save(blank, format="PNG")
    app.sidebar.multiselect(key="methods").set_value(["late", "preset:trained_early"])
    app.file_uploader(key="query_image").set_value(("blank.png", blank.getvalue(), "image/png"))
    app.text_input(key="query_text").set_value("the digit seven").run()
    assert not app.exception, [e.value for e in app.exception]

    def lines() -> list[str]:
        return [m.value for m in app.markdown if " was left out" in m.value]

    assert [line.split("**")[1] for line in lines()] == ["late", "trained\\_early"], lines()
    app.button(key="own_weights").click().run()
    assert [line.split("**")[1] for line in lines()] == ["trained\\_early"]
    assert lines()[0].endswith("(a saved preset: it keeps its own settings)")
    assert any("Your own weights are in use" in c.value for c in app.caption)
