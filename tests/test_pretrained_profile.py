"""The pretrained profile's code path (OpenCLIP + CLAP + sentence-transformers) with tiny random models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import mnist_image, recording

from indexer import Indexer
from retrieval import QueryInput, SearchEngine
from retrieval.profiles import PROFILES, load_profile


def test_pretrained_profile_names_real_weights() -> None:
    profile = PROFILES["pretrained"]
    assert profile.encoders["image"][0].startswith("openclip:ViT-B-32/")
    assert profile.encoders["audio"][0] == "clap:laion/clap-htsat-unfused"
    assert set(profile.encoders["text"]) == {*profile.encoders["image"], *profile.encoders["audio"], "sbert"}


def test_index_and_search_with_clip_and_clap_spaces(
    tiny_models: dict[str, str], small_folder: Path, tmp_path: Path
) -> None:
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
    summary = Indexer(url, profile=load_profile(profile_file)).run(small_folder)
    assert summary.assets == {"audio": 8, "image": 8, "text": 4}
    engine = SearchEngine.open(url)
    channels = {c.label for c in engine.space.channels(engine.encode_query(QueryInput(text="a spoken two")))}
    # one text query reaches images (CLIP), audio (CLAP) and texts (all three text encoders)
    assert {c.split(" ")[0] for c in channels} == {"text→image", "text→audio", "text→text"}
    hits = engine.search(text="a spoken two", k=12).hits
    assert len(hits) == 12  # every item has an image or audio reachable from text
    hits = engine.search(image=mnist_image(2), audio=recording(2), strategy="early", k=3).hits
    assert hits and set(hits[0].contributions) <= {"image", "audio"}


def test_pretrained_profile_without_weights_fails_before_touching_anything(tmp_path: Path) -> None:
    from retrieval.encoders import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="Looked in") as caught:
        Indexer(f"sqlite:///{tmp_path}/p.db", profile=PROFILES["pretrained"]).run(tmp_path)
    assert "CLIP-ViT-B-32" in str(caught.value) or "clap-htsat" in str(caught.value)
