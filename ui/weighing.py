"""Beside the query: what each input counted for in each method, when adaptive weighting or screening changed
the weight its owner set, and why; one click to use the weights as set.

Before, only a 10-px axis label of the "why" chart said that late had counted a recording ×0.03 while its
slider read 1.00 (issue 37). The numbers come from each strategy's own `weighing` (retrieval/fusion/weighing.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import streamlit as st

from retrieval.errors import USER_ERRORS
from retrieval.fusion import list_strategies
from retrieval.fusion.adaptive import (
    AGREEMENT_POWER,
    CLARITY_POWER,
    COHERENCE_POWER,
    SPREAD_POWER,
    Judgement,
    mean_judgement,
)
from retrieval.fusion.weighing import InputWeight, Weighing
from retrieval.results import Method, QueryInput, SearchResult
from ui.layout import line_and_button
from ui.plain import md
from ui.results_cache import cached_weighing

NAMES = {"text": "text", "image": "image", "audio": "audio clip"}
NAMES_PLAIN = {"text": "texts", "image": "images", "audio": "recordings"}  # a modality of the collection


def name(modality: str, example: bool) -> str:
    """'your image', or 'the item's image' in a query by example."""
    return f"{'the item’s' if example else 'your'} {NAMES.get(modality, modality)}"


