"""Peak memory and time of indexing a manifest whose rows all name one file (issue 35, item 7).

Each size runs `python -m indexer MANIFEST` in a fresh child process (an image-only profile, so the time is
the indexer's own, not a model's) and reports the child's peak resident set: what a manifest of that many
rows costs, whatever its one file holds. Two sizes show how memory grows with the row count. Each size is
also run without building the indexes (`no-index`): what scanning, planning, encoding and writing hold. With
`--baseline TREE` (another checkout, e.g. `git archive BASE | tar -x -C TREE`), each size is measured on that
tree's code and then on this one's, alternating, in one run.

    .venv/bin/python bench/manifest_memory.py [--rows 1000 100000] [--file IMAGE] [--baseline TREE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from indexer.demo import datasets_dir

ROOT = Path(__file__).resolve().parents[1]
PROFILE = {"name": "image-only", "encoders": {"image": ["hog"]}}


def measure(rows: int, image: Path, work: Path, root: Path = ROOT, indexes: bool = True) -> dict[str, Any]:
    """Index a fresh manifest of `rows` rows naming `image` in a child process running the code of `root`
    (building the indexes or not): seconds and peak MiB."""
    folder = work / f"rows-{rows}-{root.name}-{indexes}"
    folder.mkdir()
    manifest = folder / "items.jsonl"
    with manifest.open("w") as out:
        for n in range(rows):
            out.write(json.dumps({"id": f"row-{n:07d}", "image": str(image), "n": n}) + "\n")
    (folder / "profile.json").write_text(json.dumps(PROFILE))
    url, profile = f"sqlite:///{folder}/c.db", str(folder / "profile.json")
    command = [sys.executable, "-c", CHILD, str(manifest), url, profile, "index" if indexes else "no-index"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    peak_kib, items = (int(v) for v in done.stdout.splitlines()[-1].split())
    tree = "this" if root == ROOT else "baseline"
    return {
        "tree": tree if indexes else f"{tree}, no-index",
        "rows": rows,
        "items": items,
        "seconds": round(seconds, 1),
        "peak_mib": round(peak_kib / 1024, 1),
    }


# The child indexes and prints its own peak RSS (KiB) and the items indexed.
CHILD = """
import resource, sys
from indexer import Indexer
from retrieval.profiles import load_profile
strategies = ("late", "early", "hybrid") if sys.argv[4] == "index" else ()
summary = Indexer(sys.argv[2], profile=load_profile(sys.argv[3]), strategies=strategies).run(sys.argv[1], confined=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, summary.items)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 100_000])
    default_image = datasets_dir() / "mnist" / "images"  # DIGITS_DATASETS moves them, as for the demo
    parser.add_argument("--file", type=Path, help="the one file every row names (default: an MNIST image)")
    parser.add_argument("--baseline", type=Path, help="another tree to measure, each size before this one's")
    args = parser.parse_args()
    image = args.file or sorted(default_image.glob("*.png"))[0]
    roots = [args.baseline.resolve(), ROOT] if args.baseline else [ROOT]
    with tempfile.TemporaryDirectory() as work:
        results = [
            measure(rows, image.resolve(), Path(work), root, indexes)
            for indexes in (False, True)
            for rows in args.rows
            for root in roots
        ]
    for r in results:
        print(
            f"{r['tree']:>18} {r['rows']:>9,} rows: {r['items']:>9,} items   {r['seconds']:>7.1f} s   "
            f"peak {r['peak_mib']:>8.1f} MiB"
        )
    if len(args.rows) > 1:
        for tree in dict.fromkeys(r["tree"] for r in results):
            mine = [r for r in results if r["tree"] == tree]
            a, b = mine[0], mine[-1]
            per_row = (b["peak_mib"] - a["peak_mib"]) * 1024 / (b["rows"] - a["rows"])
            print(f"{tree}: growth {per_row:.2f} KiB of peak memory per row")


if __name__ == "__main__":
    main()
