"""Sources: turn a folder or a manifest into item specs, and say why anything was left out.

A folder groups files into items by shared stem (`cat_01.jpg` + `cat_01.wav` + `cat_01.txt`), typed
by content first and extension second. A manifest is CSV or JSONL with `id`, `image`, `audio`, `text`
and any other columns kept as metadata; relative paths resolve against the manifest's folder, and a
`text` value that is not an existing file is taken as the text itself.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import errno
import hashlib
import itertools
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from retrieval.errors import InvalidInputError, NotFoundError
from retrieval.media import (
    MAX_TEXT_BYTES,
    MODALITIES,
    MediaError,
    is_within,
    modality_from_extension,
    open_regular,
    sniff_modality,
    special_file_kind,
)

MANIFEST_SUFFIXES = {".csv", ".jsonl"}
SNIFF_BYTES = 64
MAX_KEY_CHARS = 500  # the items table keeps keys of up to 500 characters
_EXTRA = "\x00extra"  # DictReader's key for fields beyond the header (no real column has a NUL in it)


@dataclass
class AssetSpec:
    modality: str
    path: Path
    inline_text: str | None = None
    # the folders it may be read from (set by `confine`): checked again on the opened file at every read
    within: tuple[str, ...] | None = None

    def sha256(self) -> str:
        """Content hash: what decides whether an asset must be re-encoded. A FIFO or device raises
        `MediaError` instead of blocking."""
        digest = hashlib.sha256()
        if self.inline_text is not None:
            digest.update(self.inline_text.encode("utf-8"))
        else:
            try:
                handle = open_regular(self.path, self.within)
            except FileNotFoundError:  # the decoder's wording: "file not found"
                raise MediaError(self.path, "file not found") from None
            with handle:
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
    """Items found, problems met, and what could not be seen: `unseen` keys (prefixes ending in "/" for a
    folder, "" for everything) name items that may exist but were not listed; `--prune` must keep them."""

    items: list[ItemSpec]
    problems: list[Problem]
    root: Path
    unseen: list[str] = field(default_factory=list)

    def may_hide(self, key: str) -> bool:
        """Whether the item `key` could exist without this scan having seen it."""
        return any(key == u or ((u.endswith("/") or u == "") and key.startswith(u)) for u in self.unseen)


@dataclass
class Stream:
    """A source read as it goes: `items` yields each item once, and `listing` (a `Scan` without items) holds
    the problems met and what could not be seen, complete once `items` is exhausted. A manifest is read row
    by row, never held whole."""

    items: Iterator[ItemSpec]
    listing: Scan


def scan(path: str | Path) -> Scan:
    """Read a folder or a manifest (.csv, .jsonl)."""
    found = stream(path)
    return dataclasses.replace(found.listing, items=list(found.items))


def stream(path: str | Path) -> Stream:
    """A folder or a manifest (.csv, .jsonl), item by item: a manifest row by row, a folder listed whole."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        return stream_manifest(path)
    if path.is_dir():
        found = scan_folder(path)
        return Stream(iter(found.items), dataclasses.replace(found, items=[]))
    if not path.exists():
        raise NotFoundError(f"{path}: no such folder or manifest")
    raise InvalidInputError(f"{path}: not a folder nor a manifest (.csv or .jsonl)")


def _classify(path: Path) -> tuple[str | None, str | None]:
    """(modality, None) or (None, reason): content decides, the extension breaks ties."""
    by_extension = modality_from_extension(path)
    try:
        with open_regular(path) as handle:
            head = handle.read(SNIFF_BYTES)
    except MediaError as exc:  # a special file that appeared since the stat
        return None, exc.reason
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


def _key_problem(key: str) -> str | None:
    """Why `key` cannot name an item (the database keeps up to 500 characters of valid Unicode)."""
    if len(key) > MAX_KEY_CHARS:
        return f"item id is {len(key)} characters, over the limit of {MAX_KEY_CHARS}"
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8 (undecodable bytes)"
    if "\x00" in key:
        return "item id contains a NUL character"
    return None


