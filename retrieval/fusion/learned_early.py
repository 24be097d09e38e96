"""Learned early fusion: every present field's vector concatenated and mapped by a trained linear or MLP
projection into one space, a learned "missing" vector standing in for an absent field; one index of the
projected items. Identity early fusion (no training) is `early`."""

from __future__ import annotations

from retrieval.fusion.learned import LearnedFusion


class LearnedEarlyFusion(LearnedFusion):
    name = "learned_early"
    module_kind = "early"
