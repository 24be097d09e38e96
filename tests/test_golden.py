"""Golden rankings: the top 10 of fixed demo queries under every strategy, so a change in ranking is a visible diff.

After an intended change, regenerate with `UPDATE_GOLDEN=1 ./test.sh tests/test_golden.py` and commit the diff of
tests/golden/rankings.json with a message that says why the rankings moved. Keys must match exactly; scores to
1e-3 (float sums may differ in the last bits across BLAS thread counts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import copy_demo, mnist_image, recording

GOLDEN = Path(__file__).parent / "golden" / "rankings.json"
LEARNED = ("learned_early", "gated", "cross_attention")  # trained on the demo's train split, 4 epochs


def queries() -> dict[str, dict[str, object]]:
    return {
        "image+audio seven": {"image": mnist_image(7, 5), "audio": recording(7, "nicolas", 0)},
        "text four": {"text": "a handwritten four"},
        "audio two": {"audio": recording(2, "nicolas", 3)},
    }


@pytest.fixture(scope="module")
def rankings(ui_demo: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[object]]]:
    from retrieval import SearchEngine
    from retrieval.fusion import list_strategies
    from retrieval.train import TrainConfig

    demo = copy_demo(ui_demo, tmp_path_factory)  # the 200-item demo, untrained; trained below (4 epochs)
    folder = Path(demo["root"])
    url = demo["url"]
    engine = SearchEngine.open(url)
    for strategy in LEARNED:
        config = TrainConfig(strategy, label_field="digit", where={"split": "train"}, epochs=4, seed=0)
        engine.models.train(config, folder / f"{strategy}.safetensors")
    engine = SearchEngine.open(url)
    out: dict[str, list[list[object]]] = {}
    for strategy in list_strategies():
        for name, query in queries().items():
            hits = engine.search(strategy=strategy, k=10, **query).hits  # type: ignore[arg-type]
            out[f"{strategy} | {name}"] = [[h.key, round(h.score, 4)] for h in hits]
    return out


@pytest.mark.real_media  # rankings recorded on the real digits
def test_top10_of_every_strategy_matches_the_golden_file(rankings: dict[str, list[list[object]]]) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(rankings, indent=1) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert sorted(rankings) == sorted(golden), "strategies or queries changed: regenerate (see the module docstring)"
    for name, expected in golden.items():
        got = rankings[name]
        assert [key for key, _ in got] == [key for key, _ in expected], f"ranking of {name!r} moved"
        for (_, score), (_, want) in zip(got, expected):
            assert score == pytest.approx(want, abs=1e-3), f"scores of {name!r} moved"
    assert len({tuple(k for k, _ in v) for v in golden.values()}) > 3  # the strategies do not all agree
