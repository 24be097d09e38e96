"""Issue 37, the findings of the walkthrough after the second (its numbers), through AppTest where it suffices."""

from __future__ import annotations

import pytest
from conftest import mnist_image, recording
from streamlit.testing.v1 import AppTest
from test_app import assert_clean, rendered, upload
from test_app_truth import weighing_lines


def test_a_coherence_given_beside_the_query_is_explained_once(app: AppTest) -> None:
    """#16: "coherence 0.08, against 0.21" was shown with nothing saying what a coherence is."""
    upload(app, "query_image", mnist_image(3), "image/png")
    upload(app, "query_audio", recording(7), "audio/wav")
    app.text_input(key="query_text").set_value("the digit three").run()
    assert_clean(app)
    lines = weighing_lines(app)
    print("\n".join(lines.values()))
    assert any("(coherence " in line for line in lines.values()), "the example is one a coherence explains"
    said = [c.value for c in app.caption if c.value.startswith("Coherence: ")]
    assert len(said) == 1 and "modalities it did not search" in said[0], said


@pytest.mark.real_media  # a tie that runs past rank 10 on the real digits' texts
def test_a_tie_that_runs_past_the_last_rank_is_counted_whole(app: AppTest, demo: dict[str, str]) -> None:
    """#4: the tie note counted only the tied items shown ("2 items tied at 0.338 (ranks 9-10)") while a third
    item shared the score at rank 11. It now counts every item that shares it and says how many are shown."""
    from retrieval import SearchEngine
    from retrieval.fusion.scoring import tie_key
    from retrieval.results import Method, QueryInput

    engine = SearchEngine.open(demo["url"])
    engine.load_encoders()
    query, late = QueryInput(text="five"), [Method("late", "late", {})]
    shown = engine.search_many(query, late, 10)["late"].hits
    deep = engine.search_many(query, late, 200)["late"].hits
    last = next(tie_key(h.score) for h in deep if h.item_id == shown[-1].item_id)  # late's scores move with k
    tied = [h.rank for h in deep if tie_key(h.score) == last]
    assert len(tied) > 1 and min(tied) < 10 < max(tied), "the example is a tie across rank 10"
    app.session_state["compact_view"] = True  # the grid, whose caption says the ties
    app.text_input(key="query_text").set_value("five").run()
    assert_clean(app)
    notes = [rendered(c.value) for c in app.caption if rendered(c.value).startswith("**late**: ")]
    print(notes)
    said = f"{len(tied)} items tied at {shown[-1].score:.3f} (ranks {min(tied)}-{max(tied)}, {11 - min(tied)} of them"
    assert notes and said in notes[0], (said, notes)
