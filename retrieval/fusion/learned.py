"""What every learned strategy shares: a checkpoint, fused item vectors in one index, fused queries.

Query weights: with equal weights the query's present modalities are fused together, as in training;
with unequal weights each modality is fused alone and the fused vectors are averaged by weight (Σ w·v / n, so
the score keeps a cosine's scale; summed, it grew with the number of inputs). Negative terms are fused the
same way and subtracted. Contributions are occlusion estimates: how much the score
drops when one query modality is left out, scaled to add up to the score.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from retrieval.errors import InvalidInputError
from retrieval.fusion.adaptive import screened
from retrieval.fusion.base import FusionStrategy, Scored, one_thread
from retrieval.fusion.concat import concat_query
from retrieval.fusion.late import LateFusion
from retrieval.fusion.scoring import rank_order, tie_window
from retrieval.fusion.weighing import Weighing, as_set, flat_out
from retrieval.space import EncodedQuery, VectorSpace
from storage import VectorStore, VectorTable
from storage.paging import ROWS_AT_A_TIME

if TYPE_CHECKING:  # the checkpoint brings torch: loaded with the first learned search, not with the package
    from retrieval.fusion.checkpoint import FusionCheckpoint


@dataclass
class LearnedParams:
    checkpoint: str | None = None
    mode: Literal["index", "rerank"] = "index"
    candidates: int = 100
    # Adds blend × the identity early-fusion score (Σ share × weight × cosine) to the learned one, in the same
    # index: the learned space generalises across modalities, the raw spaces keep within-modality detail. Off by
    # evidence (docs/benchmarks/notes/fusion_blend.json, unseen speakers, tuning rotation, 3 seeds): blend 0 / 0.1 /
    # 0.3 / 1 lifts audio alone (gated 0.47 / 0.51 / 0.53 / 0.51) but sinks fused kinds below their best single
    # modality (gated worst -0.025 / -0.029 / -0.036 / -0.099; early -0.041 / -0.049 / -0.057 / -0.069).
    blend: float = 0.0
    # leave out query inputs that score the collection about alike (noise clip, blank image; adaptive.py):
    # unscreened, a white-noise clip beside an image cost gated 0.15 and early 0.30 P@10 on unseen speakers
    screen: bool = True


class LearnedFusion(FusionStrategy):
    fuses_at = "index"
    learns = True
    missing = "absent fields are masked out; the model was trained with modalities dropped at random"
    Params = LearnedParams

    def __init__(self, **params) -> None:  # noqa: ANN003
        super().__init__(**params)
        self._checkpoint: FusionCheckpoint | None = None
        # fused item vectors per space (weakly held: an id() could be reused by a later space)
        self._fused: weakref.WeakKeyDictionary[VectorSpace, VectorTable] = weakref.WeakKeyDictionary()

    @property
    def checkpoint(self) -> FusionCheckpoint:
        if self._checkpoint is None:
            if not self.params.checkpoint:
                raise InvalidInputError(
                    f"{self.name} fusion learns: train it first "
                    f"(python -m retrieval train --strategy {self.name} ...) or pass checkpoint=FILE"
                )
            from retrieval.fusion.checkpoint import FusionCheckpoint

            checkpoint = FusionCheckpoint.load(self.params.checkpoint)
            if checkpoint.module.kind != self.module_kind:
                raise InvalidInputError(
                    f"{self.params.checkpoint} holds a {checkpoint.module.kind} model, not {self.name}"
                )
            self._checkpoint = checkpoint
        return self._checkpoint

    def _checked(self, space: VectorSpace) -> FusionCheckpoint:
        ckpt = self.checkpoint
        ckpt.check(space.fields, {k: t.dim for k, t in space.tables.items()})
        return ckpt

    def item_vectors(self, space: VectorSpace, ids: np.ndarray) -> np.ndarray:
        """Fused vectors of `ids`, looked up in the space's stored table of fused vectors."""
        return self.fused_table(space).lookup(ids)[0]

    def fused_table(self, space: VectorSpace) -> VectorTable:
        """Every item's fused vector, computed once per checkpoint and generation and stored as a table."""
        table = self._fused.get(space)
        if table is None:
            ckpt = self._checked(space)
            width = ckpt.module.out_dim + (sum(ckpt.dims) if self.params.blend > 0 else 0)
            table = space.derived_table(self._key(space), width, lambda ids: self._compute(space, ids))
            self._fused[space] = table
        return table

    def _key(self, space: VectorSpace) -> str:
        return f"{self.name}-{self._checked(space).digest}" + (
            f"-blend{self.params.blend:g}" if self.params.blend > 0 else ""
        )

    def _compute(self, space: VectorSpace, ids: np.ndarray, chunk: int = ROWS_AT_A_TIME) -> np.ndarray:
        """Fused vectors of `ids`, a chunk of items at a time: every field's float32 blocks for 1M items
        at once (and their centred copies) held 12 GB and ran out of memory; a chunk holds ~0.8 GB."""
        ckpt = self._checked(space)
        width = ckpt.module.out_dim + (sum(ckpt.dims) if self.params.blend > 0 else 0)
        out = np.empty((len(ids), width), np.float32)
        for start in range(0, len(ids), chunk):
            blocks, mask = space.item_blocks(ckpt.fields, ckpt.dims, ids[start : start + chunk])
            fused = ckpt.fuse(blocks, mask)
            if self.params.blend > 0:
                fused = np.concatenate([fused, np.sqrt(self.params.blend) * np.concatenate(blocks, axis=1)], axis=1)
            out[start : start + len(fused)] = fused
        return out

    def fused_index(self, space: VectorSpace) -> VectorStore:
        """The index of every item's fused vector (`fused_table`), built or opened on first use."""
        ckpt = self._checked(space)
        key = ckpt.digest + (f"-blend{self.params.blend:g}" if self.params.blend > 0 else "")

        def build() -> tuple[np.ndarray, np.ndarray]:
            table = self.fused_table(space)
            return table.ids, table.vectors

        return space.index(self.name, key, [f.encoder for f in ckpt.fields], build)

    def prepare(self, space: VectorSpace) -> None:
        if space.tables and self.params.checkpoint:
            self.fused_index(space)

    def fused_query(self, query: EncodedQuery, modalities: set[str] | None = None) -> np.ndarray:
        present = {m for m, _ in query.vectors}
        return self.fused_queries(query, [present & (modalities or present)])[0]

    def fused_queries(self, query: EncodedQuery, variants: list[set[str]]) -> list[np.ndarray]:
        """The fused query for each subset of its modalities, from one batched forward pass.

        Searching needs the whole query and, for the contributions, each leave-one-out variant. They
        share the query's vectors and differ only in the mask, so the numpy forward pass takes one row of
        blocks under several masks: each field is projected once, not once per variant.
        """
        weights = {m: query.weight(m) for m in query.modalities}
        # a modality weighted 0 is left out, not fused alone at weight 0: otherwise one 0 made the weights
        # unequal and every other input was fused alone too, so an item searched with itself fell from rank 1
        # to a median of 3-19 (cross-attention, 40 demo items; walkthrough #3)
        variants = [{m for m in v if weights.get(m, 1.0) != 0} or set(v) for v in variants]
        weights = {m: w for m, w in weights.items() if w != 0} or weights
        equal = len(set(weights.values())) <= 1
        # equal weights: each subset fused together, as in training; else each modality alone, mixed by weight
        subsets = (
            list(dict.fromkeys(frozenset(v) for v in variants))
            if equal
            else [frozenset({m}) for m in sorted({m for v in variants for m in v})]
        )
        row = dict(zip(subsets, self._fuse_subsets(query.vectors, subsets)))
        negatives = [frozenset({m}) for m in sorted({m for m, _ in query.negatives})]
        out_dim = self.checkpoint.module.out_dim
        negative = (
            query.negative_weight * self._fuse_subsets(query.negatives, negatives).sum(axis=0)
            if negatives
            else np.zeros(out_dim, np.float32)
        )
        out = []
        # unequal weights mix each input's own fused vector by weight over the whole query's inputs, so a
        # variant that leaves one out is the mix without that input's term (not the others scaled up)
        inputs = max(len(set().union(*variants)), 1) if variants else 1
        for subset in variants:
            if equal:
                vector = row[frozenset(subset)] * (next(iter(weights.values()), 1.0) or 0.0)
            else:
                mixed = sum((weights[m] * row[frozenset({m})] for m in subset), np.zeros(out_dim, np.float32))
                vector = mixed / inputs
            vector = vector - negative
            if self.params.blend > 0:
                ckpt = self.checkpoint
                sub = EncodedQuery(
                    {k: v for k, v in query.vectors.items() if k[0] in subset},
                    query.weights,
                    query.negatives,
                    query.negative_weight,
                )
                vector = np.concatenate(
                    [vector, np.sqrt(self.params.blend) * concat_query(ckpt.fields, ckpt.dims, sub)]
                )
            out.append(vector.astype(np.float32))
        return out

    def _fuse_subsets(self, vectors: dict[tuple[str, str], np.ndarray], subsets: list[frozenset[str]]) -> np.ndarray:
        """One fused row per subset of the query modalities in `vectors` (zeros where a subset reaches no field)."""
        ckpt = self.checkpoint
        blocks, has = VectorSpace.query_blocks(ckpt.fields, vectors, ckpt.dims)
        masks = np.array(
            [[bool(h) and f.modality in subset for f, h in zip(ckpt.fields, has[0])] for subset in subsets], bool
        ).reshape(-1, len(ckpt.fields))
        fused = ckpt.fuse_query(blocks, masks)
        fused[~masks.any(axis=1)] = 0.0
        return fused

    def explain(self, space: VectorSpace, query: EncodedQuery, ids: np.ndarray) -> dict[str, Any]:
        """The module's own weighing, per field: gates (gated) or attention maps (cross-attention), of the
        query and of each item (`item_gates`: items x fields; `item_attention`: items x fields x fields)."""
        from retrieval.fusion.checkpoint import one_blas_thread

        ckpt = self._checked(space)
        blocks, mask = space.item_blocks(ckpt.fields, ckpt.dims, ids)
        query_blocks, query_mask = VectorSpace.query_blocks(ckpt.fields, query.vectors, ckpt.dims)
        items, asked = ckpt.prepare(blocks, mask), ckpt.prepare(query_blocks, query_mask)
        out: dict[str, Any] = {"fields": [f.key for f in ckpt.fields], "item_mask": mask, "query_mask": query_mask[0]}
        for name in ("gates", "attention"):
            weigh = getattr(ckpt.module, f"{name}_numpy", None)
            if weigh is not None:
                with one_blas_thread():
                    out[f"item_{name}"], out[f"query_{name}"] = weigh(items, mask), weigh(asked, query_mask)[0]
        return out

    def weighing(self, space: VectorSpace, query: EncodedQuery, k: int) -> Weighing:
        """Inputs as set (unequal weights mix each input's fused vector by weight), but those screened out."""
        kept = screened(space, query) if self.params.screen else query
        return as_set(query, flat_out(query, kept))

    def search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        with one_thread():  # screening, the forward pass and the contributions set the thread counts once
            return self._search(space, query, k)

    def _search(self, space: VectorSpace, query: EncodedQuery, k: int) -> list[Scored]:
        if self.params.screen:
            query = screened(space, query)
        present = sorted({m for m, _ in query.vectors})
        variants = [set(present)] + ([set(present) - {m} for m in present] if len(present) > 1 else [])
        vector, *without = self.fused_queries(query, variants)
        if not np.any(vector):
            return []
        if self.params.mode == "rerank":
            ids = LateFusion(candidates=self.params.candidates).candidates(space, query, k)
            scores = self.fused_table(space).similarities(ids, vector)[0]
        else:
            index = self.fused_index(space)
            wanted = max(index.shortlist(k), tie_window(k))
            found_scores, found = index.search(vector, wanted)
            keep = found[0] >= 0
            ids, scores = found[0][keep], found_scores[0][keep]
            if not index.exact_scores:  # compressed codes find candidates; the stored table scores them
                scores = self.fused_table(space).similarities(ids, vector)[0]  # one library (storage/vectors.py)
        order = rank_order(scores, ids, k)
        ids, scores = ids[order], scores[order]
        parts = self._occlusion(space, present, without, ids, scores)
        return [
            Scored(int(i), float(s), {m: float(p[n]) for m, p in parts.items()})
            for n, (i, s) in enumerate(zip(ids, scores))
        ]

    def _occlusion(
        self, space: VectorSpace, present: list[str], without: list[np.ndarray], ids: np.ndarray, scores: np.ndarray
    ) -> dict[str, np.ndarray]:
        """How much each item's score drops when one query modality is left out, plus an equal part of what
        the drops leave unexplained (the inputs' interaction), so the parts add up to the score. Scaling the
        drops to the score instead divided by their sum, which drops of opposite signs bring near 0: shares
        of ±700,000 for a score of 0.8 (walkthrough 4). Where the fused query is a weighted mix (unequal
        weights) the drops are exact and nothing is left over."""
        if len(present) == 1 or not len(ids):
            return {m: scores.copy() for m in present}
        items = self.item_vectors(space, ids)
        drops = {m: scores - items @ w for m, w in zip(present, without)}
        rest = (scores - sum(drops.values())) / len(present)
        return {m: d + rest for m, d in drops.items()}
