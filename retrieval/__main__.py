"""Command line: `python -m retrieval search --db URL [--text T] [--image F] [--audio F] [--strategy S]...`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from retrieval.errors import run_command

DEFAULT_DB = "sqlite:///data/demo.db"


def _weights(pairs: list[str]) -> dict[str, float]:
    weights = {}
    for pair in pairs:
        modality, _, value = pair.partition("=")
        if modality not in ("image", "audio", "text") or not value:
            raise ValueError(f"--weight expects image=W, audio=W or text=W, got {pair!r}")
        weights[modality] = float(value)
    return weights


def _strategy_params(args: argparse.Namespace, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if name in ("late", "hybrid"):
        params = {"normalisation": args.normalisation, "fusion": args.fusion, "rrf_k": args.rrf_k}
    for item in args.param:
        target, _, value = item.partition("=")
        strategy, _, key = target.partition(".")
        if not key or not value:
            raise ValueError(f"--param expects STRATEGY.NAME=VALUE, got {item!r}")
        if strategy == name:
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value  # a plain string, e.g. a checkpoint path
    return {k: v for k, v in params.items() if v is not None}


def cmd_search(args: argparse.Namespace) -> int:
    from retrieval.engine import SearchEngine
    from retrieval.results import QueryInput

    query = QueryInput(args.text, args.image, args.audio, _weights(args.weight),
                       negative_text=args.negative_text, negative_image=args.negative_image,
                       negative_audio=args.negative_audio)
    if not query.present():
        raise ValueError("give at least one of --text, --image, --audio")
    engine = SearchEngine.open(args.db, args.collection, device=args.device)
    strategies = args.strategy or ["late"]
    results = engine.search_many(query, strategies, k=args.k,
                                 params={s: _strategy_params(args, s) for s in strategies})
    if args.json:
        print(json.dumps({"query": query.describe(),
                          "results": {name: [h.to_dict() for h in r.hits] for name, r in results.items()}},
                         indent=2, default=str))
        return 0
    for name, result in results.items():
        print(f"== {name} ({result.seconds * 1000:.1f} ms) {result.params or ''}")
        for hit in result.hits:
            parts = " ".join(f"{m}={v:.3f}" for m, v in hit.contributions.items())
            meta = " ".join(f"{k}={v}" for k, v in list(hit.metadata.items())[:4])
            print(f"{hit.rank:3d}. {hit.key:<28} {hit.score:7.4f}  [{parts}]  {meta}")
        if not result.hits:
            print("   (no item shares a modality with this query)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from retrieval.fusion import list_strategies
    from retrieval.fusion.scoring import NORMALISATIONS

    parser = argparse.ArgumentParser(prog="python -m retrieval", description="Search an indexed collection.")
    sub = parser.add_subparsers(dest="command", required=True)
    search = sub.add_parser("search", help="search with any mix of text, image and audio")
    search.add_argument("--db", default=DEFAULT_DB, help=f"SQLAlchemy URL (default {DEFAULT_DB})")
    search.add_argument("--collection", default="default")
    search.add_argument("--text")
    search.add_argument("--image", help="an image file")
    search.add_argument("--audio", help="an audio file")
    search.add_argument("--strategy", action="append", choices=sorted(list_strategies()),
                        help="fusion strategy; repeat to compare (default: late)")
    search.add_argument("--k", type=int, default=10)
    search.add_argument("--weight", action="append", default=[], metavar="MODALITY=W",
                        help="query-side weight, e.g. --weight text=0.5")
    search.add_argument("--normalisation", choices=NORMALISATIONS, help="late fusion: score normalisation")
    search.add_argument("--fusion", choices=("sum", "mnz", "rrf"), help="late fusion: how channel scores combine")
    search.add_argument("--rrf-k", type=float, help="late fusion: k of reciprocal rank fusion")
    search.add_argument("--param", action="append", default=[], metavar="STRATEGY.NAME=VALUE",
                        help="any strategy parameter, e.g. gated.checkpoint=FILE, hybrid.groups='[[\"image\"],[\"text\"]]'")
    search.add_argument("--negative-text", help="push results away from this text")
    search.add_argument("--negative-image", help="push results away from this image")
    search.add_argument("--negative-audio", help="push results away from this audio clip")
    search.add_argument("--device")
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.set_defaults(func=cmd_search)

    fit = sub.add_parser("train", help="fit a learned fusion strategy on an indexed collection")
    fit.add_argument("--db", default=DEFAULT_DB)
    fit.add_argument("--collection", default="default")
    fit.add_argument("--strategy", required=True, choices=("gated", "cross_attention", "early"))
    fit.add_argument("--label-field", help="metadata field for supervised contrastive training (e.g. digit)")
    fit.add_argument("--where", action="append", default=[], metavar="FIELD=VALUE",
                     help="train only on items whose metadata matches, e.g. --where split=train")
    fit.add_argument("--out", required=True, help="checkpoint file (.safetensors)")
    fit.add_argument("--epochs", type=int, default=40)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--no-centre", action="store_true", help="do not subtract each field's mean first")
    fit.add_argument("--device")
    fit.set_defaults(func=cmd_train)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from retrieval.engine import SearchEngine
    from retrieval.train import TrainConfig

    where = dict(pair.split("=", 1) for pair in args.where if "=" in pair)
    config = TrainConfig(args.strategy, label_field=args.label_field, where=where, epochs=args.epochs,
                         seed=args.seed, centre=not args.no_centre)
    engine = SearchEngine.open(args.db, args.collection, device=args.device)
    with tqdm(total=config.epochs, desc=f"train {args.strategy}", unit="epoch", file=sys.stderr) as bar:
        def progress(epoch: int, total: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")
        result = engine.train(config, args.out, progress)
    print(f"trained {args.strategy} on {result.items} items in {result.seconds:.1f}s; "
          f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    print(f"checkpoint: {result.path} (loss curve: {result.path}.loss.json); registered for {args.collection!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)

if __name__ == "__main__":
    sys.exit(main())