def scan_folder(root: Path) -> Scan:
    items: dict[str, ItemSpec] = {}
    problems: list[Problem] = []
    unseen: list[str] = []

    def cannot_list(error: OSError) -> None:
        where = Path(str(error.filename))
        problems.append(Problem(str(where), f"cannot list folder ({error.strerror}); its items are kept as they were"))
        relative = where.relative_to(root).as_posix() if where != root and where.is_relative_to(root) else ""
        unseen.append("" if relative in ("", ".") else relative + "/")

    for directory, dirnames, filenames in os.walk(root, followlinks=False, onerror=cannot_list):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(directory) / name
            if name.startswith(".") or path.suffix.lower() in MANIFEST_SUFFIXES:
                continue
            key = path.relative_to(root).with_suffix("").as_posix()
            modality, reason = _file_modality(path, key)
            if modality is None:
                problems.append(Problem(_printable(path), reason or "unsupported file type"))
                if reason and reason.startswith(("cannot read", "permission denied")):
                    unseen.append(key)  # it may be an item's file: pruning must not take the item
                continue
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
    return Scan(sorted(items.values(), key=lambda i: i.key), problems, root, unseen)


def _file_modality(path: Path, key: str) -> tuple[str | None, str | None]:
    """(modality, None), or (None, why the file is skipped): special files are never opened."""
    bad_key = _key_problem(key)
    if bad_key:
        return None, bad_key
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None, "broken or looping symbolic link" if path.is_symlink() else "file vanished while scanning"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "broken or looping symbolic link"
        return None, f"cannot read file ({exc.strerror or exc})"
    kind = special_file_kind(mode)
    if kind is not None:
        return None, f"not a regular file ({kind}); skipped"
    return _classify(path)


