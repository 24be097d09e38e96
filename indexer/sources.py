"""Sources: turn a folder or a manifest into item specs, and say why anything was left out.

A folder groups files into items by shared stem (`cat_01.jpg` + `cat_01.wav` + `cat_01.txt`), typed
by content first and extension second. A manifest is CSV or JSONL with `id`, `image`, `audio`, `text`
and any other columns kept as metadata; relative paths resolve against the manifest's folder, and a
`text` value that is not an existing file is taken as the text itself.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval.media import MODALITIES, modality_from_extension, sniff_modality

MANIFEST_SUFFIXES = {".csv", ".jsonl"}
SNIFF_BYTES = 64


@dataclass
class AssetSpec:
    modality: str
    path: Path
    inline_text: str | None = None

    def sha256(self) -> str:
        """Content hash: what decides whether an asset must be re-encoded."""
        digest = hashlib.sha256()
        if self.inline_text is not None:
            digest.update(self.inline_text.encode("utf-8"))
        else:
            with open(self.path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    @property
    def display(self) -> str:
        return str(self.path)


@dataclass
class ItemSpec:
    key: str
    assets: dict[str, AssetSpec] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Problem:
    path: str
    reason: str


@dataclass
class Scan:
    items: list[ItemSpec]
    problems: list[Problem]
    root: Path


def scan(path: str | Path) -> Scan:
    """Read a folder or a manifest (.csv, .jsonl)."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return scan_manifest(path)
    if path.is_dir():
        return scan_folder(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder or manifest")
    raise ValueError(f"{path}: not a folder nor a manifest (.csv or .jsonl)")


def _classify(path: Path) -> tuple[str | None, str | None]:
    """(modality, None) or (None, reason): content decides, the extension breaks ties."""
    by_extension = modality_from_extension(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
    except OSError as exc:
        return (by_extension, None) if by_extension else (None, f"cannot read file ({exc.strerror or exc})")
    by_content = sniff_modality(head)
    if by_content in ("image", "audio"):
        return by_content, None
    if by_extension is not None:
        return by_extension, None  # content unrecognised or mismatched: the decoder records why
    if by_content == "text" and not path.suffix:
        return "text", None
    return None, ("unsupported file type" if head else "empty file of unknown type")


def scan_folder(root: Path) -> Scan:
    items: dict[str, ItemSpec] = {}
    problems: list[Problem] = []
    for directory, dirnames, filenames in os.walk(
        root,
        followlinks=False,
        onerror=lambda e: problems.append(Problem(str(e.filename), f"cannot list folder ({e.strerror})")),
    ):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(directory) / name
            if name.startswith(".") or path.suffix.lower() in MANIFEST_SUFFIXES:
                continue
            if path.is_symlink() and not path.exists():
                problems.append(Problem(str(path), "broken or looping symbolic link"))
                continue
            modality, reason = _classify(path)
            if modality is None:
                problems.append(Problem(str(path), reason or "unsupported file type"))
                continue
            key = path.relative_to(root).with_suffix("").as_posix()
            item = items.setdefault(key, ItemSpec(key))
            if modality in item.assets:
                problems.append(
                    Problem(
                        str(path),
                        f"item {key!r} already has a {modality} ({item.assets[modality].path.name}); one per modality",
                    )
                )
                continue
            item.assets[modality] = AssetSpec(modality, path)
    return Scan(sorted(items.values(), key=lambda i: i.key), problems, root)


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        if path.suffix.lower() == ".csv":
            return list(csv.DictReader(handle))
        rows = []
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    rows.append({"__error__": f"line {number}: invalid JSON ({exc.msg})"})
        return rows


def scan_manifest(path: Path) -> Scan:
    base = path.parent
    items: list[ItemSpec] = []
    problems: list[Problem] = []
    seen: set[str] = set()
    for number, row in enumerate(_manifest_rows(path), start=1):
        where = f"{path}:{number}"
        if "__error__" in row or not isinstance(row, dict):
            problems.append(Problem(where, row.get("__error__", "row is not an object")))
            continue
        key = str(row.get("id") or "").strip()
        if not key:
            problems.append(Problem(where, "row has no id"))
            continue
        if key in seen:
            problems.append(Problem(where, f"duplicate id {key!r}"))
            continue
        seen.add(key)
        item = ItemSpec(
            key, metadata={k: v for k, v in row.items() if k not in ("id", *MODALITIES) and v not in (None, "")}
        )
        for modality in MODALITIES:
            value = row.get(modality)
            if value in (None, ""):
                continue
            target = Path(os.path.normpath(base / str(value)))  # links are followed (and checked) by confine()
            if modality == "text" and not target.is_file():
                item.assets["text"] = AssetSpec("text", Path(f"{path}#{key}"), inline_text=str(value))
            else:
                item.assets[modality] = AssetSpec(modality, target)
        if not item.assets:
            problems.append(Problem(where, f"item {key!r} names no image, audio or text"))
            continue
        items.append(item)
    return Scan(items, problems, base)


# front ends add how to allow a folder (the CLI's --allow-root, the UI's RETRIEVAL_ROOTS)
OUTSIDE = "outside the collection's folder and the allowed folders; refused"


def confine(found: Scan, extra_roots: list[Path] | None = None) -> Scan:
    """Refuse assets whose real path (links followed) lies outside the source's folder and `extra_roots`:
    a manifest saying `../../etc/passwd`, or a link pointing out of the collection, is not read."""
    roots = [str(found.root.resolve()), *(str(Path(r).resolve()) for r in extra_roots or [])]
    inside = tuple(root.rstrip(os.sep) + os.sep for root in roots)  # string prefixes: Path.parents is slow
    problems = list(found.problems)
    items = []
    for item in found.items:
        for modality, asset in list(item.assets.items()):
            if asset.inline_text is not None:
                continue
            try:
                real = asset.path.resolve()
            except (RuntimeError, OSError):
                problems.append(Problem(str(asset.path), "symbolic link loop"))
                del item.assets[modality]
                continue
            if str(real) not in roots and not str(real).startswith(inside):
                problems.append(Problem(str(asset.path), OUTSIDE))
                del item.assets[modality]
        if item.assets:
            items.append(item)
    return Scan(items, problems, found.root)
