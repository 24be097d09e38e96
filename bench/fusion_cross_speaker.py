"""Fusion on speakers and handwriting never seen in training: the cross-speaker benchmark of issue 13.

Each rotation gives the four FSDD speakers roles: two train the learned strategies (with MNIST 0-2499),
one makes the corpus (with MNIST 2500-3749, demo-like mixed modalities), one makes the queries (with
MNIST 3750-4999 and text phrasings no item uses). Query kinds: the seven combinations, four noisy ones
(image + white-noise clip, image + silent clip, audio + off-topic text, text + blank image) and audio /
text against an image-only collection. Relevance: same digit; metric P@10. Learned strategies are
trained per rotation with several seeds; the tuned preset is tuned on the train collection (never on the
corpus or the queries). Every fused kind is compared with the same strategy's best single modality on
the same queries, and every noisy kind with its clean counterpart.

    .venv/bin/python bench/fusion_cross_speaker.py [--rotations 3] [--seeds 3] [--epochs 20] [--per-kind 50]

Writes docs/benchmarks/NAME.json and .md (--name, default fusion_cross_speaker). The committed results
used the defaults (about 2.5 minutes on two cores; the "before" file ran this script's version of commit
f177a05 on the code before issue 13 with the same seeds and epochs); the first run also encodes every
recording, MNIST image and text once (~1 minute, cached in data/).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# one thread each: on two shared cores, FAISS's OpenMP threads spun and a 500-item search took 27 ms
os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import reports_dir, stamped  # noqa: E402
from fusion_cross_data import (  # noqa: E402
    AUDIO,
    ENCODER,
    KINDS,
    MNIST_RANGES,
    MULTI,
    NOISY,
    SPEAKERS,
    Collection,
    Media,
    QueryBase,
    audio_only,
    demo_like,
    encode_media,
    image_only,
    query_bases,
)

from retrieval.fusion import create_strategy, list_strategies  # noqa: E402
from retrieval.fusion.base import FusionStrategy, channel_shares  # noqa: E402
from retrieval.fusion.late import LateFusion, LateParams  # noqa: E402
from retrieval.space import EncodedQuery  # noqa: E402
from retrieval.train import TrainConfig, train  # noqa: E402
from retrieval.tune import CachedQuery, grid, score_setting  # noqa: E402

# learned early was `early` given a checkpoint before 0.19.0 (the script also measures older commits)
LEARNED_EARLY = "learned_early" if "learned_early" in list_strategies() else "early"
LEARNED = {"early (learned)": LEARNED_EARLY, "gated": "gated", "cross-attention": "cross_attention"}


def fixed_strategies() -> dict[str, tuple[str, dict]]:
    if "weighting" not in {f.name for f in dataclasses.fields(LateParams)}:  # the code before issue 13
        return {
            "late (defaults)": ("late", {}),
            "late (z-score)": ("late", {"normalisation": "zscore"}),
            "late (RRF)": ("late", {"fusion": "rrf"}),
            "hybrid (defaults)": ("hybrid", {}),
            "early (identity)": ("early", {}),
        }
    fixed: dict[str, object] = {"weighting": "fixed"}
    if "screen" in {f.name for f in dataclasses.fields(LateParams)}:  # 0.18.0: screening is a switch of its own
        fixed["screen"] = False  # these rows show what fixed weights cost, with nothing left out
    return {
        "late (defaults)": ("late", {}),
        "late (none, sum: old defaults)": ("late", {"normalisation": "none", **fixed}),
        "late (z-score, fixed weights)": ("late", {"normalisation": "zscore", **fixed}),
        "late (RRF, fixed weights)": ("late", {"fusion": "rrf", **fixed}),
        "late (RRF, adaptive)": ("late", {"fusion": "rrf"}),
        "hybrid (defaults)": ("hybrid", {}),
        "hybrid (groups summed raw)": ("hybrid", {"standardise": False}),
        "hybrid (old defaults)": ("hybrid", {"normalisation": "none", "standardise": False, **fixed}),
        "early (identity)": ("early", {}),
        "early (identity, summed raw)": ("early", {"standardise": False}),
    }


def rotation(r: int) -> dict[str, tuple[str, ...]]:
    s = SPEAKERS[r:] + SPEAKERS[:r]
    return {"train": (s[0], s[1]), "corpus": (s[2],), "query": (s[3],)}


def encoded(base: QueryBase, kind: str, weights: dict[str, float] | None = None, detector: bool = True) -> EncodedQuery:
    """The query of `kind`; an input its encoder finds nothing in is marked as the engine marks it (when there
    are others to go on), unless `detector` is off (an audio encoder that cannot tell, as CLAP)."""
    inputs, _ = KINDS[kind]
    vectors = {(m, ENCODER[m]): base.vectors[source] for m, source in inputs.items()}
    unheard = base.unheard if detector else set()
    empty = {(m, ENCODER[m]) for m, source in inputs.items() if source in unheard and len(inputs) > 1}
    return EncodedQuery(vectors, weights or {}, empty=frozenset(empty))


def precision(
    strategy: FusionStrategy,
    collections: dict[str, Collection],
    bases: list[QueryBase],
    kind: str,
    weights: dict[str, float] | None = None,
) -> np.ndarray:
    """P@10 of each base's query of `kind`."""
    target = collections[KINDS[kind][1]]
    out = np.zeros(len(bases))
    for n, base in enumerate(bases):
        hits = strategy.search(target.space, encoded(base, kind, weights), 10)
        out[n] = sum(target.digits[h.item_id] == base.digit for h in hits) / 10
    return out


