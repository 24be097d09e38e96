"""Profiles: which encoders read which modality. A collection records its profile when first indexed.

`offline` runs anywhere with nothing downloaded; `pretrained` is the real multimodal setup (OpenCLIP
puts images and text in one space, CLAP audio and text in another) and needs those weights on disk.
A profile can also be a JSON file: {"name": "...", "encoders": {"image": ["..."], "text": ["..."]}}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.encoders.registry import DEFAULT_CLAP as CLAP
from retrieval.encoders.registry import DEFAULT_CLIP as CLIP
from retrieval.errors import InvalidInputError
from retrieval.media import MODALITIES, Modality
from storage.vectors import field_key


@dataclass(frozen=True)
class Field:
    """The vectors one encoder makes of one modality, e.g. images through `hog`."""

    modality: Modality
    encoder: str

    @property
    def key(self) -> str:
        return field_key(self.modality, self.encoder)


@dataclass(frozen=True)
class Profile:
    name: str
    encoders: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def fields(self) -> list[Field]:
        return [Field(m, e) for m in MODALITIES for e in self.encoders.get(m, ())]

    def to_dict(self) -> dict:
        return {"name": self.name, "encoders": {m: list(e) for m, e in self.encoders.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        unknown = set(data.get("encoders", {})) - set(MODALITIES)
        if unknown:
            raise InvalidInputError(f"profile {data.get('name')!r} names unknown modalities: {sorted(unknown)}")
        for modality, encoders in data.get("encoders", {}).items():
            if len(set(encoders)) != len(encoders):
                # one field per (modality, encoder): a repeat would be one table counted twice in every fusion
                raise InvalidInputError(f"profile {data.get('name')!r} names an encoder twice for {modality}")
        return cls(str(data.get("name", "custom")), {m: tuple(e) for m, e in data.get("encoders", {}).items()})


PROFILES: dict[str, Profile] = {
    "offline": Profile("offline", {"image": ("hog",), "audio": ("mfcc",), "text": ("sbert",)}),
    "pretrained": Profile(
        "pretrained",
        {
            "image": (f"openclip:{CLIP}",),
            "audio": (f"clap:{CLAP}",),
            "text": (f"openclip:{CLIP}", f"clap:{CLAP}", "sbert"),
        },
    ),
}


def load_profile(name_or_path: str | Path) -> Profile:
    if str(name_or_path) in PROFILES:
        return PROFILES[str(name_or_path)]
    path = Path(name_or_path)
    if not path.is_file():
        raise InvalidInputError(f"unknown profile {name_or_path!r}: use one of {sorted(PROFILES)} or a JSON file")
    return Profile.from_dict(json.loads(path.read_text()))
