"""The transcription stage: what each new recording says, made once per (model, file content) and kept in
the database, before the encoders run (an audio field whose encoder reads text encodes it).

Before hearing a recording, the stage looks in the database, then in transcript files made elsewhere: the
spoken digits' (`DIGITS_TRANSCRIPTS`, made once by bench/transcription.py, so the demo and CI hear nothing)
and any listed in $RETRIEVAL_TRANSCRIPTS (JSON lines: sha256, text, language, confidence, model).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from indexer.work import WorkItem, decode_asset
from retrieval.transcribe import SAMPLE_RATE, Transcriber, searchable_text, transcriber_identity
from storage import Database, TranscriptRow
from storage.repository import stored_transcripts

DIGITS_TRANSCRIPTS = Path(__file__).with_name("digits.transcripts.jsonl")
SAVE_EVERY = 16  # transcripts written together: a killed run loses at most this many (~6 s of work)
COLUMNS = ("model", "sha256", "text", "language", "confidence")


def transcripts_for(
    db: Database,
    transcriber: str,
    work: Sequence[WorkItem],
    device: str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, str]:
    """sha256 -> the text the encoders read, for every audio asset of `work` that decodes; those neither the
    database nor a transcript file has are heard now (a file that does not decode is left to the encode
    stage, which records its error)."""
    model = transcriber_identity(transcriber)
    audio = {w.sha256: w for w in work if w.spec.modality == "audio" and w.sha256 and w.error is None}
    with db.session() as session:
        known = {sha: row.text for sha, row in stored_transcripts(session, model, audio).items()}
    if len(known) < len(audio):
        made_elsewhere = [row for sha, row in transcript_files(model).items() if sha in audio and sha not in known]
        _save(db, model, made_elsewhere)
        known |= {str(row["sha256"]): str(row["text"]) for row in made_elsewhere}
    missing = [w for sha, w in audio.items() if sha not in known]
    if missing:
        hearing = Transcriber(transcriber, device)
        made: list[dict[str, Any]] = []
        for done, item in enumerate(missing, start=1):
            decoded = decode_asset(item, SAMPLE_RATE)
            if decoded.error is None:
                heard = hearing.transcribe(decoded.value[SAMPLE_RATE])
                known[item.sha256 or ""] = heard.text
                made.append({"model": model, "sha256": item.sha256, "text": heard.text,
                             "language": heard.language, "confidence": heard.confidence})  # fmt: skip
            if len(made) >= SAVE_EVERY or done == len(missing):
                _save(db, model, made)
                made = []
            if progress:
                progress("transcribe", done, len(missing))
    return {sha: searchable_text(text) for sha, text in known.items()}


def transcript_files(model: str) -> dict[str, dict[str, Any]]:
    """sha256 -> row, of every transcript file's rows made by `model`."""
    paths = [DIGITS_TRANSCRIPTS] + [Path(p) for p in os.environ.get("RETRIEVAL_TRANSCRIPTS", "").split(os.pathsep) if p]
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line) if line.strip() else {}
                if row.get("model") == model:
                    out[row["sha256"]] = {k: row.get(k) for k in COLUMNS}
    return out


def _save(db: Database, model: str, rows: list[dict[str, Any]]) -> None:
    """Insert the rows that are not there yet; one that another run wrote meanwhile is left as it is (the
    same model heard the same file), so a clash is met by writing again without it."""
    for attempt in (1, 2):
        try:
            with db.session() as session:
                known = stored_transcripts(session, model, [str(r["sha256"]) for r in rows])
                new = [r for r in rows if r["sha256"] not in known]
                if new:
                    session.execute(insert(TranscriptRow), new)
            return
        except IntegrityError:
            if attempt == 2:
                raise
