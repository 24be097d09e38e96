"""What a run reports: its summary, its progress (stage, done, total) and the time each stage took."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from indexer.sources import Problem

ProgressFn = Callable[[str, int, int], None]
"""(stage, done, total): the CLI drives tqdm with it, the UI st.progress."""


@dataclass
class IndexSummary:
    items: int = 0
    assets: dict[str, int] = field(default_factory=dict)
    encoded: int = 0
    unchanged: int = 0
    changed: int = 0
    removed: int = 0
    missing: int = 0
    unseen: int = 0  # items kept because their folder (or a manifest row) could not be read
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in vars(self).items() if k != "problems"},
            "problems": [vars(p) for p in self.problems],
        }


class ChunkProgress:
    """Counts carried from chunk to chunk, so that a source read in chunks shows one running count per stage."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress = progress
        self.before: dict[str, int] = {}
        self.current: dict[str, int] = {}

    def __bool__(self) -> bool:
        return self.progress is not None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.current[stage] = total
            offset = self.before.get(stage, 0)
            self.progress(stage, offset + done, offset + total)

    def next_chunk(self) -> None:
        for stage, total in self.current.items():
            self.before[stage] = self.before.get(stage, 0) + total
        self.current = {}


class Stopwatch:
    """Per-stage wall time, so the summary (and the benchmarks) can show where time goes."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into

    def __call__(self, name: str) -> Stopwatch:
        self.name = name
        return self

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.into[self.name] = self.into.get(self.name, 0.0) + time.perf_counter() - self.started
