"""A query from the command line, each kind in a fresh process: what a person waits for `retrieval search`.

Runs `python -m retrieval search --db URL ...` on the demo collection (the offline profile) for each query
kind, RUNS times each, and reports the median wall time and the largest peak memory (from /usr/bin/time,
where it is installed). The pretrained profile's cold start is bounded below by importing what its
encoders need (torch, open_clip, transformers): measured the same way, as a floor. Goal: ≤ 2 s a query.

    .venv/bin/python bench/cli_query.py [--db sqlite:///data/demo.db]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, write_report

from indexer.demo import datasets_dir

RUNS = 5
FLOOR = "import torch, open_clip, transformers"


def kinds() -> dict[str, list[str]]:
    """The query of each kind: a seven, from the datasets the demo was built from (DIGITS_DATASETS moves them)."""
    root = datasets_dir()
    image = str(min((root / "mnist" / "images").glob("*_7.png")))
    audio = str(min((root / "fsdd" / "recordings").glob("7_*.wav")))
    return {
        "text": ["--text", "seven"],
        "image": ["--image", image],
        "audio": ["--audio", audio],
        "image+audio+text": ["--image", image, "--audio", audio, "--text", "seven"],
    }


def timed(command: list[str]) -> tuple[float, float | None]:
    """Wall seconds and peak resident MB of one fresh process."""
    meter = shutil.which("time") and Path("/usr/bin/time").exists()
    wrapped = ["/usr/bin/time", "-f", "%M", *command] if meter else command
    started = time.perf_counter()
    done = subprocess.run(wrapped, capture_output=True, text=True, check=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    return seconds, (int(done.stderr.strip().splitlines()[-1]) / 1024 if meter else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:///data/demo.db")
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs of each kind, after one warm-up")
    args = parser.parse_args()
    search = [sys.executable, "-m", "retrieval", "search", "--db", args.db, "--k", "10"]
    commands = {kind: search + extra for kind, extra in kinds().items()}
    commands["pretrained profile floor (imports)"] = [sys.executable, "-c", FLOOR]
    rows = {}
    for kind, command in commands.items():
        timed(command)  # the page cache warm, as for a person's second query
        runs = [timed(command) for _ in range(args.runs)]
        memory = [mb for _, mb in runs if mb is not None]
        rows[kind] = {
            "median_s": statistics.median(s for s, _ in runs),
            "max_s": max(s for s, _ in runs),
            "peak_mb": max(memory) if memory else None,
        }
        print(kind, rows[kind], flush=True)
    lines = [
        "# A query from the command line, in a fresh process",
        "",
        f"`bench/cli_query.py --db {args.db}`: `retrieval search` on the demo (offline profile), each kind "
        f"{args.runs} times after one warm-up run; goal ≤ 2 s.",
        "",
        "| query | median s | slowest s | peak MB |",
        "|---|---|---|---|",
    ]
    for kind, row in rows.items():
        peak = f"{row['peak_mb']:.0f}" if row["peak_mb"] is not None else "–"
        lines.append(f"| {kind} | {row['median_s']:.2f} | {row['max_s']:.2f} | {peak} |")
    lines += [
        "",
        "A text query runs MiniLM through onnxruntime on an export made once at set-up",
        "(`python -m retrieval.encoders.sbert`), so it imports neither torch nor transformers. The pretrained",
        "profile's encoders need torch: its floor row is what importing them costs before any weights load.",
        "",
    ]
    write_report("cli_query", {"runs": args.runs, "db": args.db, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
