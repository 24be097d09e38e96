"""The search-depth rules at scale, old against new, alternating query by query in one process.

Over a work folder of bench/scale_10m.py (its tables, indexes, queries and the strategy's truth file), every
query runs under each set of rules in turn, the order rotating, so that page-cache reclaim from outside the
process hits all alike (separate runs on the development VM moved 2-5x). The rules are the product's module
constants: `retrieval.fusion.late.ITEMS_PER_CANDIDATE` (unit lists), `storage.vector_store.SHORTLIST_SHARES`
(coarse-code shortlists) and `SCAN_VECTORS` (lists visited); "old rules" turns all three off, "shortlists as
before" only the second. Prints recall@10 against the truth and p50 / p90 per pass (docs/benchmarks/
scale_10m.md, tenth session; since the eleventh, "new rules" also holds the 2-bit codes' share).

    PYTHONPATH=. .venv/bin/python bench/depth_rules.py --work /tmp/s10m --strategy late [--passes 2]
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from common import alternating
from scale_10m import load_queries, make_strategy, open_space

import retrieval.fusion.late as late
import storage.vector_store as vector_store
from retrieval.space import VectorSpace

OFF = 10**15
RULES = {
    "old rules": (OFF, (), OFF),
    "new rules": (late.ITEMS_PER_CANDIDATE, vector_store.SHORTLIST_SHARES, vector_store.SCAN_VECTORS),
    "new, shortlists as before": (late.ITEMS_PER_CANDIDATE, (), vector_store.SCAN_VECTORS),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="a bench/scale_10m.py work folder")
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    queries = load_queries(args.work)[: args.queries]
    truth = json.loads((args.work / f"truth-{args.strategy}.json").read_text())
    space, strategy = open_space(args.work), make_strategy(args.strategy, args.work)
    names = list(RULES)

    def apply(name: str) -> VectorSpace:
        late.ITEMS_PER_CANDIDATE, vector_store.SHORTLIST_SHARES, vector_store.SCAN_VECTORS = RULES[name]
        for store in space.loaded_indexes.values():
            store.set_nprobe()
        return space

    for name in names:  # every index opened before timing
        strategy.search(apply(name), queries[0], 10)
    settings = {name: partial(apply, name) for name in names}
    for name, line in alternating(strategy, queries, truth, settings, args.passes).items():
        print(f"{args.strategy} {name}: {line}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
