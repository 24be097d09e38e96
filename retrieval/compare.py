"""Compare one query's results across fusion methods: what overlaps, what moved, in numbers and words.

Pairwise: overlap@k, Jaccard@k, rank-biased overlap (Webber et al. 2010, extrapolated, p=0.9) and
Kendall's tau-b over the items both lists hold (None where that is undefined: fewer than two shared
items, or all of them tied in one list; over the union it gave -0.71 for two disjoint lists).
Per item: its rank under each method and how it moved against the baseline (the first method). Items
with equal scores (`tie_key`) share a span of ranks; an item whose spans under two methods overlap did not
move, since neither method prefers one tied item to another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from retrieval.fusion.scoring import tie_key
from retrieval.results import Hit, SearchResult

Span = tuple[int, int]  # the first and last rank of an item's tie group


@dataclass
class PairStats:
    a: str
    b: str
    overlap: float
    jaccard: float
    rbo: float
    kendall_tau: float | None  # None where undefined (see the module's docstring)

    def shared(self, k: int) -> int:
        return round(self.overlap * k)


@dataclass
class ItemMovement:
    item_id: int
    key: str
    modalities: list[str]
    ranks: dict[str, int | None]
    change: dict[str, str]  # against the baseline: "up 3", "down 1", "same", "new", "dropped"

    @property
    def moved(self) -> bool:
        """Whether any method placed it differently from the baseline (ties within a span do not count)."""
        return any(c != "same" for c in self.change.values())


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


def tie_spans(hits: list[Hit]) -> dict[int, Span]:
    """Each hit's tie group as (first rank, last rank): consecutive hits with equal scores share one."""
    spans: dict[int, Span] = {}
    start = 0
    for end in range(1, len(hits) + 1):
        if end == len(hits) or tie_key(hits[end].score) != tie_key(hits[start].score):
            for hit in hits[start:end]:
                spans[hit.item_id] = (hits[start].rank, hits[end - 1].rank)
            start = end
    return spans


def kendall_tau(a: list, b: list, rank_a: dict | None = None, rank_b: dict | None = None) -> float | None:
    """Kendall's tau-b over the items both lists hold, by their ranks (tied items share one rank);
    None where undefined: fewer than two shared items, or every shared item tied in one of the lists."""
    in_b = set(b)
    common = [x for x in a if x in in_b]
    if len(common) < 2:
        return None
    from scipy.stats import kendalltau  # scipy.stats costs ~1 s to import; only comparisons need it

    rank_a = rank_a or {x: n for n, x in enumerate(a)}
    rank_b = rank_b or {x: n for n, x in enumerate(b)}
    tau = kendalltau([rank_a[x] for x in common], [rank_b[x] for x in common]).statistic
    return None if tau != tau else float(tau)  # NaN when one side is all ties


def pair_stats(
    name_a: str, a: list, name_b: str, b: list, k: int, spans: dict[str, dict[int, Span]] | None = None
) -> PairStats:
    a, b = a[:k], b[:k]
    common = len(set(a) & set(b))
    union = len(set(a) | set(b))
    first = {name: {x: span[0] for x, span in by_item.items()} for name, by_item in (spans or {}).items()}
    return PairStats(
        name_a,
        name_b,
        common / k if k else 0.0,
        common / union if union else 1.0,
        rank_biased_overlap(a, b),
        kendall_tau(a, b, first.get(name_a), first.get(name_b)),
    )


def _change(base: Span | None, span: Span | None) -> str:
    if base is None:
        return "new" if span is not None else "absent"
    if span is None:
        return "dropped"
    if span[0] <= base[1] and base[0] <= span[1]:
        return "same"  # the tie groups overlap: neither method prefers the order
    return f"up {base[0] - span[1]}" if span[1] < base[0] else f"down {span[0] - base[1]}"


def movements(results: dict[str, SearchResult], baseline: str) -> list[ItemMovement]:
    spans = {name: tie_spans(result.hits) for name, result in results.items()}
    ranks: dict[int, dict[str, int]] = {}
    hits: dict[int, Hit] = {}
    for name, result in results.items():
        for hit in result.hits:
            ranks.setdefault(hit.item_id, {})[name] = hit.rank
            hits.setdefault(hit.item_id, hit)
    out = []
    for item_id, by_method in ranks.items():
        base = spans[baseline].get(item_id)
        change = {name: _change(base, spans[name].get(item_id)) for name in results if name != baseline}
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
        tau = "" if pair.kendall_tau is None else f", Kendall's tau {pair.kendall_tau:.2f}"
        lines.append(
            f"{name} keeps {pair.shared(comparison.k)} of {base}'s top {comparison.k} "
            f"(Jaccard {pair.jaccard:.2f}, RBO {pair.rbo:.2f}{tau}); "
            f"it promoted {up} and demoted {down}, brought in {len(new)}{_modality_phrase(new)} "
            f"and dropped {len(dropped)}{_modality_phrase(dropped)}."
        )
    return lines


def compare_results(results: dict[str, SearchResult], k: int, baseline: str | None = None) -> Comparison:
    baseline = baseline or next(iter(results))
    keys = {name: [h.item_id for h in r.hits] for name, r in results.items()}
    spans = {name: tie_spans(r.hits) for name, r in results.items()}
    pairs = [pair_stats(a, keys[a], b, keys[b], k, spans) for a, b in combinations(results, 2)]
    comparison = Comparison(k, baseline, results, pairs, movements(results, baseline))
    comparison.summary = summarise(comparison)
    return comparison
