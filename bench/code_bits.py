"""Compressed codes of two sizes at scale, alternating query by query in one process.

Two bench/scale_10m.py work folders over the same tables (the second's `vectors` a link to the first's, its
`queries.npz` a copy), whose indexes were built with different PQ code bits a dimension (`--code-bits`;
early's 1,536-d concatenation: 1 bit PQ384x4fs, 2 bits PQ768x4fs). Every query runs with the first folder's
indexes at the product's rules and with the second's at each shortlist share asked for (rows per 10,000
vectors, `storage.vector_store.SHORTLIST_SHARES` for its codes), the order rotating, so that page-cache
reclaim from outside the process hits all alike. Prints recall@10 against the first folder's truth file and
p50 / p90 per pass (docs/benchmarks/notes/scale_10m.md, eleventh session).

    PYTHONPATH=. .venv/bin/python bench/scale_10m.py --items 10000000 --work /tmp/a --fields agreeing \\
        --strategies early --code-bits 1
    mkdir -p /tmp/b && ln -s /tmp/a/vectors /tmp/b/vectors && cp /tmp/a/queries.npz /tmp/a/fields.txt /tmp/b/
    PYTHONPATH=. .venv/bin/python bench/scale_10m.py --phase build --strategy early --work /tmp/b --code-bits 2
    PYTHONPATH=. .venv/bin/python bench/code_bits.py --a /tmp/a --b /tmp/b --strategy early --shares 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from common import alternating
from scale_10m import load_queries, make_strategy, open_space

import storage.vector_store as vector_store
from retrieval.space import VectorSpace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="work folder with the strategy's truth file")
    parser.add_argument("--b", type=Path, required=True, help="work folder with the other codes' indexes")
    parser.add_argument("--strategy", required=True)
    parser.add_argument("--shares", type=float, nargs="+", default=[0, 1], help="rows per 10,000 vectors, for b")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    queries = load_queries(args.a)[: args.queries]
    truth = json.loads((args.a / f"truth-{args.strategy}.json").read_text())
    spaces = {"a": open_space(args.a), "b": open_space(args.b)}
    strategy = make_strategy(args.strategy, args.a)
    settings = {"a, the rules": ("a", vector_store.SHORTLIST_SHARES)}
    for share in args.shares:  # one band for any code: b's share whatever its bits
        settings[f"b, {share:g} per 10,000"] = ("b", ((float("inf"), share / 10_000),))
    names = list(settings)

    def apply(name: str) -> VectorSpace:
        folder, vector_store.SHORTLIST_SHARES = settings[name]
        return spaces[folder]

    for name in names:  # every index opened before timing
        strategy.search(apply(name), queries[0], 10)
        print(name, {key: (s.factory, s.shortlist(10)) for key, s in apply(name).loaded_indexes.items()}, flush=True)
    lines = alternating(strategy, queries, truth, {name: partial(apply, name) for name in names}, args.passes)
    for name, line in lines.items():
        print(f"{args.strategy} {name}: {line}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
