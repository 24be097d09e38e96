"""Peak memory and time of indexing a manifest whose rows all name one file (issue 35, item 7).

Each size runs `python -m indexer MANIFEST` in a fresh child process (an image-only profile, so the time is
the indexer's own, not a model's) and reports the child's peak resident set: what a manifest of that many
rows costs, whatever its one file holds. Two sizes show how memory grows with the row count.

    .venv/bin/python bench/manifest_memory.py [--rows 1000 100000] [--file IMAGE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from indexer.demo import datasets_dir

ROOT = Path(__file__).resolve().parents[1]
PROFILE = {"name": "image-only", "encoders": {"image": ["hog"]}}


def measure(rows: int, image: Path, work: Path) -> dict[str, float]:
    """Index a fresh manifest of `rows` rows naming `image` in a child process: seconds and peak MiB."""
    folder = work / f"rows-{rows}"
    folder.mkdir()
    manifest = folder / "items.jsonl"
    with manifest.open("w") as out:
        for n in range(rows):
            out.write(json.dumps({"id": f"row-{n:07d}", "image": str(image), "n": n}) + "\n")
    (folder / "profile.json").write_text(json.dumps(PROFILE))
    command = [sys.executable, "-c", CHILD, str(manifest), f"sqlite:///{folder}/c.db", str(folder / "profile.json")]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    peak_kib, items = (int(v) for v in done.stdout.splitlines()[-1].split())
    return {"rows": rows, "items": items, "seconds": round(seconds, 1), "peak_mib": round(peak_kib / 1024, 1)}


# The child indexes and prints its own peak RSS (KiB) and the items indexed.
CHILD = """
import resource, sys
from indexer.__main__ import main
code = main([sys.argv[1], "--db", sys.argv[2], "--profile", sys.argv[3], "--quiet"])
from sqlalchemy import create_engine, text
with create_engine(sys.argv[2]).connect() as conn:
    items = conn.execute(text("SELECT count(*) FROM items")).scalar()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, items)
sys.exit(code)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000, 100_000])
    default_image = datasets_dir() / "mnist" / "images"  # DIGITS_DATASETS moves them, as for the demo
    parser.add_argument("--file", type=Path, help="the one file every row names (default: an MNIST image)")
    args = parser.parse_args()
    image = args.file or sorted(default_image.glob("*.png"))[0]
    with tempfile.TemporaryDirectory() as work:
        results = [measure(rows, image.resolve(), Path(work)) for rows in args.rows]
    for r in results:
        print(f"{r['rows']:>9,} rows: {r['items']:>9,} items   {r['seconds']:>7.1f} s   peak {r['peak_mib']:>8.1f} MiB")
    if len(results) > 1:
        a, b = results[0], results[-1]
        per_row = (b["peak_mib"] - a["peak_mib"]) * 1024 / (b["rows"] - a["rows"])
        print(f"growth: {per_row:.2f} KiB of peak memory per row")


if __name__ == "__main__":
    main()
