"""Gated fusion: learned sigmoid gates, computed from all present inputs and a presence mask, weigh each
modality's projected vector; the gated sum is the item's one vector in one index. A noisy modality
learns a low gate."""

from __future__ import annotations

from retrieval.fusion.learned import LearnedFusion


class GatedFusion(LearnedFusion):
    name = "gated"
    module_kind = "gated"
