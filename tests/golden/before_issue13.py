"""Checkpoints trained by the code before issue 13 (commit f177a05), kept to show they still load and rank alike.

Issue 13 changed the learned strategies' search (screening, channel shares, training options); a checkpoint
trained before it must still load and give the same ranking for an ordinary query. This file made them:

    git worktree add /tmp/before f177a05 && cd /tmp/before
    python /path/to/tests/golden/before_issue13.py /path/to/tests/golden/before_issue13

writing one tiny checkpoint per learned strategy and `expected.json` (each one's top 10 for QUERY).
`tests/test_learned.py` rebuilds the same space with today's code and compares.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

STRATEGIES = ("early", "gated", "cross_attention")
SMALL = {"epochs": 3, "batch_size": 32, "hidden": 16, "out_dim": 8, "width": 16, "heads": 2, "layers": 1}


def rows() -> tuple[np.ndarray, dict[int, np.ndarray], dict[int, np.ndarray]]:
    """60 items of 3 classes: an 8-d image per item, a 6-d recording for four items in five."""
    rng = np.random.default_rng(13)
    labels = np.arange(60) % 3
    image = rng.normal(size=(3, 8))[labels] + 0.5 * rng.normal(size=(60, 8))
    audio = rng.normal(size=(3, 6))[labels] + 0.5 * rng.normal(size=(60, 6))
    unit = lambda x: (x / np.linalg.norm(x)).astype(np.float32)  # noqa: E731
    return labels, {i: unit(image[i - 1]) for i in range(1, 61)}, {i: unit(audio[i - 1]) for i in range(1, 61) if i % 5}


def space(root: Path):  # the VectorSpace of whichever code is importable
    from retrieval.profiles import Field
    from retrieval.space import VectorSpace
    from storage import VectorStorage

    _, image, audio = rows()
    fields = [Field("image", "img-enc"), Field("audio", "aud-enc")]
    storage = VectorStorage(root)
    for f, by_id in zip(fields, (image, audio)):
        table = storage.load(f.key, dim=len(next(iter(by_id.values()))), encoder=f.encoder)
        table.upsert(np.array(list(by_id)), np.stack(list(by_id.values())))
        storage.save(f.key, table)
    return VectorSpace(fields, storage, generation=1)


def query():
    """Item 7's image with item 13's recording (both class 0)."""
    from retrieval.space import EncodedQuery

    _, image, audio = rows()
    return EncodedQuery({("image", "img-enc"): image[7], ("audio", "aud-enc"): audio[13]})


def main(out: Path) -> None:
    from retrieval.fusion import create_strategy
    from retrieval.train import TrainConfig, train

    out.mkdir(parents=True, exist_ok=True)
    labels, _, _ = rows()
    made = space(out / "vectors")
    ids = made.item_ids()
    expected = {}
    for name in STRATEGIES:
        path = out / f"{name}.safetensors"
        train(made, ids, [int(labels[i - 1]) for i in ids], TrainConfig(name, label_field="label", **SMALL), path)
        hits = create_strategy(name, checkpoint=str(path)).search(made, query(), 10)
        expected[name] = [[h.item_id, round(h.score, 5)] for h in hits]
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path.cwd()))
    main(Path(sys.argv[1]))
