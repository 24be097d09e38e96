"""Command line: `python -m retrieval search|compare|evaluate|tune|train`. Run with --help for each."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from retrieval import checks
from retrieval.errors import InvalidInputError, run_command
from retrieval.terminal import plain
from storage.db import DEFAULT_URL as DEFAULT_DB


# -- shared options -----------------------------------------------------------------------------------
def _collection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLAlchemy URL (default {DEFAULT_DB})")
    parser.add_argument("--collection", default="default", type=checks.collection_name)
    parser.add_argument("--device", help="cuda, cpu, ... (default: the best available)")
    parser.add_argument(
        "--nprobe",
        type=checks.positive_int(),
        help="lists an inverted-file index visits per search (default a sixteenth, at least 16, and in a "
        "compressed index of over ~1M vectors no more than hold ~65k of them): more find more true neighbours, "
        "slower",
    )
    parser.add_argument(
        "--rescore-bytes",
        type=checks.positive_int(),
        help="float16 rows a compressed index's shortlist re-scores exactly, in bytes (default 300 rows of 512-d, "
        "at least 1 row per 10,000 vectors of the default 2-bit codes and 3 under coarser codes; never fewer than "
        "300 rows nor more than 3,000): more find more true neighbours, slower where the rows are not in memory",
    )


def _query_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text")
    parser.add_argument("--image", help="an image file")
    parser.add_argument("--audio", help="an audio file")
    parser.add_argument(
        "--transcribe",
        action="store_true",
        help="also search by what the --audio clip says (collections that keep transcripts; ~0.4 s)",
    )
    parser.add_argument(
        "--weight", action="append", default=[], metavar="MODALITY=W", help="query-side weight, e.g. --weight text=0.5"
    )
    parser.add_argument("--negative-text", help="push results away from this text")
    parser.add_argument("--negative-image", help="push results away from this image")
    parser.add_argument("--negative-audio", help="push results away from this audio clip")


def _method_options(parser: argparse.ArgumentParser) -> None:
    from retrieval.fusion import list_strategies
    from retrieval.fusion.scoring import NORMALISATIONS

    parser.add_argument(
        "--strategy",
        action="append",
        choices=sorted(list_strategies()),
        help="fusion strategy; repeat to compare (default: late)",
    )
    parser.add_argument("--preset", action="append", default=[], help="a saved preset (see tune); repeatable")
    parser.add_argument("--normalisation", choices=NORMALISATIONS, help="late/hybrid: score normalisation")
    parser.add_argument("--fusion", choices=("sum", "mnz", "rrf"), help="late/hybrid: how scores combine")
    parser.add_argument("--rrf-k", type=checks.bounded_float(0, 1e6), help="late/hybrid: k of reciprocal rank fusion")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="STRATEGY.NAME=VALUE",
        help="any strategy parameter, e.g. gated.checkpoint=FILE or hybrid.groups='[[\"image\"]]'",
    )


def _weights(pairs: list[str]) -> dict[str, float]:
    weights = {}
    for pair in pairs:
        modality, _, value = pair.partition("=")
        if modality not in ("image", "audio", "text") or not value:
            raise InvalidInputError(f"--weight expects image=W, audio=W or text=W, got {pair!r}")
        try:
            weights[modality] = float(value)
        except ValueError:
            raise InvalidInputError(f"--weight {pair!r}: {value!r} is not a number") from None
    return checks.check_weights(weights, "--weight")


def _strategy_params(args: argparse.Namespace, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if name in ("late", "hybrid"):
        params = {"normalisation": args.normalisation, "fusion": args.fusion, "rrf_k": args.rrf_k}
    for item in args.param:
        target, _, value = item.partition("=")
        strategy, _, key = target.partition(".")
        if not key or not value:
            raise InvalidInputError(f"--param expects STRATEGY.NAME=VALUE, got {item!r}")
        if strategy == name:
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value  # a plain string, e.g. a checkpoint path
    return {k: v for k, v in params.items() if v is not None}


def _methods(args: argparse.Namespace, engine) -> list:  # noqa: ANN001
    from retrieval.results import Method

    names = args.strategy or ([] if args.preset else ["late"])
    methods = [Method(name, name, _strategy_params(args, name)) for name in names]
    return methods + [engine.preset(name) for name in args.preset]


def _query(args: argparse.Namespace):  # noqa: ANN202
    from retrieval.results import QueryInput

    query = QueryInput(
        args.text,
        args.image,
        args.audio,
        _weights(args.weight),
        negative_text=args.negative_text,
        negative_image=args.negative_image,
        negative_audio=args.negative_audio,
        transcribe=args.transcribe,
    )
    if not query.present():
        raise InvalidInputError("give at least one of --text, --image, --audio")
    return query


def _engine(args: argparse.Namespace):  # noqa: ANN202
    from retrieval.engine import SearchEngine

    return SearchEngine.open(
        args.db, args.collection, device=args.device, nprobe=args.nprobe, rescore_bytes=args.rescore_bytes
    )


def _short(value: Any, width: int) -> str:
    """A value for one line of text output: at most `width` characters (a 50 MB metadata value is not printed)."""
    text = plain(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _say_what_is_unsearchable(engine: Any) -> None:
    """One line on stderr when part of the collection cannot be found yet (the answer is still printed)."""
    if missing := engine.catalogue.unencoded():
        print(
            f"note: {missing} of {len(engine.catalogue.item_keys())} items have nothing encoded yet (an indexing run "
            "stopped before them) and cannot be found: run the indexer on the same source again",
            file=sys.stderr,
        )


# -- commands -------------------------------------------------------------------------------------------
def cmd_search(args: argparse.Namespace) -> int:
    query = _query(args)
    engine = _engine(args)
    results = engine.search_many(query, _methods(args, engine), k=args.k)
    _say_what_is_unsearchable(engine)
    if args.json:
        print(
            checks.json_text(
                {
                    "query": query.describe(),
                    "results": {name: [h.to_dict() for h in r.hits] for name, r in results.items()},
                }
            )
        )
        return 0
    for name, result in results.items():
        print(f"== {name} ({result.seconds * 1000:.1f} ms) {result.params or ''}")
        for hit in result.hits:
            parts = " ".join(f"{m}={v:.3f}" for m, v in hit.contributions.items())
            meta = " ".join(f"{_short(k, 24)}={_short(v, 60)}" for k, v in list(hit.metadata.items())[:4])
            print(f"{hit.rank:3d}. {_short(hit.key, 60):<28} {hit.score:7.4f}  [{parts}]  {meta}")
        if not result.hits:
            print("   (no item shares a modality with this query)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from retrieval.compare import compare_results

    query = _query(args)
    engine = _engine(args)
    methods = _methods(args, engine)
    if len(methods) < 2:
        raise InvalidInputError("compare needs at least two methods: repeat --strategy (or add --preset)")
    comparison = compare_results(engine.search_many(query, methods, k=args.k), args.k)
    _say_what_is_unsearchable(engine)
    if args.plot:
        from retrieval.plots import bump_chart, save

        for path in save(bump_chart(comparison), Path(args.plot) / "bump"):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(checks.json_text({"query": query.describe(), **comparison.to_dict()}))
        return 0
    names = list(comparison.results)
    print(f"{'rank':>4}  " + "  ".join(f"{n[:26]:<26}" for n in names))
    for rank in range(max((len(r.hits) for r in comparison.results.values()), default=0)):  # no blank rows
        cells = []
        for name in names:
            hits = comparison.results[name].hits
            cells.append(f"{_short(hits[rank].key, 18):<18} {hits[rank].score:7.3f}" if rank < len(hits) else " " * 26)
        print(f"{rank + 1:>4}  " + "  ".join(cells))
    print()
    for pair in comparison.pairs:
        print(
            f"{pair.a} vs {pair.b}: overlap@{args.k} {pair.overlap:.2f}, Jaccard {pair.jaccard:.2f}, "
            f"RBO {pair.rbo:.2f}, Kendall's tau "
            + (
                "undefined (fewer than two shared, untied items)"
                if pair.kendall_tau is None
                else f"{pair.kendall_tau:.2f}"
            )
        )
    print("latency: " + ", ".join(f"{n} {r.seconds * 1000:.1f} ms" for n, r in comparison.results.items()))
    print()
    for line in comparison.summary:
        print(line)
    return 0


def _qrels(args: argparse.Namespace, engine, queries):  # noqa: ANN001, ANN202
    from retrieval.evaluate import label_qrels, load_trec_qrels

    if bool(args.qrels) == bool(args.label_field):
        raise InvalidInputError("give exactly one of --qrels FILE or --label-field FIELD")
    return load_trec_qrels(args.qrels) if args.qrels else label_qrels(engine, queries, args.label_field)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from retrieval.evaluate import evaluate, load_queries

    engine = _engine(args)
    queries = load_queries(args.queries, args.label_field)
    evaluation = evaluate(engine, queries, _qrels(args, engine, queries), _methods(args, engine), k=args.k)
    markdown = evaluation.to_markdown()
    if args.out:
        from retrieval.plots import bump_chart, metric_chart, save

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(checks.json_text(evaluation.to_dict()))
        (out / "evaluation.md").write_text(markdown)
        written = [out / "evaluation.json", out / "evaluation.md"]
        written += save(metric_chart(evaluation, f"ndcg@{args.k}"), out / f"ndcg@{args.k}")
        chosen = next((q for q in queries if q.qid == args.bump_query), queries[0])
        methods = _methods(args, engine)
        if len(methods) > 1:
            written += save(bump_chart(engine.compare(chosen.query, methods, args.k)), out / "bump")
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    print(checks.json_text(evaluation.to_dict()) if args.json else markdown)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from retrieval.evaluate import load_queries
    from retrieval.tune import tune

    engine = _engine(args)
    queries = load_queries(args.queries, args.label_field)
    result = tune(
        engine, queries, _qrels(args, engine, queries), args.name, k=args.k, held_out=args.held_out, seed=args.seed
    )
    best = result.best
    print(
        f"best of {result.grid_size} settings on the tuning split (nDCG@{args.k} {result.tuning_score:.4f}): "
        f"fusion={best.params['fusion']} normalisation={best.params['normalisation']} "
        f"rrf_k={best.params['rrf_k']:g} weights={best.weights}"
    )
    print("held-out split:")
    print(result.held_out.to_markdown([f"ndcg@{args.k}", f"precision@{args.k}", "mrr"]))
    print(f"gain in nDCG@{args.k} over: " + ", ".join(f"{b} {g:+.4f}" for b, g in result.gain.items()))
    print(f"saved as preset {args.name!r}: use --preset {args.name} (CLI), preset={args.name!r} (Python), or the UI")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from retrieval.evaluate import load_queries
    from retrieval.report import report_charts, sample_queries, strategy_report

    engine = _engine(args)
    queries = load_queries(args.queries, args.label_field) if args.queries else sample_queries(engine)
    qrels = _qrels(args, engine, queries) if args.queries and (args.label_field or args.qrels) else None
    methods = _methods(args, engine) if args.strategy or args.preset else None
    with tqdm(desc="report", unit="method", file=sys.stderr) as bar:

        def progress(label: str, done: int, total: int) -> None:
            bar.total = total
            bar.set_postfix_str(label)
            bar.update(done - bar.n)

        report = strategy_report(engine, queries, qrels, methods, k=args.k, progress=progress)
    markdown = report.to_markdown()
    if args.out:
        from retrieval.plots import save

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "strategies.json").write_text(json.dumps(report.to_dict(), indent=2))
        (out / "strategies.md").write_text(markdown + "\n")
        written = [out / "strategies.json", out / "strategies.md"]
        for name, chart in report_charts(report).items():
            written += save(chart, out / f"strategies-{name}")
        for path in written:
            print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(report.to_dict(), indent=2) if args.json else markdown)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from retrieval.train import TrainConfig

    where = dict(pair.split("=", 1) for pair in args.where if "=" in pair)
    config = TrainConfig(
        args.strategy,
        label_field=args.label_field,
        where=where,
        epochs=args.epochs,
        seed=args.seed,
        centre=not args.no_centre,
        corrupt_probability=args.corrupt_probability,
    )
    engine = _engine(args)
    engine.db.require_writable("register a trained checkpoint in it")  # before a progress bar is drawn
    with tqdm(total=config.epochs, desc=f"train {args.strategy}", unit="epoch", file=sys.stderr) as bar:

        def progress(epoch: int, total: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        result = engine.models.train(config, args.out, progress)
    print(
        f"trained {args.strategy} on {result.items} items in {result.seconds:.1f}s; "
        f"loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}"
    )
    print(f"checkpoint: {result.path} (loss curve: {result.path}.loss.json); registered for {args.collection!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m retrieval", description="Search and compare fusion methods.")
    sub = parser.add_subparsers(dest="command", required=True)

    search = sub.add_parser("search", help="search with any mix of text, image and audio")
    compare = sub.add_parser("compare", help="one query under several methods: overlap, movement, summary")
    for command, func in ((search, cmd_search), (compare, cmd_compare)):
        _collection_options(command)
        _query_options(command)
        _method_options(command)
        command.add_argument("--k", type=checks.positive_int(checks.MAX_K), default=10)
        command.add_argument("--json", action="store_true", help="print one JSON object")
        command.set_defaults(func=func)
    compare.add_argument("--plot", metavar="DIR", help="also write a bump chart (HTML and PNG) into DIR")

    evaluate = sub.add_parser("evaluate", help="metrics per method and query kind on labelled queries")
    tune = sub.add_parser("tune", help="choose late-fusion weights, normalisation and RRF k on labelled queries")
    for command, func in ((evaluate, cmd_evaluate), (tune, cmd_tune)):
        _collection_options(command)
        command.add_argument("--queries", required=True, help="JSONL: id, text/image/audio, label, exclude")
        command.add_argument("--qrels", help="TREC qrels file (query iteration item_key relevance)")
        command.add_argument("--label-field", help="relevant = items whose metadata FIELD equals the query's label")
        command.add_argument("--k", type=checks.positive_int(checks.MAX_K), default=10)
        command.set_defaults(func=func)
    _method_options(evaluate)
    evaluate.add_argument("--out", help="folder for evaluation.json, evaluation.md and charts (HTML, PNG)")
    evaluate.add_argument("--bump-query", help="query id for the bump chart (default: the first)")
    evaluate.add_argument("--json", action="store_true")
    tune.add_argument("--name", required=True, help="preset name to save the result under")
    tune.add_argument(
        "--held-out", type=checks.bounded_float(0.05, 0.95), default=0.5, help="share of queries held out (default 0.5)"
    )
    tune.add_argument("--seed", type=int, default=0)

    report = sub.add_parser("report", help="every strategy measured on this collection: latency, quality, size")
    _collection_options(report)
    _method_options(report)
    report.add_argument("--queries", help="labelled queries (JSONL); default: 20 of the collection's items")
    report.add_argument("--qrels", help="TREC qrels file (query iteration item_key relevance)")
    report.add_argument("--label-field", help="relevant = items whose metadata FIELD equals the query's label")
    report.add_argument("--k", type=checks.positive_int(checks.MAX_K), default=10)
    report.add_argument("--out", help="folder for strategies.json, strategies.md and charts (HTML, PNG)")
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=cmd_report)

    from retrieval.fusion import learned_strategies

    fit = sub.add_parser("train", help="fit a learned fusion strategy on an indexed collection")
    _collection_options(fit)
    fit.add_argument("--strategy", required=True, choices=learned_strategies())
    fit.add_argument("--label-field", help="metadata field for supervised contrastive training (e.g. digit)")
    fit.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="train only on items whose metadata matches, e.g. --where split=train",
    )
    fit.add_argument("--out", required=True, help="checkpoint file (.safetensors)")
    fit.add_argument("--epochs", type=checks.positive_int(100_000), default=40)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--no-centre", action="store_true", help="do not subtract each field's mean first")
    fit.add_argument(
        "--corrupt-probability",
        type=checks.bounded_float(0.0, 1.0),
        default=0.0,
        help="swap one field of a multi-field view for another item's with this probability, the target "
        "unchanged, so the module learns that a field may mislead (default 0: no better on unseen speakers)",
    )
    fit.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