def _joined(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def why(one: InputWeight, others: list[InputWeight], example: bool) -> str:
    """Why an input counted less than set: screened out, or the predictor that pulled its adaptive weight
    furthest below the other inputs' (each predictor's log-ratio times its power in the weight's formula)."""
    if one.empty:
        return "left out: no one speaks in it, and the collection's audio encoder reads speech"
    if one.screened:
        return (
            "left out: it scores every item of the collection about alike, as a noise clip, a quiet room or a "
            "blank image does"
        )
    peers = [o for o in others if o.judgement is not None and not o.screened]
    # a shift within `CHANGED` of the weight set is too small to pin on a predictor (walkthrough 4: ×0.99 was
    # "explained" by a coherence of 0.37 against 0.38)
    if one.judgement is None or one.used >= one.chosen or not one.changed or not peers:
        return ""
    mine = one.judgement
    ref = mean_judgement([o.judgement for o in peers if o.judgement is not None])
    terms = {
        predictor: power * math.log(max(getattr(mine, predictor), 1e-6) / max(getattr(ref, predictor), 1e-6))
        for predictor, power in POWERS.items()
    }
    worst = min(terms, key=lambda k: terms[k])
    if terms[worst] >= 0:
        return ""
    # agreement is a property of the collection's modalities, not of the inputs given
    names = [
        NAMES_PLAIN.get(o.modality, o.modality) if worst == "agreement" else name(o.modality, example) for o in peers
    ]
    against = ("on average for " if len(peers) > 1 else "for ") + _joined(names)
    return _reason(worst, mine, ref, against)


POWERS = {
    "spread": SPREAD_POWER,
    "clarity": CLARITY_POWER,
    "coherence": COHERENCE_POWER,
    "agreement": AGREEMENT_POWER,
}

# Said once under the lines that give a coherence or an agreement: the word alone explained nothing
# (walkthrough #16)
COHERENCE_MEANS = (
    "Coherence: how alike an input's best matches are in the modalities it did not search, from 0 (no more "
    "alike than any two items) to 1 (as alike as an item's nearest neighbours there); the best matches of a "
    "clear input share a subject, so their other media agree, while an unclear input's are a mix. Each method "
    "judges the best matches it found itself, so the numbers differ from method to method."
)
AGREEMENT_MEANS = (
    "Agreement: a property of the collection, not of your input: how alike items that are nearest neighbours "
    "in one modality are in the others, from 0 to 1. Where items close by text differ in their images and "
    "recordings, a match by text counts for a little less, in every query; the other factors still decide "
    "most of a weight."
)
# Said once under a line where an input counted more than set: the rise is the others' loss, not a judgement
RAISED = "adaptive weighting shares a fixed total out among the inputs' channels: what one input loses, the others gain"


def _reason(predictor: str, mine: Judgement, ref: Judgement, against: str) -> str:
    if predictor == "spread":
        return (
            f"its scores vary less across the collection ({mine.spread:.2f} of a typical query's spread, against "
            f"{ref.spread:.2f} {against})"
        )
    if predictor == "clarity":
        return (
            f"its best matches stand out less from the rest of the collection ({mine.clarity:.1f} standard "
            f"deviations above the average item, against {ref.clarity:.1f} {against})"
        )
    if predictor == "agreement":
        return (
            f"in this collection, items alike in this modality are less alike in their other media (agreement "
            f"{mine.agreement:.2f}, against {ref.agreement:.2f} {against})"
        )
    return (
        f"the items it matches best are a mix: in their other modalities they are less alike (coherence "
        f"{mine.coherence:.2f}, against {ref.coherence:.2f} {against})"
    )


def sentence(label: str, weighing: Weighing, example: bool) -> str | None:
    """One markdown line for a method that counted an input otherwise than set; None when it did not."""
    if not weighing.changed():
        return None
    if weighing.how == "set":
        dropped = [f"{name(o.modality, example)} was {why(o, [], example)}" for o in weighing.inputs if o.screened]
        return f"**{md(label)}** used your weights, but " + "; ".join(dropped) + "."
    parts = []
    for one in weighing.inputs:
        others = [o for o in weighing.inputs if o is not one]
        reason = why(one, others, example)
        if one.screened:
            parts.append(f"{name(one.modality, example)} was {reason}")
            continue
        counted = f"{name(one.modality, example)} counted ×{one.used:.2f} (set {one.chosen:.2f})"
        parts.append(counted + (f": {reason}" if reason else ""))
    line = f"**{md(label)}** weighed each input for this query: " + "; ".join(parts)
    if any(o.changed and o.used > o.chosen for o in weighing.inputs if not o.screened):
        line += f" ({RAISED})"
    return line + "."


def own_weights() -> None:
    """on_click: every input counts as set (fixed weighting) and none is left out."""
    st.session_state["weighting"] = "fixed"
    st.session_state["screen_inputs"] = False


def methods_weigh() -> None:
    st.session_state["weighting"] = "adaptive"
    st.session_state["screen_inputs"] = True


def render(engine: Any, collection: str, query: QueryInput, methods: list[Method], k: int, example: bool) -> None:
    """Each method's line (in the query's box), then the button; or, with one's own weights in use, a way back.
    A saved preset keeps its own settings, which the button does not change: its line says so."""
    if len(query.present()) < 2:  # one input: its weight orders nothing, and nothing is screened
        return
    lines, sidebar_changed = [], False
    for method in methods:
        try:
            weighing = cached_weighing(engine, collection, query, method, k)
        except USER_ERRORS:  # the method cannot search (untrained): its column says why
            continue
        line = sentence(method.label, weighing, example)
        if line is None:
            continue
        if follows_sidebar(method):
            sidebar_changed = True
        else:
            line += " (a saved preset: it keeps its own settings)"
        lines.append(line)
    for line in lines:
        st.markdown(line)
    if any("(coherence " in line for line in lines):
        st.caption(COHERENCE_MEANS)
    if any("(agreement " in line for line in lines):
        st.caption(AGREEMENT_MEANS)
    if sidebar_changed:
        st.button(
            "Use my own weights",
            key="own_weights",
            on_click=own_weights,
            help="Fixed channel weights and no input left out: each input counts as its slider says, for every "
            "method the sidebar sets (not saved presets).",
        )
    elif st.session_state.get("weighting") == "fixed" and not st.session_state.get("screen_inputs", True):
        left = right = line_and_button()
        left.caption("Your own weights are in use: fixed channel weights, and no input is left out.")
        right.button("Let the methods weigh inputs", key="methods_weigh", on_click=methods_weigh)


def follows_sidebar(method: Method) -> bool:
    """Whether the sidebar's weighting settings make this method (a strategy chosen by name, not a preset)."""
    return method.label == method.strategy and method.label in list_strategies()


def example_not_first(method: Method, result: SearchResult, item_id: int, present: Sequence[str]) -> str | None:
    """One sentence for a query by example whose item is not first because a weight of 0 left one of its inputs
    out of the query (walkthrough #3: the page did not say why); None otherwise."""
    zero = [m for m in present if method.weights.get(m, 1.0) == 0]
    rank = next((h.rank for h in result.hits if h.item_id == item_id), None)
    if not zero or rank == 1:
        return None
    inputs = _joined([f"its {NAMES.get(m, m)}" for m in zero])
    weighted = f"{inputs} {'is' if len(zero) == 1 else 'are'} weighted 0"
    lacks = "has none of the item's inputs" if set(zero) == set(present) else "lacks one of the item's inputs"
    if not result.hits:
        return f"**{md(method.label)}** finds nothing: {weighted}, so the query {lacks}."
    if rank is None:
        where = f"does not show the item in its top {len(result.hits)}"
    else:
        where = f"shows the item at rank {rank}, not first"
    return f"**{md(method.label)}** {where}: {weighted}, so the query {lacks}."


def examples_not_first(
    methods: list[Method], results: dict[str, SearchResult], item_id: int, present: Sequence[str]
) -> None:
    """`example_not_first`'s sentence for each method it concerns."""
    for method in methods:
        result = results.get(method.label)
        line = None if result is None else example_not_first(method, result, item_id, present)
        if line is not None:
            st.markdown(line)
