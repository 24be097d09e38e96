"""How well, and at what cost, does the bundled Whisper tiny.en hear the spoken digits?

Part 1 (settings, 200 clips: takes 0, 17, 33, 45, 49 of every digit and speaker): the share of clips whose
transcript contains the digit's word ("7" counts as "seven"), and seconds a clip on this machine, for:
8 kHz samples given as if 16 kHz (what reading FSDD without resampling does), 16 kHz greedy, 16 kHz beam 5,
beam 5 with faster-whisper's voice-activity filter, and greedy with it (the product's setting: as good as
beam search here and the cheapest, and the filter leaves a silent clip without words instead of the
"Thank you." Whisper writes for silence). No prompt names the words.

Part 2 (every FSDD clip, the product's setting): the same share per speaker, and the transcripts written to
indexer/digits.transcripts.jsonl, keyed by each file's sha256 and the model, which the demo loads so that
neither it nor CI pays for transcription again.

    .venv/bin/python bench/transcription.py [--skip-settings]     # ~20 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from common import write_report

from indexer.demo import datasets_dir
from indexer.transcripts import DIGITS_TRANSCRIPTS
from retrieval.media import Waveform, load_audio
from retrieval.transcribe import BEAM_SIZE, SAMPLE_RATE, Transcriber, searchable_text

OUT = DIGITS_TRANSCRIPTS
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def heard_right(text: str, digit: int) -> bool:
    return WORDS[digit] in re.findall(r"[a-z]+", searchable_text(text).lower())


def settings_part(hearing: Transcriber, paths: list[Path]) -> list[str]:
    model = hearing.model
    rows = ["| setting | digit word heard | seconds a clip |", "|---|---|---|"]
    variants = [
        ("8 kHz samples read as 16 kHz, greedy", 8000, {"beam_size": 1}),
        ("16 kHz, greedy", SAMPLE_RATE, {"beam_size": 1}),
        ("16 kHz, beam 5", SAMPLE_RATE, {"beam_size": 5}),
        ("16 kHz, beam 5, voice-activity filter", SAMPLE_RATE, {"beam_size": 5, "vad_filter": True}),
        (f"16 kHz, beam {BEAM_SIZE}, voice-activity filter (the product)", SAMPLE_RATE, None),
    ]
    for label, rate, options in variants:
        started, right = time.perf_counter(), 0
        for path in paths:
            samples = load_audio(path, rate).samples
            digit = int(path.name[0])
            if options is None:
                text = hearing.transcribe(Waveform(samples, SAMPLE_RATE)).text
            else:
                segments, _ = model.transcribe(samples, language="en", condition_on_previous_text=False, **options)
                text = " ".join(s.text for s in segments)
            right += heard_right(text, digit)
        seconds = (time.perf_counter() - started) / len(paths)
        rows.append(f"| {label} | {right / len(paths):.3f} | {seconds:.2f} |")
        print(rows[-1], flush=True)
    return rows


def silence_part(hearing: Transcriber) -> list[str]:
    """What each setting writes for clips without words: a quiet room (-60 dBFS hiss and mains hum) and
    white noise, 1 s each, as the fusion benchmark's useless query inputs."""
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    clips = {
        "quiet room": (1e-3 * rng.standard_normal(SAMPLE_RATE) + 5e-4 * np.sin(2 * np.pi * 50 * t)),
        "white noise": 0.1 * rng.standard_normal(SAMPLE_RATE),
    }
    rows = ["| clip | 16 kHz, greedy, no filter | the product |", "|---|---|---|"]
    for name, samples in clips.items():
        samples = samples.astype(np.float32)
        segments, _ = hearing.model.transcribe(samples, language="en", beam_size=1, condition_on_previous_text=False)
        plain = " ".join(s.text.strip() for s in segments)
        rows.append(f"| {name} | {plain!r} | {hearing.transcribe(Waveform(samples, SAMPLE_RATE)).text!r} |")
    return rows


def every_clip(hearing: Transcriber, paths: list[Path], out: Path = OUT) -> tuple[list[str], float]:
    started = time.perf_counter()
    right: dict[str, list[bool]] = {}
    lines = []
    for n, path in enumerate(paths, start=1):
        data = path.read_bytes()
        heard = hearing.transcribe(load_audio(data, SAMPLE_RATE))
        digit, speaker, _ = path.stem.split("_")
        right.setdefault(speaker, []).append(heard_right(heard.text, int(digit)))
        record = {"sha256": hashlib.sha256(data).hexdigest(), "text": heard.text, "language": heard.language}
        lines.append(json.dumps(record | {"confidence": heard.confidence, "model": heard.model}, ensure_ascii=False))
        if n % 200 == 0:
            print(f"{n}/{len(paths)}", file=sys.stderr, flush=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seconds = (time.perf_counter() - started) / len(paths)
    rows = ["| speaker | digit word heard (500 clips) |", "|---|---|"]
    rows += [f"| {speaker} | {np.mean(flags):.3f} |" for speaker, flags in sorted(right.items())]
    rows.append(f"| all | {np.mean([f for flags in right.values() for f in flags]):.3f} |")
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-settings", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT, help="the transcripts written (default: the demo's own)")
    parser.add_argument("--limit", type=int, help="only the first N recordings (a smoke run)")
    args = parser.parse_args()
    paths = sorted((datasets_dir() / "fsdd" / "recordings").glob("*.wav"))[: args.limit]
    hearing = Transcriber()
    markdown = ["# Transcribing the spoken digits (Whisper tiny.en, bundled, int8 on the CPU)", ""]
    report: dict = {"model": hearing.transcribe(load_audio(paths[0], SAMPLE_RATE)).model}
    if not args.skip_settings:
        subset = [p for p in paths if int(p.stem.split("_")[2]) in (0, 17, 33, 45, 49)]
        report["settings"] = settings_part(hearing, subset)
        report["silence"] = silence_part(hearing)
        markdown += ["## Settings (200 clips)", "", *report["settings"], "", "## Clips without words", ""]
        markdown += [*report["silence"], ""]
    rows, seconds = every_clip(hearing, paths, args.out)
    report["every_clip"], report["seconds_a_clip"] = rows, seconds
    markdown += [f"## Every clip, the product's setting ({seconds:.2f} s a clip)", "", *rows, ""]
    write_report("transcription", report, "\n".join(markdown))


if __name__ == "__main__":
    main()
