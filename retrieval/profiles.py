"""Profiles: which encoders read which modality. A collection records its profile when first indexed.

`offline` runs anywhere with nothing downloaded (its models install from the package index);
`pretrained` is the real multimodal setup (OpenCLIP puts images and text in one space, CLAP audio and
text in another) and needs those weights on disk. A profile can also be a JSON file:
{"name": "...", "encoders": {"image": ["..."], "text": ["..."]}}.

A built-in profile has a version. A collection keeps searching with the version it was made with;
`python -m indexer SOURCE --collection NAME --migrate` moves it to the current one, re-encoding only the
modalities whose encoders changed.
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
    version: int = 1
    # Hears recordings for the audio fields whose encoder reads text (`retrieval.transcribe`)
    transcriber: str | None = None

    @property
    def fields(self) -> list[Field]:
        return [Field(m, e) for m in MODALITIES for e in self.encoders.get(m, ())]

    def to_dict(self) -> dict:
        out = {"name": self.name, "version": self.version, "encoders": {m: list(e) for m, e in self.encoders.items()}}
        return out | ({"transcriber": self.transcriber} if self.transcriber else {})

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        unknown = set(data.get("encoders", {})) - set(MODALITIES)
        if unknown:
            raise InvalidInputError(f"profile {data.get('name')!r} names unknown modalities: {sorted(unknown)}")
        for modality, encoders in data.get("encoders", {}).items():
            if len(set(encoders)) != len(encoders):
                # one field per (modality, encoder): a repeat would be one table counted twice in every fusion
                raise InvalidInputError(f"profile {data.get('name')!r} names an encoder twice for {modality}")
        encoders = {m: tuple(e) for m, e in data.get("encoders", {}).items()}
        transcriber = data.get("transcriber")
        return cls(str(data.get("name", "custom")), encoders, int(data.get("version", 1)), transcriber)

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


PROFILES: dict[str, Profile] = {
    # v2: audio through Google's speech_embedding instead of MFCC (cross-speaker P@10 0.46 -> 0.86:
    # docs/benchmarks/speech_encoder.md)
    "offline": Profile("offline", {"image": ("hog",), "audio": ("speech",), "text": ("sbert",)}, version=2),
    # offline v2 plus what each recording says (Whisper, then MiniLM), so a text query reaches recordings;
    # not the default yet: docs/defaults.md says what it costs late fusion's adaptive weights
    "offline-transcripts": Profile(
        "offline-transcripts",
        {"image": ("hog",), "audio": ("speech", "sbert"), "text": ("sbert",)},
        transcriber="whisper",
    ),
    "pretrained": Profile(
        "pretrained",
        {
            "image": (f"openclip:{CLIP}",),
            "audio": (f"clap:{CLAP}",),
            "text": (f"openclip:{CLIP}", f"clap:{CLAP}", "sbert"),
        },
    ),
}


# Earlier versions of the built-in profiles: collections made with them keep searching, and can be moved.
PAST_PROFILES: dict[tuple[str, int], Profile] = {
    ("offline", 1): Profile("offline", {"image": ("hog",), "audio": ("mfcc",), "text": ("sbert",)}),
}


def newer_profile(profile: Profile) -> Profile | None:
    """The current version of the built-in profile that `profile` is an earlier version of, if it is one."""
    past = PAST_PROFILES.get((profile.name, profile.version))
    current = PROFILES.get(profile.name)
    if past is None or current is None or past.encoders != profile.encoders:
        return None
    return current


def migration_hint(profile: Profile, collection: str) -> str | None:
    """One line saying that (and how) a collection made with an earlier built-in profile can be moved."""
    newer = newer_profile(profile)
    if newer is None:
        return None
    changed = [m for m in MODALITIES if profile.encoders.get(m) != newer.encoders.get(m)]
    return (
        f"collection {collection!r} was made with profile {profile.label}; the current one is {newer.label}. "
        f"`python -m indexer SOURCE --collection {collection} --migrate` moves it, re-encoding only its "
        f"{' and '.join(changed)}; until then it searches as before."
    )


def load_profile(name_or_path: str | Path) -> Profile:
    if str(name_or_path) in PROFILES:
        return PROFILES[str(name_or_path)]
    path = Path(name_or_path)
    if not path.is_file():
        raise InvalidInputError(f"unknown profile {name_or_path!r}: use one of {sorted(PROFILES)} or a JSON file")
    return Profile.from_dict(json.loads(path.read_text()))
