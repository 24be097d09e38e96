"""The pretrained profile's code path (OpenCLIP + CLAP + sentence-transformers) with tiny random models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, mnist_image, recording

from indexer import Indexer
from retrieval import QueryInput, SearchEngine
from retrieval.profiles import PROFILES, load_profile


def test_pretrained_profile_names_real_weights() -> None:
    profile = PROFILES["pretrained"]
    assert profile.encoders["image"][0].startswith("openclip:ViT-B-32/")
    assert profile.encoders["audio"][0] == "clap:laion/clap-htsat-unfused"
    assert set(profile.encoders["text"]) == {*profile.encoders["image"], *profile.encoders["audio"], "sbert"}


def tiny_collection(tiny_models: dict[str, str], folder: Path, tmp_path: Path) -> str:
    """The folder indexed with the pretrained profile's layout of encoders, tiny models in their place."""
    profile_file = tmp_path / "tiny.json"
    profile_file.write_text(
        json.dumps(
            {
                "name": "tiny",
                "encoders": {
                    "image": [tiny_models["openclip"]],
                    "audio": [tiny_models["clap"]],
                    "text": [tiny_models["openclip"], tiny_models["clap"], "sbert"],
                },
            }
        )
    )
    url = f"sqlite:///{tmp_path}/p.db"
    summary = Indexer(url, profile=load_profile(profile_file)).run(folder)
    assert summary.assets == {"audio": 8, "image": 8, "text": 4}
    return url


def test_index_and_search_with_clip_and_clap_spaces(
    tiny_models: dict[str, str], small_folder: Path, tmp_path: Path
) -> None:
    engine = SearchEngine.open(tiny_collection(tiny_models, small_folder, tmp_path))
    channels = {c.label for c in engine.space.channels(engine.encode_query(QueryInput(text="a spoken two")))}
    # one text query reaches images (CLIP), audio (CLAP) and texts (all three text encoders)
    assert {c.split(" ")[0] for c in channels} == {"text→image", "text→audio", "text→text"}
    hits = engine.search(text="a spoken two", k=12).hits
    every = {f"d{d}_{speaker}" for d in range(4) for speaker in ("george", "jackson", "lucas")}
    assert {h.key for h in hits} == every  # every item has an image or audio reachable from text
    hits = engine.search(image=mnist_image(2), audio=recording(2), strategy="early", k=3).hits
    assert hits and set(hits[0].contributions) <= {"image", "audio"}


RAW = {"normalisation": "none", "weighting": "fixed"}


@pytest.mark.parametrize(
    "strategy, params",
    [
        ("late", RAW),
        ("hybrid", {"groups": [["image", "audio"], ["text"]], "standardise": False, **RAW}),
        ("early", {"standardise": False}),
    ],
)
def test_several_encoders_of_one_modality_count_as_one(
    tiny_models: dict[str, str], small_folder: Path, tmp_path: Path, strategy: str, params: dict
) -> None:
    """A text query meets a caption through three encoders and an image or a recording through one: each
    strategy's raw score is the image's cosine + the recording's + the *mean* of the caption's three, so
    a captioned item does not win by its number of text channels (summed, early and hybrid's text group
    gave the caption three votes)."""
    engine = SearchEngine.open(tiny_collection(tiny_models, small_folder, tmp_path))
    query = engine.encode_query(QueryInput(text="the digit two said by someone"))
    ids = engine.space.item_ids()
    expected = np.zeros(len(ids))
    channels = engine.space.channels(query)
    for channel in channels:
        joining = sum(c.field.modality == channel.field.modality for c in channels)  # text→text: 3
        expected += engine.space.channel_scores(query, channel, ids)[0] / joining
    assert sum(c.field.modality == "text" for c in channels) == 3
    hits = engine.search(text="the digit two said by someone", strategy=strategy, k=len(ids), **params).hits
    by_key = {h.key: h.score for h in hits}
    keys = engine.catalogue.item_keys()
    assert by_key == pytest.approx({keys[int(i)]: float(e) for i, e in zip(ids, expected)}, abs=1e-4)


def test_pretrained_profile_without_weights_fails_before_touching_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    from retrieval.encoders import WeightsNotFoundError

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(WeightsNotFoundError, match="Looked in") as caught:
        Indexer(f"sqlite:///{tmp_path}/p.db", profile=PROFILES["pretrained"]).run(tmp_path)
    assert "CLIP-ViT-B-32" in str(caught.value) and "clap-htsat" in str(caught.value)  # both, in one run


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)


@pytest.mark.slow
def test_pretrained_profile_from_a_cache_in_the_published_layout(
    small_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """What a user who ran `hf download` for both models gets: `--profile pretrained`, HF_HUB_OFFLINE=1.
    Random values in the published files and layout; OpenCLIP's ViT-B/32 at its real size (the tag
    fixes the architecture, ~600 MB), CLAP with a tiny tower behind the published feature extractor.
    The indexer runs as a user starts it, in a process of its own with HF_HOME set; the search runs the same
    command line in this process, pointed at the same cache (a second process spent ~8 s importing again)."""
    from huggingface_hub import constants
    from tiny_models import CLAP_REPO, CLIP_REPO, build_pretrained_cache

    from retrieval.__main__ import main as retrieval_main
    from retrieval.encoders import registry

    home = tmp_path / "hf-home"
    build_pretrained_cache(home / "hub")
    for repo in (CLAP_REPO, CLIP_REPO):
        folder = home / "hub" / ("models--" + repo.replace("/", "--"))
        revision = (folder / "refs" / "main").read_text()
        assert (folder / "snapshots" / revision).is_dir()
    assert (
        home
        / "hub/models--laion--clap-htsat-unfused/snapshots"
        / revision_of(home, CLAP_REPO)
        / "preprocessor_config.json"
    ).is_symlink()
    env = {
        **os.environ,
        "HF_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)  # as a user has it: our loader must silence the bars
    env.pop("TRANSFORMERS_VERBOSITY", None)
    url = f"sqlite:///{tmp_path}/p.db"
    indexed = _cli(["indexer", str(small_folder), "--db", url, "--profile", "pretrained", "--quiet"], env)
    assert indexed.returncode == 0, indexed.stderr[-3000:]
    assert "items: 12   assets: audio: 8, image: 8, text: 4" in indexed.stdout
    assert "Loading weights" not in indexed.stdout + indexed.stderr
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(registry, "_CACHE", {})  # the full-size model is not kept for the session's other tests
    capsys.readouterr()
    assert retrieval_main(["search", "--db", url, "--text", "a spoken two", "--k", "12", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert len(next(iter(hits.values()))) == 12  # every item has an image or audio reachable from text
    keys = {hit["key"] for hit in next(iter(hits.values()))}
    assert {"d0_jackson", "d0_lucas"} <= keys  # an image-only item (CLIP) and an audio-only one (CLAP)


def revision_of(home: Path, repo: str) -> str:
    return (home / "hub" / ("models--" + repo.replace("/", "--")) / "refs" / "main").read_text()


def test_a_profile_naming_an_encoder_twice_is_refused(tmp_path: Path) -> None:
    """One field per (modality, encoder): a repeated encoder would be one table counted twice by fusion."""
    from retrieval.errors import InvalidInputError

    path = tmp_path / "twice.json"
    path.write_text(json.dumps({"name": "twice", "encoders": {"image": ["hog"], "text": ["sbert", "sbert"]}}))
    with pytest.raises(InvalidInputError, match="'twice' names an encoder twice for text"):
        load_profile(path)