def tuned_preset(train_set: Collection, seed: int, per_kind: int = 12) -> tuple[dict, dict[str, float]]:
    """The `tune` grid (weights, normalisation, RRF k) scored on queries from the train collection itself."""
    rng = random.Random(seed)
    space, digits = train_set.space, train_set.digits
    late = LateFusion(candidates=100)
    cached = []
    for kind in ("image", "audio", "text", "image+audio", "image+text", "audio+text", "image+audio+text"):
        modalities = kind.split("+")
        fitting = [i for i in train_set.ids if all(i in space.tables[f"{m}@{ENCODER[m]}"] for m in modalities)]
        for item in rng.sample(fitting, min(per_kind, len(fitting))):
            vectors = {
                (m, ENCODER[m]): space.tables[f"{m}@{ENCODER[m]}"].lookup(np.array([item]))[0][0] for m in modalities
            }
            q = EncodedQuery(vectors)
            ids = np.array([i for i in late.candidates(space, q, 100) if i != item])
            reached = space.channels(q)
            channels = [
                (c.query_modality, *space.channel_scores(q, c, ids), share)
                for c, share in zip(reached, channel_shares(reached))
            ]
            relevant = digits[ids] == digits[item]
            cached.append(
                (
                    CachedQuery(str(item), [str(i) for i in ids], channels, relevant),
                    int((digits == digits[item]).sum()) - 1,
                )
            )
    settings = grid(["audio", "image", "text"])
    best = max(enumerate(settings), key=lambda t: (score_setting(cached, t[1], 10), -t[0]))[1]
    params = {"fusion": best["fusion"], "normalisation": best["normalisation"], "rrf_k": best["rrf_k"]}
    if "weighting" in {f.name for f in dataclasses.fields(LateParams)}:
        params["weighting"] = "fixed"  # what tune chooses: one set of weights for every query
    return params, best["weights"]


