"""Benchmark every fusion strategy on the digits collection (real media), as the fusion issue specifies.

Train split: speakers george, jackson, lucas with MNIST indices below 2500; test split: nicolas with
indices 2500 and up. Learned strategies are trained on the train collection and search the test one.
Queries are test items' own media, of seven kinds (image, audio, text, image+audio, image+text,
audio+text, all three); the query item itself is left out; relevance = same digit. Metrics by ranx.

    .venv/bin/python bench/fusion_digits.py [--per-kind 200] [--epochs 40]

Writes docs/benchmarks/fusion_digits.json and .md and prints the markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from common import stamped

from indexer import Indexer
from indexer.demo import DemoSpec, build_digits_manifest, datasets_dir
from retrieval import QueryInput, SearchEngine
from retrieval.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

KINDS = [
    ("image",),
    ("audio",),
    ("text",),
    ("image", "audio"),
    ("image", "text"),
    ("audio", "text"),
    ("image", "audio", "text"),
]
METRICS = ["precision@10", "ndcg@10", "mrr", "map@100"]
FLOOR = {"image": 0.83, "audio": 0.55, "image+audio": 0.85}  # the plain numpy floor, P@10


def split_manifests(manifest: Path) -> dict[str, Path]:
    with open(manifest, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    out = {}
    for split in ("train", "test"):
        path = manifest.with_name(f"{split}.csv")
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if r["split"] == split)
        out[split] = path
    return out


def strategies(checkpoints: dict[str, str]) -> dict[str, tuple[str, dict]]:
    return {
        "late (sum)": ("late", {}),
        "late (z-score)": ("late", {"normalisation": "zscore"}),
        "late (z-score, centred)": ("late", {"normalisation": "zscore", "centre": True}),
        "late (RRF k=60)": ("late", {"fusion": "rrf"}),
        "early (identity)": ("early", {}),
        "hybrid (z-score)": ("hybrid", {"normalisation": "zscore"}),
        "early (learned MLP)": ("learned_early", {"checkpoint": checkpoints["early"]}),
        "gated": ("gated", {"checkpoint": checkpoints["gated"]}),
        "gated (blend 0.3)": ("gated", {"checkpoint": checkpoints["gated"], "blend": 0.3}),
        "gated (self-supervised)": ("gated", {"checkpoint": checkpoints["gated-ssl"]}),
        "cross-attention": ("cross_attention", {"checkpoint": checkpoints["cross_attention"]}),
        "cross-attention (re-rank)": (
            "cross_attention",
            {"checkpoint": checkpoints["cross_attention"], "mode": "rerank"},
        ),
    }


def make_queries(engine: SearchEngine, per_kind: int, seed: int) -> tuple[list[dict], list[dict]]:
    from storage.repository import items_by_ids

    with engine.db.session() as session:
        items = items_by_ids(session, engine.space.item_ids().tolist())
        rows = []
        for item in items.values():
            assets = {
                a.modality: (a.preview if a.modality == "text" else a.path) for a in item.assets if a.status == "ok"
            }
            rows.append({"id": item.id, "digit": item.meta["digit"], "assets": assets})
    rng = random.Random(seed)
    queries = []
    for kind in KINDS:
        fitting = [r for r in rows if all(m in r["assets"] for m in kind)]
        rng.shuffle(fitting)
        for row in sorted(fitting[:per_kind], key=lambda r: r["id"]):
            queries.append(
                {
                    "qid": f"{'+'.join(kind)}/{row['id']}",
                    "kind": "+".join(kind),
                    "item": row["id"],
                    "digit": row["digit"],
                    "input": {m: row["assets"][m] for m in kind},
                }
            )
    return queries, rows


def run_strategy(
    engine: SearchEngine, queries: list[dict], encoded: dict, name: str, params: dict, only: str | None = None
) -> tuple[dict, list[float]]:
    from retrieval.space import EncodedQuery

    strategy = engine.strategy(name, **params)
    run, latencies = {}, []
    for q in queries:
        vectors = encoded[q["qid"]].vectors
        if only:
            vectors = {k: v for k, v in vectors.items() if k[0] == only}
        started = time.perf_counter()
        scored = strategy.search(engine.space, EncodedQuery(vectors), 101)
        latencies.append(time.perf_counter() - started)
        ranked = [s for s in scored if s.item_id != q["item"]][:100]
        run[q["qid"]] = {str(s.item_id): float(len(ranked) - n) for n, s in enumerate(ranked)} or {"none": 0.0}
    return run, latencies


def evaluate(queries: list[dict], rows: list[dict], run: dict) -> dict[str, dict[str, float]]:
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    by_digit: dict[str, list[int]] = {}
    for r in rows:
        by_digit.setdefault(str(r["digit"]), []).append(r["id"])
    out = {}
    for kind in sorted({q["kind"] for q in queries}):
        subset = [q for q in queries if q["kind"] == kind]
        qrels = Qrels({q["qid"]: {str(i): 1 for i in by_digit[str(q["digit"])] if i != q["item"]} for q in subset})
        scores = ranx_evaluate(qrels, Run({q["qid"]: run[q["qid"]] for q in subset}), METRICS)
        out[kind] = {m: round(float(v), 4) for m, v in scores.items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="digits items (default: all 2,000)")
    parser.add_argument("--work", default=str(ROOT / "data" / "bench-fusion"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    args = parser.parse_args()
    work = Path(args.work)
    url = f"sqlite:///{work}/digits.db"
    timings: dict[str, float] = {}

    started = time.perf_counter()
    manifests = split_manifests(build_digits_manifest(work, spec=DemoSpec(limit=args.limit)))
    for split, manifest in manifests.items():
        Indexer(url, collection=f"digits-{split}").run(manifest, roots=[datasets_dir()])
    timings["index both splits (s)"] = round(time.perf_counter() - started, 1)

    train_engine = SearchEngine.open(url, "digits-train")
    checkpoints = {}
    for key, strategy, label in (
        ("gated", "gated", "digit"),
        ("gated-ssl", "gated", None),
        ("cross_attention", "cross_attention", "digit"),
        ("early", "learned_early", "digit"),
    ):
        started = time.perf_counter()
        result = train_engine.models.train(
            TrainConfig(strategy, label_field=label, epochs=args.epochs, seed=args.seed), work / f"{key}.safetensors"
        )
        checkpoints[key] = str(result.path)
        timings[f"train {key} (s)"] = round(time.perf_counter() - started, 1)
        print(
            f"trained {key}: {result.items} items, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}, "
            f"{timings[f'train {key} (s)']} s",
            file=sys.stderr,
        )

    engine = SearchEngine.open(url, "digits-test")
    queries, rows = make_queries(engine, args.per_kind, args.seed)
    started = time.perf_counter()
    encoded = {q["qid"]: engine.encode_query(QueryInput(**q["input"])) for q in queries}
    timings["encode one query (ms, mean)"] = round(1000 * (time.perf_counter() - started) / len(queries), 2)

    results: dict[str, dict] = {}
    for label, (name, params) in strategies(checkpoints).items():
        engine.strategy(name, **params).prepare(engine.space)  # build the index before timing queries
        run, latencies = run_strategy(engine, queries, encoded, name, params)
        results[label] = {
            "metrics": evaluate(queries, rows, run),
            "latency_ms": {
                "p50": round(1000 * statistics.median(latencies), 2),
                "p99": round(1000 * sorted(latencies)[int(0.99 * (len(latencies) - 1))], 2),
            },
        }
        print(f"{label}: done", file=sys.stderr)

    single = {}
    multi = [q for q in queries if "+" in q["kind"]]
    for modality in ("image", "audio", "text"):
        subset = [q for q in multi if modality in q["kind"].split("+")]
        run, _ = run_strategy(engine, subset, encoded, "late", {}, only=modality)
        single[modality] = evaluate(subset, rows, run)

    best_single = {}
    for kind in {q["kind"] for q in multi}:
        options = {m: single[m][kind] for m in kind.split("+")}
        best = max(options, key=lambda m: options[m]["precision@10"])
        best_single[kind] = {"modality": best, **options[best]}

    report = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "split": "train: george, jackson, lucas + MNIST < 2500; test: nicolas + MNIST >= 2500",
        "queries_per_kind": {k: sum(q["kind"] == k for q in queries) for k in sorted({q["kind"] for q in queries})},
        "test_items": len(rows),
        "timings": timings,
        "floor_p10": FLOOR,
        "strategies": results,
        "best_single_modality": best_single,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    markdown = stamped(to_markdown(report))  # stamped first: the JSON would make the checkout "-dirty"
    (out / "fusion_digits.json").write_text(json.dumps(report, indent=2))
    (out / "fusion_digits.md").write_text(markdown)
    print(markdown)
    return 0


def to_markdown(report: dict) -> str:
    kinds = ["+".join(k) for k in KINDS]
    lines = [
        "# Fusion strategies on the digits collection",
        "",
        f"Split: {report['split']}. Test items: {report['test_items']}. Relevance: same digit; the query item "
        "is excluded. Queries per kind: "
        + ", ".join(f"{k} {n}" for k, n in report["queries_per_kind"].items())
        + ". Metrics computed by ranx.",
        "",
    ]
    for metric in METRICS:
        lines += [
            f"## {metric}",
            "",
            "| strategy | " + " | ".join(kinds) + " | p50 ms | p99 ms |",
            "|---" * (len(kinds) + 3) + "|",
        ]
        for label, result in report["strategies"].items():
            cells = [f"{result['metrics'].get(k, {}).get(metric, float('nan')):.3f}" for k in kinds]
            lines.append(
                f"| {label} | "
                + " | ".join(cells)
                + f" | {result['latency_ms']['p50']} | {result['latency_ms']['p99']} |"
            )
        best = report["best_single_modality"]
        lines.append(
            "| *best single modality* | "
            + " | ".join(f"{best[k][metric]:.3f} ({best[k]['modality']})" if k in best else "" for k in kinds)
            + " | | |"
        )
        lines.append("")
    lines += [
        "Reference floor from the issue (plain numpy, P@10): "
        + ", ".join(f"{k} {v}" for k, v in report["floor_p10"].items())
        + ".",
        "",
        "Timings: " + ", ".join(f"{k} {v}" for k, v in report["timings"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
