"""The indexer end to end on real media: bad input, incremental runs, interruptions, the guard."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import MNIST, mnist_image, recording
from sqlalchemy import select

from indexer import Indexer, pipeline
from indexer.sources import AssetSpec
from indexer.status import collection_status
from retrieval import SearchEngine
from storage import Asset, Collection, Database, EncoderMismatchError, VectorStorage
from storage.repository import ok_ids_by_modality


def add_bad_files(folder: Path) -> dict[str, str]:
    """Bad input of several kinds, and a word each reason must contain."""
    png = mnist_image(9).read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    (folder / "random.jpg").write_bytes(os.urandom(2048))
    (folder / "empty.wav").write_bytes(b"")
    (folder / "headerless.wav").write_bytes(recording(5).read_bytes()[44:])
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "mystery.xyz").write_bytes(bytes(range(256)))
    return {
        "truncated.png": "truncated",
        "random.jpg": "not a recognised image",
        "empty.wav": "empty file",
        "headerless.wav": "not a readable audio",
        "latin1.txt": "not UTF-8",
        "mystery.xyz": "unsupported",
    }


def consistent(url: str) -> dict[str, set[int]]:
    """The database's ok assets and every vector table hold exactly the same ids."""
    db = Database(url)
    with db.session() as session:
        collection = session.scalar(select(Collection))
        ok = ok_ids_by_modality(session, collection.id)
        storage = VectorStorage(Path(collection.vector_dir))
        for name, modality in (("image@hog", "image"), ("audio@speech", "audio"), ("text@sbert", "text")):
            assert set(storage.load(name).ids.tolist()) == ok.get(modality, set()), name
    return ok


def test_index_folder_with_bad_files_then_search(small_folder: Path, tmp_path: Path) -> None:
    expected = add_bad_files(small_folder)
    url = f"sqlite:///{tmp_path}/c.db"
    summary = Indexer(url, batch_size=5).run(small_folder)
    # an item none of whose files could be used is not made (5 empty items from 6 bad files, issue 37), and
    # the report says so beside each file's own reason; mystery.xyz never becomes an item
    assert summary.items == 12
    assert summary.assets == {"audio": 8, "image": 8, "text": 4}
    reasons = {Path(p.path).name: p.reason for p in summary.problems}
    for name, word in expected.items():
        assert word in reasons[name], (name, reasons.get(name))
        assert name == "mystery.xyz" or "no item made" in reasons[name], reasons[name]
    again = Indexer(url, batch_size=5).run(small_folder)
    assert again.items == 12 and {Path(p.path).name for p in again.problems} == set(expected)
    status = collection_status(url)
    assert {Path(p["path"]).name for p in status["problems"]} == set(expected)
    assert all(b["current"] for b in status["indexes"]) and {b["strategy"] for b in status["indexes"]} == {
        "field",
        "early",
    }  # hybrid reuses both
    consistent(url)

    engine = SearchEngine.open(url)
    for strategy in ("late", "early"):
        hits = engine.search(audio=recording(2, "george", 0), strategy=strategy, k=3).hits
        assert hits[0].key == "d2_george" and hits[0].metadata == {} and "audio" in hits[0].contributions
    both = engine.search(image=mnist_image(3, 1), text="the digit 3", k=3)
    assert both.hits[0].key.startswith("d3")


def test_images_and_audio_as_paths_bytes_or_arrays_agree(small_folder: Path, tmp_path: Path) -> None:
    import soundfile
    from PIL import Image

    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url).run(small_folder)
    engine = SearchEngine.open(url)
    path = mnist_image(1, 1)
    samples, rate = soundfile.read(recording(1, "george", 0), dtype="float32")
    by_path = engine.search(image=path, audio=str(recording(1, "george", 0)), k=5)
    by_bytes = engine.search(image=path.read_bytes(), audio=recording(1, "george", 0).read_bytes(), k=5)
    by_array = engine.search(image=np.asarray(Image.open(path)), audio=(samples, rate), k=5)
    keys = [h.key for h in by_path.hits]
    assert keys == [h.key for h in by_bytes.hits] == [h.key for h in by_array.hits]
    scores = [h.score for h in by_path.hits]
    assert scores == pytest.approx([h.score for h in by_array.hits], abs=1e-5)
    with pytest.raises(ValueError, match="empty query"):
        engine.search(k=3)


