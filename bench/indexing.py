"""Indexing throughput on the digits collection: end to end next to the encoders alone, same run.

    .venv/bin/python bench/indexing.py [--repeats 3]

End to end = read, hash, decode (worker threads), encode, write vectors and rows, build indexes, on a
fresh database each time. Encoder-only = the same already-decoded assets through the same encoders.
Target: end-to-end >= 0.8 x encoder-only. Medians of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import write_report

from indexer.demo import build_digits_manifest, datasets_dir  # noqa: E402
from indexer.pipeline import Indexer  # noqa: E402
from indexer.sources import scan  # noqa: E402
from indexer.work import WorkItem, decode_asset  # noqa: E402
from retrieval.encoders import create_encoder  # noqa: E402
from retrieval.profiles import PROFILES  # noqa: E402


def encoder_only(manifest: Path) -> tuple[float, int]:
    profile = PROFILES["offline"]
    encoders = {m: [create_encoder(n) for n in names] for m, names in profile.encoders.items()}
    decoded: dict[str, list] = {"image": [], "audio": [], "text": []}
    for item in scan(manifest).items:
        for modality, spec in item.assets.items():
            value = decode_asset(WorkItem(0, spec, None), encoders[modality][0].sample_rate).value
            if value is not None:
                decoded[modality].append(value)
    started = time.perf_counter()
    for modality, values in decoded.items():
        for encoder in encoders[modality]:
            encoder.encode(modality, values, batch_size=64)
    return time.perf_counter() - started, sum(len(v) for v in decoded.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        manifest = build_digits_manifest(Path(folder) / "digits")
        runs, stages = [], []
        for n in range(args.repeats):
            indexer = Indexer(f"sqlite:///{folder}/run{n}.db")
            indexer._load_encoders()  # models loaded before the clock starts, as encoder-only has them
            summary = indexer.run(manifest, roots=[datasets_dir()])
            runs.append(summary.seconds - summary.stages.get("load encoders", 0.0))
            stages.append(summary.stages)
        assets = summary.encoded
        encode_runs = [encoder_only(manifest) for _ in range(args.repeats)]
    e2e = statistics.median(runs)
    enc = statistics.median(t for t, _ in encode_runs)
    stage_median = {k: round(statistics.median(s[k] for s in stages), 2) for k in stages[0]}
    report = {"assets": assets, "end_to_end_s": round(e2e, 2), "encoder_only_s": round(enc, 2),
              "end_to_end_assets_per_s": round(assets / e2e, 1), "encoder_only_assets_per_s": round(assets / enc, 1),
              "ratio": round(enc / e2e, 3), "stages_s": stage_median, "repeats": args.repeats}
    lines = ["# Indexing throughput (digits collection, offline profile)", "",
             f"{assets} assets (2,000 items). Medians of {args.repeats} runs on fresh databases; models loaded "
             "before timing.", "",
             "| measure | seconds | assets/s |", "|---|---|---|",
             f"| end to end | {report['end_to_end_s']} | {report['end_to_end_assets_per_s']} |",
             f"| encoders only | {report['encoder_only_s']} | {report['encoder_only_assets_per_s']} |",
             f"| ratio (target >= 0.8) | {report['ratio']} | |", "",
             "Stages: " + ", ".join(f"{k} {v} s" for k, v in stage_median.items()) + ".", ""]
    write_report("indexing", report, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
