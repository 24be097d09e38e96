"""Cross-attention fusion: each present modality is a token; a small attention stack lets them attend to
each other and pools them into one vector, on the item and the query side alike. `mode="rerank"`
re-scores late fusion's candidates with the fused vectors instead of searching one index."""

from __future__ import annotations

from retrieval.fusion.learned import LearnedFusion


class CrossAttentionFusion(LearnedFusion):
    name = "cross_attention"
    module_kind = "cross_attention"
