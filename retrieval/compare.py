"""Compare one query's results across fusion methods: what overlaps, what moved, in numbers and words.

Pairwise: overlap@k, Jaccard@k, rank-biased overlap (Webber et al. 2010, extrapolated, p=0.9) and
Kendall's tau-b over the union of the two lists (an item absent from a list ties at rank k+1).
Per item: its rank under each method and how it moved against the baseline (the first method).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from retrieval.results import Hit, SearchResult


@dataclass
class PairStats:
    a: str
    b: str
    overlap: float
    jaccard: float
    rbo: float
    kendall_tau: float


@dataclass
class ItemMovement:
    item_id: int
    key: str
    modalities: list[str]
    ranks: dict[str, int | None]
    change: dict[str, str]  # against the baseline: "up 3", "down 1", "same", "new", "dropped"


@dataclass
class Comparison:
    k: int
    baseline: str
    results: dict[str, SearchResult]
    pairs: list[PairStats]
    items: list[ItemMovement]
    summary: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "baseline": self.baseline,
            "methods": {
                name: {"seconds": r.seconds, "params": r.params, "hits": [h.to_dict() for h in r.hits]}
                for name, r in self.results.items()
            },
            "pairs": [vars(p) for p in self.pairs],
            "items": [vars(i) for i in self.items],
            "summary": self.summary,
        }


def rank_biased_overlap(a: list, b: list, p: float = 0.9) -> float:
    """Extrapolated RBO of two ranked lists of equal depth (1.0 for identical lists, 0.0 for disjoint)."""
    depth = min(len(a), len(b))
    if depth == 0:
        return 1.0 if len(a) == len(b) else 0.0
    seen_a: set = set()
    seen_b: set = set()
    overlap, total = 0, 0.0
    for d in range(1, depth + 1):
        x, y = a[d - 1], b[d - 1]
        if x == y:
            overlap += 1
        else:
            overlap += (x in seen_b) + (y in seen_a)
        seen_a.add(x)
        seen_b.add(y)
        total += (overlap / d) * p**d
    return float((overlap / depth) * p**depth + (1 - p) / p * total)


def kendall_tau_union(a: list, b: list) -> float:
    from scipy.stats import kendalltau  # scipy.stats costs ~1 s to import; only comparisons need it

    union = list(dict.fromkeys(a + b))
    if len(union) < 2:
        return 1.0
    rank_a = [a.index(x) + 1 if x in a else len(a) + 1 for x in union]
    rank_b = [b.index(x) + 1 if x in b else len(b) + 1 for x in union]
    tau = kendalltau(rank_a, rank_b).statistic
    return 0.0 if tau != tau else float(tau)  # NaN when one list is constant


def pair_stats(name_a: str, a: list, name_b: str, b: list, k: int) -> PairStats:
    a, b = a[:k], b[:k]
    common = len(set(a) & set(b))
    union = len(set(a) | set(b))
    return PairStats(
        name_a,
        name_b,
        common / k if k else 0.0,
        common / union if union else 1.0,
        rank_biased_overlap(a, b),
        kendall_tau_union(a, b),
    )


def movements(results: dict[str, SearchResult], baseline: str) -> list[ItemMovement]:
    ranks: dict[int, dict[str, int]] = {}
    hits: dict[int, Hit] = {}
    for name, result in results.items():
        for hit in result.hits:
            ranks.setdefault(hit.item_id, {})[name] = hit.rank
            hits.setdefault(hit.item_id, hit)
    out = []
    for item_id, by_method in ranks.items():
        base = by_method.get(baseline)
        change = {}
        for name in results:
            rank = by_method.get(name)
            if name == baseline:
                continue
            if base is None:
                change[name] = "new" if rank is not None else "absent"
            elif rank is None:
                change[name] = "dropped"
            else:
                change[name] = (
                    "same" if rank == base else (f"up {base - rank}" if rank < base else f"down {rank - base}")
                )
        hit = hits[item_id]
        out.append(ItemMovement(item_id, hit.key, sorted(hit.assets), {n: by_method.get(n) for n in results}, change))
    return sorted(out, key=lambda m: min(r for r in m.ranks.values() if r is not None))


def _modality_phrase(items: list[ItemMovement]) -> str:
    single = [i.modalities[0] for i in items if len(i.modalities) == 1]
    if not single:
        return ""
    counts = {m: single.count(m) for m in sorted(set(single))}
    return " (" + ", ".join(f"{n} only {m}" for m, n in counts.items()) + ")"


def summarise(comparison: Comparison) -> list[str]:
    lines = []
    base = comparison.baseline
    for name in comparison.results:
        if name == base:
            continue
        pair = next(p for p in comparison.pairs if {p.a, p.b} == {base, name})
        moved = [i for i in comparison.items if name in i.change]
        up = sum(i.change[name].startswith("up") for i in moved)
        down = sum(i.change[name].startswith("down") for i in moved)
        new = [i for i in moved if i.change[name] == "new"]
        dropped = [i for i in moved if i.change[name] == "dropped"]
        lines.append(
            f"{name} keeps {round(pair.overlap * comparison.k)} of {base}'s top {comparison.k} "
            f"(Jaccard {pair.jaccard:.2f}, RBO {pair.rbo:.2f}, Kendall's tau {pair.kendall_tau:.2f}); "
            f"it promoted {up} and demoted {down}, brought in {len(new)}{_modality_phrase(new)} "
            f"and dropped {len(dropped)}{_modality_phrase(dropped)}."
        )
    return lines


def compare_results(results: dict[str, SearchResult], k: int, baseline: str | None = None) -> Comparison:
    baseline = baseline or next(iter(results))
    keys = {name: [h.item_id for h in r.hits] for name, r in results.items()}
    pairs = [pair_stats(a, keys[a], b, keys[b], k) for a, b in combinations(results, 2)]
    comparison = Comparison(k, baseline, results, pairs, movements(results, baseline))
    comparison.summary = summarise(comparison)
    return comparison
