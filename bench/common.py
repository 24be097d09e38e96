"""What the benchmark scripts share: synthetic collections, timing, and JSON + markdown reports."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from importlib import metadata
from pathlib import Path

import numpy as np

from retrieval.fusion.base import FusionStrategy
from retrieval.profiles import Field
from retrieval.space import EncodedQuery, VectorSpace
from storage import VectorStorage

ROOT = Path(__file__).resolve().parents[1]  # the checkout: reports go to ROOT / "docs" / "benchmarks"

FIELDS = [Field("image", "enc-image"), Field("audio", "enc-audio"), Field("text", "enc-text")]


def machine() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "faiss": version("faiss", "faiss-cpu"),
        "torch": version("torch", "torch"),
        "numpy": np.__version__,
    }


def version(module: str, distribution: str) -> str:
    """A library's version without importing it (torch costs ~4 s of CPU to import, a tiny run ~1 s)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return str(loaded.__version__)
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def clustered(n: int, dim: int, seed: int, clusters: int = 200, spread: float = 0.35) -> np.ndarray:
    """Unit vectors around `clusters` centres: media embeddings cluster; uniform noise is no model of them."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic_space(folder: Path, n: int, dim: int = 512, missing: float = 0.2, seed: int = 0) -> VectorSpace:
    """n items, three fields of `dim`; each field misses `missing` of the items."""
    storage = VectorStorage(folder)
    rng = np.random.default_rng(seed)
    for i, f in enumerate(FIELDS):
        keep = rng.random(n) >= missing
        table = storage.load(f.key, dim=dim, encoder=f.encoder)
        ids = np.arange(1, n + 1)[keep]
        table.upsert(ids, clustered(len(ids), dim, seed + i))
        storage.save(f.key, table)
    return VectorSpace(FIELDS, storage, generation=1)


def memory() -> dict[str, float]:
    """This process's peak resident set and its resident file pages and anonymous memory now, in MiB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mib = {key: int(status[key].split()[0]) / 1024 for key in ("VmHWM", "VmRSS", "RssAnon", "RssFile")}
    return {"peak_rss_mb": round(mib["VmHWM"]), **{f"{k.lower()}_mb": round(v) for k, v in mib.items() if k != "VmHWM"}}


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(1000 * statistics.median(ordered), 3),
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 3),
    }


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def running_top(
    best_ids: np.ndarray, best: np.ndarray, ids: np.ndarray, scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """An exact scan's running top k per query: the best so far merged with one chunk's `scores` (queries x
    the chunk's `ids`), best first (a stable sort: ties keep the earlier id)."""
    merged_ids = np.concatenate([best_ids, np.broadcast_to(ids, scores.shape)], axis=1)
    merged = np.concatenate([best, scores], axis=1)
    top = np.argsort(-merged, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(merged_ids, top, 1), np.take_along_axis(merged, top, 1)


def stamp() -> dict[str, str]:
    """What wrote a result: the checkout's commit (`-dirty` with changes not yet committed, as when a table is
    committed with the change it measures), the day and the command."""
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    # settings passed in the environment (BENCH_TRANSCRIPTS=1, ...) are part of the command that wrote it
    settings = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("BENCH_") and k != "BENCH_REPORTS"]
    command = " ".join([*settings, "bench/" + Path(sys.argv[0]).name, *sys.argv[1:]])
    return {"commit": commit or "unknown", "date": date.today().isoformat(), "command": command}


def reports_dir() -> Path:
    """Where results go: docs/benchmarks, or $BENCH_REPORTS (the smoke test's folder, so it never writes a page)."""
    return Path(os.environ.get("BENCH_REPORTS") or ROOT / "docs" / "benchmarks")


def stamped(markdown: str, s: dict[str, str] | None = None) -> str:
    """The page with a last line saying what wrote it (`stamp`): the commit, the day and the command."""
    s = s or stamp()
    return f"{markdown.rstrip()}\n\nWritten by `{s['command']}` at commit {s['commit']}, {s['date']}.\n"


def write_report(name: str, report: dict, markdown: str) -> None:
    out = reports_dir()
    out.mkdir(parents=True, exist_ok=True)
    written = stamp()  # once, before either file changes the checkout (else the page read "-dirty")
    (out / f"{name}.json").write_text(json.dumps({"machine": machine(), "written": written, **report}, indent=2))
    (out / f"{name}.md").write_text(stamped(markdown, written))
    print(json.dumps(report, indent=2))
    print(markdown)


def alternating(
    strategy: FusionStrategy,
    queries: Sequence[EncodedQuery],
    truth: list[list[int]],
    settings: Mapping[str, Callable[[], VectorSpace]],
    passes: int,
) -> dict[str, str]:
    """Every query searched under each setting in turn (`settings[name]()` applies one and returns the space
    to search), the order rotating query by query, so that page-cache reclaim from outside the process hits
    all alike (separate runs on the development VM moved 2-5x). Recall@10 against `truth` (first pass) and
    p50 / p90 per pass, a line per setting."""
    names = list(settings)
    times: dict[tuple[int, str], list[float]] = {(p, name): [] for p in range(passes) for name in names}
    recall: dict[str, list[float]] = {name: [] for name in names}
    for p in range(passes):
        for n, (query, best) in enumerate(zip(queries, truth)):
            for j in range(len(names)):
                name = names[(j + n) % len(names)]
                space = settings[name]()
                started = time.perf_counter()
                found = [r.item_id for r in strategy.search(space, query, 10)]
                times[(p, name)].append(time.perf_counter() - started)
                if p == 0:
                    recall[name].append(len(set(found) & set(best)) / 10)
    lines = {}
    for name in names:
        per_pass = " ".join(
            f"pass {p}: p50 {1e3 * np.median(times[(p, name)]):.1f} p90 {1e3 * np.percentile(times[(p, name)], 90):.1f}"
            for p in range(passes)
        )
        lines[name] = f"recall@10 {np.mean(recall[name]):.3f}, {per_pass} ms"
    return lines