def run_rotation(r: int, media: Media, args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[float]]]:
    roles = rotation(r)
    collections = {
        "train": demo_like(media, roles["train"], MNIST_RANGES["train"], r, work / f"r{r}-train"),
        "corpus": demo_like(media, roles["corpus"], MNIST_RANGES["corpus"], r, work / f"r{r}-corpus"),
        "image-only": image_only(media, MNIST_RANGES["corpus"], work / f"r{r}-image-only"),
        "audio-only": audio_only(media, roles["corpus"], work / f"r{r}-audio-only"),
    }
    bases = query_bases(media, roles["query"][0], args.per_kind, seed=100 + r)
    results: dict[str, dict[str, list[float]]] = {}

    def record(label: str, strategy: FusionStrategy, weights: dict[str, float] | None = None) -> None:
        per_kind = results.setdefault(label, {})
        for kind in KINDS:
            per_kind.setdefault(kind, []).append(precision(strategy, collections, bases, kind, weights).tolist())

    started = time.perf_counter()
    for label, (name, params) in fixed_strategies().items():
        if not args.only or label in args.only:
            record(label, create_strategy(name, **params))
    if not args.only or "late (tuned preset)" in args.only:
        params, weights = tuned_preset(collections["train"], seed=r)
        record("late (tuned preset)", create_strategy("late", **params), weights)
        results["late (tuned preset)"]["setting"] = [{"params": params, "weights": weights}]  # type: ignore[list-item]
    print(f"rotation {r}: fixed strategies {time.perf_counter() - started:.0f} s", file=sys.stderr)
    train_set = collections["train"]
    for seed in range(args.seeds):
        for label, name in LEARNED.items():
            if args.only and label not in args.only:
                continue
            started = time.perf_counter()
            config = TrainConfig(name, label_field="digit", epochs=args.epochs, seed=seed, **args.train_params)
            labels = [int(d) for d in train_set.digits[train_set.ids]]
            path = train(train_set.space, train_set.ids, labels, config, work / f"r{r}-{name}-{seed}.safetensors").path
            trained = time.perf_counter() - started
            record(label, create_strategy(name, checkpoint=str(path), **args.learned_params.get(name, {})))
            print(
                f"rotation {r} seed {seed} {label}: trained {trained:.0f} s, "
                f"searched {time.perf_counter() - started - trained:.0f} s",
                file=sys.stderr,
            )
    return results


def summarise(runs: dict[str, dict[str, list[list[float]]]]) -> dict[str, dict]:
    """Mean and spread over runs (rotations x seeds) of P@10, fused minus best single, noisy costs."""
    out: dict[str, dict] = {}
    for label, kinds in runs.items():
        means = {k: np.array([np.mean(run) for run in v]) for k, v in kinds.items() if k in KINDS}
        stats = {k: {"mean": round(float(v.mean()), 4), "sd": round(float(v.std()), 4)} for k, v in means.items()}
        gain = {}
        for kind in MULTI:
            best = np.max([means[m] for m in kind.split("+")], axis=0)
            delta = means[kind] - best
            gain[kind] = {"mean": round(float(delta.mean()), 4), "sd": round(float(delta.std()), 4)}
        cost = {}
        for noisy, clean in NOISY.items():
            delta = means[clean] - means[noisy]
            cost[noisy] = {"mean": round(float(delta.mean()), 4), "sd": round(float(delta.std()), 4)}
        out[label] = {"p10": stats, "fused_minus_best_single": gain, "noise_cost": cost, "runs": len(means["image"])}
        if "setting" in kinds:
            out[label]["settings"] = kinds["setting"]
    return out