def _printable(path: Path) -> str:
    """A path as text the database can keep (undecodable bytes shown as \\x.. escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _csv_rows(handle: TextIO) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    csv.field_size_limit(max(csv.field_size_limit(), MAX_TEXT_BYTES))  # a long inline text is still a row
    reader = csv.DictReader(handle, restkey=_EXTRA)
    number = 0
    while True:
        number += 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, None, f"unreadable CSV row ({exc})"
            continue
        extra = row.pop(_EXTRA, None)
        if extra:
            yield (
                number,
                None,
                (f"row has {len(extra)} more field(s) than the header; quote values that contain commas"),
            )
            continue
        yield number, row, None


def _jsonl_rows(handle: TextIO) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, f"invalid JSON ({exc.msg})"
            continue
        except RecursionError:
            yield number, None, "invalid JSON (nested too deeply)"
            continue
        if not isinstance(row, dict):
            yield number, None, f"a row must be a JSON object, not {_json_kind(row)}"
            continue
        yield number, row, None


def _json_kind(value: object) -> str:
    return {type(None): "null", bool: "true/false", list: "a list", str: "a string"}.get(type(value), "a number")


def _manifest_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(row or line number, row, None) or (number, None, why the row is unusable), lazily."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            yield from (_csv_rows(handle) if path.suffix.lower() == ".csv" else _jsonl_rows(handle))
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None


def _row_key(row: dict[str, Any]) -> tuple[str | None, str | None]:
    """(key, None) or (None, why the row's id is unusable); 0 is an id like any other."""
    value = row.get("id")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "row has no id"
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, f"id must be a string or a whole number, not {_json_kind(value)}"
    key = str(value).strip()
    problem = _key_problem(key)
    return (None, problem) if problem else (key, None)


def scan_manifest(path: Path) -> Scan:
    found = stream_manifest(path)
    return dataclasses.replace(found.listing, items=list(found.items))


def stream_manifest(path: Path) -> Stream:
    """A manifest's items, read a row at a time. Its encoding is checked first, so that a bad byte far down
    the file is refused before any row is used, as it was when the whole file was read at once."""
    _check_utf8(path)
    listing = Scan([], [], path.parent)
    return Stream(_manifest_items(path, listing.problems, listing.unseen), listing)


def _check_utf8(path: Path) -> None:
    """Refuse a manifest that is not UTF-8, naming the offset of its first bad byte; reads 1 MiB at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    end = base = 0  # the bytes fed so far; the file offset where the decoder's input (held bytes first) starts
    try:
        with open(path, "rb") as handle:
            for block in itertools.chain(iter(lambda: handle.read(1 << 20), b""), [b""]):
                base = end - len(decoder.getstate()[0])
                decoder.decode(block, final=not block)
                end += len(block)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text (invalid byte at offset {base + exc.start})") from None


def _manifest_items(path: Path, problems: list[Problem], unseen: list[str]) -> Iterator[ItemSpec]:
    seen = KeySet()
    for number, row, error in _manifest_rows(path):
        where = f"{path}:{number}"
        key, why = _row_key(row) if row is not None else (None, error)
        if key is None or row is None:
            problems.append(Problem(where, why or "unusable row"))
            if row is None:
                unseen.append("")  # an unreadable row may have named any item: prune nothing this run
            continue
        if not seen.add(key):
            problems.append(Problem(where, f"duplicate id {key!r}"))
            continue
        item = ItemSpec(
            key, metadata={k: v for k, v in row.items() if k not in ("id", *MODALITIES) and v not in (None, "")}
        )
        for modality in MODALITIES:
            asset, problem = _manifest_asset(path, key, modality, row.get(modality))
            if problem:
                problems.append(Problem(where, problem))
            if asset is not None:
                item.assets[modality] = asset
        if not item.assets:
            problems.append(Problem(where, f"item {key!r} names no image, audio or text"))
            continue
        yield item


class KeySet:
    """The item ids a manifest has named so far, as 16-byte digests: a repeated id is found while holding
    ~16 B per row, not the ids themselves. Recent digests are a set, merged into one sorted array in
    batches (digests are compared without their trailing NUL bytes, as numpy keeps them)."""

    BATCH = 65_536

    def __init__(self) -> None:
        self.stored = np.empty(0, "S16")
        self.recent: set[bytes] = set()

    def add(self, key: str) -> bool:
        """Add `key`; False when it was there already."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest().rstrip(b"\x00")
        at = int(np.searchsorted(self.stored, digest))
        if digest in self.recent or (at < len(self.stored) and self.stored[at] == digest):
            return False
        self.recent.add(digest)
        if len(self.recent) >= self.BATCH:
            self.stored = np.sort(np.concatenate([self.stored, np.array(sorted(self.recent), "S16")]))
            self.recent.clear()
        return True


def _manifest_asset(manifest: Path, key: str, modality: str, value: object) -> tuple[AssetSpec | None, str | None]:
    """A manifest cell as an asset, or why it is refused (a FIFO or device is never opened)."""
    if value in (None, ""):
        return None, None
    if modality == "text" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None, f"{modality} must be a path{' or a text' if modality == 'text' else ''}, not {_json_kind(value)}"
    if "\x00" in value:
        return None, f"{modality} contains a NUL character"
    target = Path(os.path.normpath(manifest.parent / value))  # links are followed (and checked) by confine()
    try:
        mode: int | None = target.stat().st_mode
    except (OSError, ValueError):
        mode = None
    if modality == "text" and (mode is None or stat.S_ISDIR(mode)):
        return AssetSpec("text", Path(f"{manifest}#{key}"), inline_text=value), None
    kind = special_file_kind(mode) if mode is not None else None
    if kind is not None:
        return None, f"{target}: not a regular file ({kind}); skipped"
    return AssetSpec(modality, target), None


# front ends add how to allow a folder (the CLI's --allow-root, the UI's RETRIEVAL_ROOTS)
OUTSIDE = "outside the collection's folder and the allowed folders; refused"


def confine(found: Scan, extra_roots: list[Path] | None = None) -> Scan:
    """Refuse assets whose real path (links followed) lies outside the source's folder and `extra_roots`:
    a manifest saying `../../etc/passwd`, or a link pointing out of the collection, is not read."""
    roots = [str(found.root.resolve()), *(str(Path(r).resolve()) for r in extra_roots or [])]
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
            if not is_within(str(real), roots):
                problems.append(Problem(str(asset.path), OUTSIDE))
                del item.assets[modality]
            else:
                asset.within = tuple(roots)
        if item.assets:
            items.append(item)
    return Scan(items, problems, found.root, found.unseen)
