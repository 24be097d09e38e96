"""What each query input counted for in one search, against the weight its owner set.

Adaptive weighting and screening (adaptive.py) change a person's weights per query: a recording whose best
matches are a mix may count ×0.03 while its slider reads 1.00, and a flat input is left out altogether.
Every strategy says what it did through `FusionStrategy.weighing`, so a front end can say it beside the query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from retrieval.fusion.adaptive import Judgement, mean_judgement
from retrieval.media import MODALITIES
from retrieval.space import EncodedQuery

CHANGED = 0.1  # a weight more than 10% off the one set counts as changed: smaller shifts reorder little


@dataclass
class InputWeight:
    """One query input (modality): the weight set, the weight it counted with (0 when screened out), and the
    predictors behind an adaptive weight (None where the strategy does not weigh adaptively)."""

    modality: str
    chosen: float
    used: float
    screened: bool = False
    judgement: Judgement | None = None
    empty: bool = False  # screened because its encoder found nothing in it (a recording without a voice)

    @property
    def changed(self) -> bool:
        return self.screened or abs(self.used - self.chosen) > CHANGED * max(self.chosen, 1e-9)


@dataclass
class Weighing:
    """`adaptive`: the strategy weighed each input per query; `set`: as set (inputs may still be screened)."""

    how: Literal["set", "adaptive"]
    inputs: list[InputWeight] = field(default_factory=list)

    def changed(self) -> list[InputWeight]:
        return [i for i in self.inputs if i.changed]


def flat_out(query: EncodedQuery, kept: EncodedQuery) -> set[str]:
    """The query modalities screening left out (`kept` is the screened query)."""
    return {m for m, _ in query.vectors} - {m for m, _ in kept.vectors}


def as_set(query: EncodedQuery, screened_out: set[str] | None = None) -> Weighing:
    """Every input as its owner set it, but those screened out."""
    screened_out = screened_out or set()
    asked = {m for m, _ in query.vectors}
    modalities = [m for m in MODALITIES if m in asked] + sorted(asked - set(MODALITIES))  # as the query shows them
    empty = {m for m, _ in query.empty}
    return Weighing(
        "set",
        [
            InputWeight(
                m,
                query.weight(m),
                0.0 if m in screened_out else query.weight(m),
                m in screened_out,
                empty=m in screened_out and m in empty,
            )
            for m in modalities
        ],
    )


def by_vector(
    query: EncodedQuery, factors: dict[tuple[str, str], tuple[float, Judgement]], screened_out: set[str]
) -> Weighing:
    """From one factor per query vector (`channel_judgements`): each modality's weight times the mean factor of
    its vectors (1 for a vector not judged), with the mean of their predictors."""
    weighing = as_set(query, screened_out)
    weighing.how = "adaptive"
    for one in weighing.inputs:
        judged = [factors[k] for k in query.vectors if k[0] == one.modality and k in factors]
        if one.screened or not judged:
            continue
        unjudged = sum(1 for k in query.vectors if k[0] == one.modality and k not in factors)
        one.used = one.chosen * float(np.mean([w for w, _ in judged] + [1.0] * unjudged))
        one.judgement = mean_judgement([j for _, j in judged])
    return weighing
