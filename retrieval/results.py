"""What a search returns, and what it is asked with: plain dataclasses shared by the API, CLIs and UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from retrieval.media import MODALITIES, MediaInput, Modality


@dataclass
class Hit:
    rank: int
    item_id: int
    key: str
    score: float
    contributions: dict[str, float]
    metadata: dict[str, Any]
    assets: dict[str, str]
    text: str | None = None
    # what the item's recording says, when the collection transcribes: text, language, confidence, model
    transcript: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "item_id": self.item_id,
            "key": self.key,
            "score": round(self.score, 6),
            "contributions": {m: round(v, 6) for m, v in self.contributions.items()},
            "metadata": self.metadata,
            "assets": self.assets,
            "text": self.text,
            "transcript": self.transcript,
        }


@dataclass
class SearchResult:
    strategy: str
    hits: list[Hit]
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # set instead of raising when search_many(..., keep_going=True)


@dataclass
class QueryInput:
    """What the user asked with, before decoding; `describe()` is what JSON output shows."""

    text: str | None = None
    image: MediaInput | None = None
    audio: MediaInput | None = None
    weights: dict[str, float] = field(default_factory=dict)
    negative_text: str | None = None
    negative_image: MediaInput | None = None
    negative_audio: MediaInput | None = None
    negative_weight: float = 1.0
    transcribe: bool = False  # also search by what the audio clip says (the collection's transcript fields)

    def present(self) -> list[Modality]:
        return [m for m in MODALITIES if getattr(self, m) is not None]

    def describe(self) -> dict[str, Any]:
        def show(value: Any) -> Any:
            return value if isinstance(value, str) or value is None else f"<{type(value).__name__}>"

        out = {
            m: show(str(v) if isinstance(v, Path) else v)
            for m, v in (("text", self.text), ("image", self.image), ("audio", self.audio))
        }
        out["weights"] = self.weights
        if self.transcribe:
            out["transcribe"] = True
        negatives = {
            m: show(str(v) if isinstance(v, Path) else v)
            for m, v in (("text", self.negative_text), ("image", self.negative_image), ("audio", self.negative_audio))
            if v is not None
        }
        if negatives:
            out["negative"] = negatives
        return out


@dataclass
class Method:
    """A named way to search: a strategy, its parameters and query weights (a saved preset is one)."""

    label: str
    strategy: str
    params: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckpointInfo:
    """Which trained model answers for a learned method: its file, when and on how many items it was trained,
    its last training loss and the encoders it expects (from the collection's checkpoint records)."""

    strategy: str
    file: str
    trained_at: datetime
    items: int
    final_loss: float | None
    encoders: tuple[str, ...]
    where: tuple[tuple[str, str], ...] = ()  # the metadata filter of the items it learned from; () = every item

    @property
    def name(self) -> str:
        return Path(self.file).name
