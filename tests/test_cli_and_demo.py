"""The command lines and the digits demo builder, as a user runs them."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FSDD, ROOT, mnist_image, recording

from indexer.__main__ import main as indexer_main
from indexer.demo import (
    TEMPLATES_BOTH,
    TEMPLATES_DIGIT,
    TEMPLATES_SPEAKER,
    DemoSpec,
    build_digits_manifest,
    presence,
    text_for,
)
from retrieval import SearchEngine
from retrieval.__main__ import main as retrieval_main
from retrieval.fusion.checkpoint import FusionCheckpoint


def test_a_demo_item_has_a_modality_and_its_text_names_its_digit_or_speaker() -> None:
    """The rules the demo makes items by, which the cross-speaker benchmark reuses for its collections."""
    rng = random.Random(0)
    flags = [presence(rng, DemoSpec(image_rate=0, audio_rate=0, text_rate=0)) for _ in range(300)]
    assert all(sum(f) == 1 for f in flags) and {f.index(True) for f in flags} == {0, 1, 2}
    texts = [text_for(rng, 7, "lucas") for _ in range(300)]
    templates = TEMPLATES_DIGIT + TEMPLATES_BOTH + TEMPLATES_SPEAKER
    assert set(texts) == {t.format(word="seven", digit=7, speaker="lucas") for t in templates}


@pytest.mark.datasets
def test_demo_manifest_is_seeded_partial_and_split(tmp_path: Path) -> None:
    path = build_digits_manifest(tmp_path / "a", spec=DemoSpec(seed=3))
    again = build_digits_manifest(tmp_path / "b", spec=DemoSpec(seed=3))
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(list(FSDD.glob("*.wav"))), "one item per recording (2,000 on the real datasets)"
    assert [r["image"] for r in rows] == [r["image"] for r in csv.DictReader(again.open())]
    assert all(r["image"] or r["audio"] or r["text"] for r in rows)
    for modality, rate in (("image", 0.8), ("audio", 0.8), ("text", 0.5)):
        share = sum(bool(r[modality]) for r in rows) / len(rows)
        assert abs(share - rate) < 0.05, (modality, share)
    for r in rows:
        if r["image"]:
            assert Path(r["image"]).name.endswith(f"_{r['digit']}.png")  # same digit in both media
            assert (int(r["mnist_index"]) < 2500) == (r["split"] == "train")
        assert (r["speaker"] == "nicolas") == (r["split"] == "test")
    texts = [r["text"] for r in rows if r["text"]]
    assert any(
        "nicolas" in t and not any(w in t for w in ("zero", "one", "two")) and not any(c.isdigit() for c in t)
        for t in texts
    ), "some texts must name only the speaker"
    assert (tmp_path / "a" / "ATTRIBUTION.txt").read_text().count("CC BY-SA") == 2


@pytest.mark.datasets
def test_index_status_and_search_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    assert indexer_main(["demo", "--db", url, "--out", str(tmp_path / "digits"), "--limit", "60", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "items: 60" in printed and "time:" in printed

    assert indexer_main(["status", "--db", url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["items"] == 60 and status["problems"] == []

    assert (
        retrieval_main(
            [
                "search",
                "--db",
                url,
                "--text",
                "the digit seven",
                "--audio",
                str(recording(7)),
                "--strategy",
                "late",
                "--strategy",
                "early",
                "--k",
                "4",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["query"]["text"] == "the digit seven"
    assert set(out["results"]) == {"late", "early"}
    for hits in out["results"].values():
        assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1)) and hits
        assert set(hits[0]) >= {"rank", "item_id", "score", "contributions", "metadata"}
        assert set(hits[0]["contributions"]) <= {"text", "audio"} and "digit" in hits[0]["metadata"]

    assert indexer_main(["data/nowhere", "--db", url, "--quiet"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert retrieval_main(["search", "--db", url]) == 2
    assert "give at least one" in capsys.readouterr().err
    assert retrieval_main(["search", "--db", url, "--image", str(tmp_path / "missing.png")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_unknown_collection_says_how_to_make_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert retrieval_main(["search", "--db", f"sqlite:///{tmp_path}/x.db", "--image", str(mnist_image(0))]) == 2
    assert "python -m indexer" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.datasets
def test_all_five_strategies_from_the_cli_after_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    assert indexer_main(["demo", "--db", url, "--out", str(tmp_path / "digits"), "--limit", "150", "--quiet"]) == 0
    capsys.readouterr()
    for strategy in ("gated", "cross_attention"):
        assert (
            retrieval_main(
                [
                    "train",
                    "--db",
                    url,
                    "--strategy",
                    strategy,
                    "--label-field",
                    "digit",
                    "--epochs",
                    "3",
                    "--corrupt-probability",
                    "0.5",
                    "--out",
                    str(tmp_path / f"{strategy}.safetensors"),
                ]
            )
            == 0
        )
        assert "registered" in capsys.readouterr().out
        config = FusionCheckpoint.load(tmp_path / f"{strategy}.safetensors").meta["config"]
        assert config["corrupt_probability"] == 0.5 and config["epochs"] == 3
    args = ["search", "--db", url, "--k", "5", "--json"] + [
        x for s in ("late", "early", "hybrid", "gated", "cross_attention") for x in ("--strategy", s)
    ]
    for query in (
        ["--audio", str(recording(3))],
        ["--image", str(mnist_image(3)), "--text", "three"],
        ["--audio", str(recording(3)), "--image", str(mnist_image(3)), "--text", "three"],
    ):
        assert retrieval_main(args + query) == 0
        results = json.loads(capsys.readouterr().out)["results"]
        assert set(results) == {"late", "early", "hybrid", "gated", "cross_attention"}
        assert all(len(hits) == 5 for hits in results.values()), {k: len(v) for k, v in results.items()}
    # the learned strategies reach items without audio from an audio query; late fusion cannot
    assert (
        retrieval_main(
            [
                "search",
                "--db",
                url,
                "--audio",
                str(recording(3)),
                "--k",
                "150",
                "--json",
                "--strategy",
                "late",
                "--strategy",
                "gated",
            ]
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)["results"]
    assert all("audio" in h["assets"] for h in results["late"]) and len(results["late"]) < 150
    assert len(results["gated"]) == 150 and any("audio" not in h["assets"] for h in results["gated"])
    assert (
        retrieval_main(
            [
                "search",
                "--db",
                url,
                "--audio",
                str(recording(3)),
                "--strategy",
                "hybrid",
                "--param",
                'hybrid.groups=[["image"],["audio","text"]]',
                "--param",
                "hybrid.fusion=rrf",
                "--negative-text",
                "seven",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["query"]["negative"] == {"text": "seven"}


LOADED_AFTER_SEARCH = """
import runpy, sys
sys.argv = ["retrieval", *sys.argv[1:]]
try:
    runpy.run_module("retrieval", run_name="__main__")
finally:
    print(sorted(m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules), file=sys.stderr)
"""


def test_an_image_search_with_offline_encoders_loads_no_torch(ui_demo: dict[str, str]) -> None:
    """Import what a command needs: HOG needs neither torch (2.5 s) nor transformers (1.1 s), and neither
    does re-scoring from the tables (numpy casts where torch is not loaded); the search answers the same."""
    image = str(mnist_image(3))
    command = [sys.executable, "-c", LOADED_AFTER_SEARCH, "search", "--db", ui_demo["url"], "--image", image]
    done = subprocess.run([*command, "--k", "5", "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == "[]"
    found = [(h["key"], h["score"]) for h in json.loads(done.stdout)["results"]["late"]]
    expected = SearchEngine.open(ui_demo["url"]).search(image=image, k=5).hits  # this process has torch
    assert [k for k, _ in found] == [h.key for h in expected]
    assert np.allclose([s for _, s in found], [h.score for h in expected], atol=1e-5)