def test_rerun_is_incremental_and_prunes(small_folder: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    first = Indexer(url).run(small_folder)
    assert first.encoded == 20 and first.unchanged == 0
    again = Indexer(url).run(small_folder)
    assert again.encoded == 0 and again.unchanged == 20

    shutil.copy(mnist_image(8), small_folder / "d0_george.png")  # changed content
    (small_folder / "d1_jackson.png").unlink()  # gone (d1_jackson has no audio: item gone)
    shutil.move(small_folder / "d2_george.txt", small_folder / "renamed.txt")  # same content, new item
    third = Indexer(url).run(small_folder)
    assert (third.changed, third.encoded, third.missing, third.removed) == (1, 2, 1, 0)
    pruned = Indexer(url).run(small_folder, prune=True)
    assert pruned.removed == 1 and pruned.encoded == 0
    ok = consistent(url)
    assert len(ok["image"]) == 7


def test_a_crash_between_vectors_and_rows_is_healed_by_the_next_run(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    flushes = {"n": 0}

    def crash_in_third_flush() -> None:  # of 4: its vectors are saved, its rows are not
        flushes["n"] += 1
        if flushes["n"] == 3:
            raise RuntimeError("simulated crash")

    monkeypatch.setitem(pipeline.FAULTS, "flush:tables-saved", crash_in_third_flush)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Indexer(url, batch_size=4, workers=1, flush_assets=4).run(small_folder)
    monkeypatch.undo()
    with Database(url).session() as session:
        assert len(session.scalars(select(Asset).where(Asset.status == "ok")).all()) == 8  # two whole batches
    resumed = Indexer(url, batch_size=4).run(small_folder)
    assert resumed.encoded == 12 and resumed.unchanged == 8
    consistent(url)
    hits = SearchEngine.open(url).search(text="digit", strategy="early", k=20).hits
    assert sorted(h.key for h in hits) == [f"d{d}_george" for d in range(4)]  # the four items with a text


def test_other_encoders_are_refused_with_a_clear_message(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval.encoders import registry
    from retrieval.encoders.features import HogImageEncoder
    from retrieval.profiles import Profile

    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url).run(small_folder)
    with pytest.raises(EncoderMismatchError, match="was indexed with profile"):
        Indexer(url, profile=Profile("other", {"image": ("hog",)}))
    # The same encoder name now gives another dimension (say, a new version of it).
    monkeypatch.setattr(registry, "_CACHE", {})
    monkeypatch.setattr(HogImageEncoder, "side", 48)
    engine = SearchEngine.open(url)
    with pytest.raises(EncoderMismatchError, match=r"indexed with hog \(dimension 388"):
        engine.search(image=mnist_image(0), k=3)
    assert engine.search(audio=recording(0), k=1).hits  # the other encoders still work
    with pytest.raises(EncoderMismatchError, match=r"indexed with hog \(dimension 388.*--migrate` encodes its image"):
        Indexer(url).run(small_folder)


def test_encoders_loaded_before_a_run_are_recorded_and_the_run_uses_them(small_folder: Path, tmp_path: Path) -> None:
    """`load_encoders` ahead of `run`: what a benchmark does to keep loading the models out of its timing."""
    from storage import EncoderRecord

    url = f"sqlite:///{tmp_path}/c.db"
    indexer = Indexer(url)
    indexer.load_encoders()
    loaded = dict(indexer.encoders)
    profile = {name for names in indexer.profile.encoders.values() for name in names}
    with Database(url).session() as session:
        assert set(session.scalars(select(EncoderRecord.name))) == set(loaded) == profile
    assert indexer.run(small_folder).encoded
    assert all(indexer.encoders[name] is encoder for name, encoder in loaded.items())


def test_stale_index_is_rebuilt_not_trusted(small_folder: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url).run(small_folder)
    with Database(url).session() as session:
        session.scalar(select(Collection)).generation += 1
    assert not any(b["current"] for b in collection_status(url)["indexes"])
    hits = SearchEngine.open(url).search(audio=recording(0), strategy="early", k=1).hits
    assert hits[0].key == "d0_george"
    assert any(b["current"] for b in collection_status(url)["indexes"])


def test_more_bad_input_never_stops_the_batch(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_media import png_claiming

    from indexer import pipeline

    (small_folder / "bomb.png").write_bytes(png_claiming(100_000, 100_000))
    (small_folder / "dangling.wav").symlink_to(small_folder / "nowhere.wav")
    vanishing = small_folder / "vanishing.wav"
    shutil.copy(recording(9), vanishing)
    real_scan = pipeline.stream

    def scan_then_delete(path):
        found = real_scan(path)
        vanishing.unlink()
        return found

    monkeypatch.setattr(pipeline, "stream", scan_then_delete)
    summary = Indexer(f"sqlite:///{tmp_path}/c.db").run(small_folder)
    reasons = {Path(p.path).name: p.reason for p in summary.problems}
    assert "over the limit" in reasons["bomb.png"] or "decompression bomb" in reasons["bomb.png"]
    assert "symbolic link" in reasons["dangling.wav"]
    assert "No such file" in reasons["vanishing.wav"] or "not found" in reasons["vanishing.wav"]
    assert summary.assets == {"audio": 8, "image": 8, "text": 4}


def test_manifest_row_pointing_nowhere_and_empty_folder(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,image,audio,label\na,{mnist_image(4)},,4\nb,missing.png,{recording(4)},4\n")
    summary = Indexer(f"sqlite:///{tmp_path}/c.db").run(manifest, roots=[MNIST.parent.parent])
    assert summary.items == 2 and summary.assets == {"audio": 1, "image": 1}
    assert [(Path(p.path).name, p.reason) for p in summary.problems] == [
        ("missing.png", "cannot read file (file not found)")
    ]
    (tmp_path / "empty").mkdir()
    empty = Indexer(f"sqlite:///{tmp_path}/e.db").run(tmp_path / "empty")
    assert (empty.items, empty.encoded, empty.problems) == (0, 0, [])


def test_two_collections_in_one_database_keep_their_own_vectors(small_folder: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    Indexer(url, collection="a").run(small_folder)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(mnist_image(5), other / "five.png")
    Indexer(url, collection="b").run(other)
    assert len(SearchEngine.open(url, "a").space.item_ids()) == 12
    assert [h.key for h in SearchEngine.open(url, "b").search(image=mnist_image(5), k=5).hits] == ["five"]


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 33])
@pytest.mark.parametrize("workers", [0, 3])
def test_the_local_executor_decodes_every_item_once_in_order(
    count: int, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer.executors import LocalExecutor

    monkeypatch.setattr(LocalExecutor, "_decode", lambda self, items: [n * 10 for n in items])
    executor = LocalExecutor({}, [], {}, batch_size=8, workers=workers)
    batches = list(executor._batches(list(range(count))))  # images and text: batches by count
    assert [d for batch in batches for d in batch] == [n * 10 for n in range(count)]
    assert all(len(batch) == 8 for batch in batches[:-1])


class _ClipMeans:
    """An audio encoder that reads 16 kHz clips and records how many it was given at once."""

    name, modalities, sample_rate, dim = "means", ("audio",), 16_000, 2

    def __init__(self) -> None:
        self.batches: list[int] = []

    def encode(self, modality: str, inputs: list, *, batch_size: int | None = None) -> np.ndarray:
        self.batches.append(len(inputs))
        return np.array([[w.samples.mean(), w.samples.std()] for w in inputs], np.float32)


def test_long_clips_stay_within_the_audio_budget_whatever_the_batch_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 35, item 7: a batch of audio was bounded only by --batch-size x 600 s x rate (64 clips of 600 s at
    16 kHz: 2.5 GB a batch, three in flight). Every decoded sample array alive is counted (a weak reference
    tells when it is freed): with a budget of three clips and batches of 64, never more than three are held,
    and every clip is still encoded once, in order."""
    import weakref

    import soundfile

    from indexer import executors
    from indexer.executors import LocalExecutor
    from indexer.work import WorkItem
    from retrieval.profiles import Field

    seconds, rate, clips = 20, 16_000, 24
    rng = np.random.default_rng(0)
    work = []
    for n in range(clips):
        path = tmp_path / f"clip{n}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(seconds * rate) + 0.01 * n).astype(np.float32), rate)
        work.append(WorkItem(n + 1, AssetSpec("audio", path), f"{n:064d}"))
    live, peak = [0], [0]
    real = executors.decode_asset

    def freed(size: int) -> None:
        live[0] -= size

    def counting(item, rates):
        decoded = real(item, rates)
        for wave in decoded.value.values():
            live[0] += len(wave.samples)
            weakref.finalize(wave.samples, freed, len(wave.samples))
        peak[0] = max(peak[0], live[0])
        return decoded

    monkeypatch.setattr(executors, "decode_asset", counting)
    encoder = _ClipMeans()
    budget = 3 * seconds * rate + 1_000  # three clips (and their rounding)
    executor = LocalExecutor(
        {"mfcc": encoder},  # type: ignore[dict-item]  # duck-typed, under a name encode_batch knows
        [Field("audio", "mfcc")],
        {"audio": (rate,)},
        batch_size=64,
        workers=4,
        audio_budget=budget,
        clip_seconds=seconds,
    )
    batches = list(executor.batches(work))
    ids = [int(i) for b in batches for i in b.vectors["audio@mfcc"][0]]
    assert ids == list(range(1, clips + 1)), "every clip encoded once, in order"
    means = np.concatenate([b.vectors["audio@mfcc"][1][:, 0] for b in batches])
    assert np.allclose(means, 0.01 * np.arange(clips), atol=2e-3), "each clip's own vector"
    assert 0 < peak[0] <= budget, f"{peak[0]:,} samples held at once, over the budget of {budget:,}"
    assert max(encoder.batches) <= 3 and sum(encoder.batches) == clips
    assert live[0] == 0, "nothing decoded is kept after its batch"


def test_a_non_finite_vector_becomes_an_error_not_an_index_entry(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval.encoders.features import HogImageEncoder

    real = HogImageEncoder._encode_batch

    def nan_for_the_first(self, modality, batch):
        out = real(self, modality, batch)
        out[0] = np.nan
        return out

    monkeypatch.setattr(HogImageEncoder, "_encode_batch", nan_for_the_first)
    url = f"sqlite:///{tmp_path}/c.db"
    summary = Indexer(url).run(small_folder)
    bad = [p for p in summary.problems if "non-finite vector" in p.reason]
    assert len(bad) == 1 and "hog" in bad[0].reason and summary.assets["image"] == 7
    ok = consistent(url)
    with Database(url).session() as session:
        vector_dir = session.scalar(select(Collection.vector_dir))
    vectors = VectorStorage(Path(vector_dir)).load("image@hog")
    assert len(vectors) == len(ok["image"]) == 7 and np.isfinite(vectors.vectors.astype(np.float32)).all()


def test_identical_content_is_decoded_and_encoded_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 35, item 7: a manifest naming one file on many rows decodes it once and gives every row its
    vectors (it re-encoded the file on each row: ~95 assets/s)."""
    import json

    from indexer import executors

    calls: list[str] = []
    real = executors.decode_asset

    def counting(work, rates):
        calls.append(work.spec.path.name)
        return real(work, rates)

    monkeypatch.setattr(executors, "decode_asset", counting)
    hashed: list[str] = []
    real_hash = AssetSpec.sha256
    monkeypatch.setattr(AssetSpec, "sha256", lambda spec: hashed.append(spec.path.name) or real_hash(spec))
    shutil.copy(mnist_image(3), tmp_path / "three.png")
    shutil.copy(mnist_image(3), tmp_path / "three-again.png")  # another file, the same bytes
    shutil.copy(mnist_image(4), tmp_path / "four.png")
    rows = [{"id": f"copy-{n}", "image": "three.png"} for n in range(50)]
    rows += [{"id": "again", "image": "three-again.png"}, {"id": "four", "image": "four.png"}]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    url = f"sqlite:///{tmp_path}/c.db"
    summary = Indexer(url, batch_size=4, flush_assets=8).run(tmp_path / "items.jsonl")
    assert sorted(calls) == ["four.png", "three.png"]
    assert sorted(hashed) == ["four.png", "three-again.png", "three.png"], "one file is read once to hash it"
    assert summary.encoded == 52 and summary.assets == {"image": 52}
    hits = SearchEngine.open(url).search(image=tmp_path / "three.png", strategy="late", k=52).hits
    assert {h.key for h in hits[:51]} == {f"copy-{n}" for n in range(50)} | {"again"}
    assert len({round(h.score, 5) for h in hits[:51]}) == 1 and hits[51].key == "four"


def test_a_folder_of_only_bad_files_makes_no_item(tmp_path: Path) -> None:
    """Issue 37, item 8: each bad file made an empty item, shown by nothing and found by no search. None is
    made now, the report says why for each file, and the collection opens and searches (finding nothing)."""
    folder = tmp_path / "bad"
    folder.mkdir()
    expected = add_bad_files(folder)
    url = f"sqlite:///{tmp_path}/c.db"
    summary = Indexer(url).run(folder)
    assert summary.items == 0 and summary.assets == {}
    assert {Path(p.path).name for p in summary.problems} == set(expected)
    assert {Path(p["path"]).name for p in collection_status(url)["problems"]} == set(expected)
    assert SearchEngine.open(url).search(text="the digit 3", k=3).hits == []


def test_a_manifest_is_held_a_chunk_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 35, item 7: a manifest is read, planned, encoded and written a chunk of rows at a time, so the
    rows it holds at once stay within a chunk whatever the manifest's length (they were all of them). Across
    chunks, one file named on every row is still decoded once, a repeated id is still refused, pruning still
    sees the whole manifest, and one executor serves every chunk."""
    import gc
    import json

    from indexer import executors, sources

    chunk = 20
    monkeypatch.setattr(pipeline, "CHUNK_ROWS", chunk, raising=False)
    decoded: list[str] = []
    real = executors.decode_asset
    monkeypatch.setattr(
        executors, "decode_asset", lambda work, rates: decoded.append(work.spec.path.name) or real(work, rates)
    )
    held: list[int] = []  # this manifest's items alive at each flush (a test worker may hold others' items)

    def count_items() -> None:
        held.append(sum(isinstance(o, sources.ItemSpec) and o.key.startswith("row-") for o in gc.get_objects()))

    monkeypatch.setitem(pipeline.FAULTS, "flush:tables-saved", count_items)
    executors_made: list[str] = []
    make = executors.LocalExecutor.from_settings.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        executors.LocalExecutor,
        "from_settings",
        classmethod(lambda cls, settings: executors_made.append(cls.name) or make(cls, settings)),
    )
    shutil.copy(mnist_image(3), tmp_path / "three.png")
    shutil.copy(mnist_image(4), tmp_path / "four.png")
    rows = [{"id": f"row-{n}", "image": "three.png", "text": f"caption {n}"} for n in range(200)]
    rows += [{"id": "row-7", "image": "four.png"}, {"id": "four", "image": "four.png"}]
    manifest = tmp_path / "items.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    url = f"sqlite:///{tmp_path}/c.db"
    summary = Indexer(url, batch_size=8, flush_assets=10).run(manifest)
    assert held and max(held) <= 3 * chunk, f"items held at once: {max(held)}"
    assert executors_made == ["local"], "one executor a run, not one a chunk (Ray's actors load models once)"
    assert decoded.count("three.png") == 1 and decoded.count("four.png") == 1
    assert [p.reason for p in summary.problems] == ["duplicate id 'row-7'"]
    assert summary.items == 201 and summary.assets == {"image": 201, "text": 200}
    hits = SearchEngine.open(url).search(image=tmp_path / "three.png", strategy="late", k=201).hits
    assert {h.key for h in hits[:200]} == {f"row-{n}" for n in range(200)} and hits[200].key == "four"
    assert len({round(h.score, 5) for h in hits[:200]}) == 1

    rows = [{"id": f"row-{n}", "image": "three.png"} for n in range(100)]  # half the rows, and no texts
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = Indexer(url, flush_assets=10).run(manifest, prune=True)
    assert (again.removed, again.unchanged, again.encoded) == (101, 100, 0)
    assert again.items == 100 and again.assets == {"image": 100}
    hits = SearchEngine.open(url).search(image=tmp_path / "three.png", strategy="late", k=200).hits
    assert {h.key for h in hits} == {f"row-{n}" for n in range(100)}