def goals(summary: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for label, s in summary.items():
        row = {
            "worst fused - best single": min(g["mean"] for g in s["fused_minus_best_single"].values()),
            "worst noise cost": max(c["mean"] for c in s["noise_cost"].values()),
        }
        row["text→audio-only"] = s["p10"]["text→audio-only"]["mean"]
        if label in LEARNED:
            row |= {k: s["p10"][k]["mean"] for k in ("image+audio", "audio", "audio→image-only")}
        out[label] = row
    return out


def table(
    summary: dict, title: str, keys: list[str], columns: list[str], value: Callable[[dict, str], str]
) -> list[str]:
    """One markdown section: a row per strategy, a column per key (`value(strategy's summary, key)`)."""
    lines = ["", f"## {title}", "", "| strategy | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    return lines + [f"| {label} | " + " | ".join(value(v, k) for k in keys) + " |" for label, v in summary.items()]


def to_markdown(report: dict) -> str:
    kinds = list(KINDS)
    s = report["summary"]
    cell = lambda v: f"{v['mean']:.3f} ± {v['sd']:.3f}"  # noqa: E731
    lines = [
        "# Fusion on unseen speakers (cross-speaker benchmark)",
        "",
        f"{report['design']} Runs: {report['rotations']} rotations"
        f" × {report['seeds']} seeds for learned strategies; {report['per_kind']} queries per kind per rotation."
        " Cells: mean ± standard deviation over runs of P@10. Wall time: "
        f"{report['seconds']:.0f} s.",
    ]
    noisy = list(NOISY)
    lines += table(s, "P@10 by query kind", kinds, kinds, lambda v, k: cell(v["p10"][k]))
    lines += table(
        s,
        "Fused kind minus the same strategy's best single modality (same queries; goal ≥ 0, learned ≥ 0.05)",
        MULTI,
        MULTI,
        lambda v, k: cell(v["fused_minus_best_single"][k]),
    )
    lines += table(
        s,
        "What a useless extra input costs: clean P@10 minus noisy P@10 (goal ≤ 0.02)",
        noisy,
        [f"{k} (vs {NOISY[k]})" for k in noisy],
        lambda v, k: cell(v["noise_cost"][k]),
    )
    lines += [
        "",
        "## Goals",
        "",
        "| strategy | worst fused − best single | worst noise cost | image+audio | audio | audio→image-only | text→audio-only |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, g in report["goals"].items():
        extra = [
            f"{g[k]:.3f}" if k in g else "" for k in ("image+audio", "audio", "audio→image-only", "text→audio-only")
        ]
        lines.append(
            f"| {label} | {g['worst fused - best single']:+.3f} | {g['worst noise cost']:+.3f} | "
            + " | ".join(extra)
            + " |"
        )
    lines += ["", f"Tuned presets (chosen on each rotation's train collection): {report['tuned']}", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rotations", type=int, default=3, help="1-4 speaker rotations")
    parser.add_argument(
        "--rotation", type=int, action="append", help="run only these rotations (3 is the one defaults are tuned on)"
    )
    parser.add_argument("--only", action="append", help="run only these strategy labels (repeat)")
    parser.add_argument("--train", action="append", default=[], help="TrainConfig override KEY=VALUE (repeat)")
    parser.add_argument(
        "--learned",
        action="append",
        default=[],
        help="search parameter of every learned strategy, a JSON value: blend=0.3, screen=false",
    )
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per learned strategy")
    parser.add_argument("--per-kind", type=int, default=50, help="queries per kind per rotation")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--name", default="fusion_cross_speaker")
    parser.add_argument("--cache", default=str(ROOT / "data" / "bench-cross" / f"media-{AUDIO}.npz"))
    args = parser.parse_args()
    learned = {key: json.loads(value) for key, value in (item.split("=", 1) for item in args.learned)}
    args.learned_params = dict.fromkeys(LEARNED.values(), learned)
    args.train_params = {key: float(value) for key, value in (item.split("=", 1) for item in args.train)}
    started = time.perf_counter()
    media = encode_media(Path(args.cache))
    print(f"media encoded/loaded: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    runs: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in args.rotation or range(args.rotations):
            for label, kinds in run_rotation(r, media, args, Path(tmp)).items():
                for kind, values in kinds.items():
                    runs.setdefault(label, {}).setdefault(kind, []).extend(values)
    summary = summarise(runs)
    report = {
        "design": (
            "Train: two speakers + MNIST 0-2499; corpus: a third speaker + MNIST 2500-3749 (demo-like: image 80 %, "
            "audio 80 %, text 50 %); image-only corpus: MNIST 2500-3749; queries: the fourth speaker + MNIST "
            f"3750-4999 + phrasings no item uses. Offline encoders (hog, {AUDIO}, sbert). Relevance: same digit."
        ),
        "rotations": [rotation(r) for r in args.rotation or range(args.rotations)],
        "train": args.train_params,
        "learned": args.learned_params.get("gated", {}),
        "seeds": args.seeds,
        "per_kind": args.per_kind,
        "epochs": args.epochs,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summary,
        "goals": goals(summary),
        "tuned": runs.get("late (tuned preset)", {}).get("setting"),
    }
    report["rotations"] = len(report["rotations"])
    out = reports_dir()
    markdown = stamped(to_markdown(report))  # stamped first: the JSON would make the checkout "-dirty"
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    (out / f"{args.name}.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
