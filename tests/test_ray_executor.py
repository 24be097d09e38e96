"""What the Ray executor says when a cluster refuses it (no cluster started: `ray.init` is stood in for)."""

from __future__ import annotations

from pathlib import Path

import pytest

import indexer.ray_executor as ray_executor
from indexer.ray_executor import RayExecutor
from retrieval.errors import USER_ERRORS, ClusterError


def refuse(*_: object, **__: object) -> None:
    raise ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:6379")  # what Ray 2.60 says, and only that


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Ray token set up on this machine (Ray 2.60 then authenticates every connection)."""
    path = tmp_path / "auth_token"
    path.write_text("0" * 64)
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ray_executor, "TOKEN_FILE", path)
    monkeypatch.setattr(RayExecutor, "_init", refuse)
    return path


def test_a_refused_connection_with_a_token_set_up_names_ray_auth_mode(token: Path) -> None:
    executor = RayExecutor([], [], {}, address="127.0.0.1:6379")
    with pytest.raises(ClusterError) as error:
        executor.start()
    message = str(error.value)
    assert message.startswith("cannot join the Ray cluster at 127.0.0.1:6379: Failed to connect")
    assert "RAY_AUTH_MODE is not 'token'" in message and "export RAY_AUTH_MODE=token" in message
    assert "\n" not in message and isinstance(error.value, USER_ERRORS)  # one line from the CLI, no traceback


def test_no_auth_hint_where_token_mode_is_on_or_no_token_exists(token: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(
        ClusterError, match=r"^cannot join the Ray cluster at auto: Failed to connect to Ray cluster at [0-9.:]+$"
    ):
        RayExecutor([], [], {}, address="auto").start()
    monkeypatch.delenv("RAY_AUTH_MODE")
    token.unlink()
    assert ray_executor.auth_hint() == ""
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    assert "RAY_AUTH_MODE" in ray_executor.auth_hint()


@pytest.mark.server
def test_ray_actors_hold_decoded_audio_within_the_budget_whatever_the_batch_size(tmp_path: Path) -> None:
    """Issue 35, item 7: a Ray actor decoded its whole chunk of --batch-size clips at once (64 clips of 600 s at
    16 kHz: 2.5 GB an actor), where the local executor keeps to its audio budget. Actors now batch by the local
    executor's rule, within an equal share of the same budget: on a local Ray, a budget of three clips turns
    chunks of 16 into batches of at most three (the local executor's test counts the samples that rule holds),
    and every clip is still encoded once, with its own vector. A run's chunks share the actors."""
    import numpy as np
    import ray
    import soundfile

    from indexer.sources import AssetSpec
    from indexer.work import WorkItem
    from retrieval.profiles import Field

    seconds, rate, clips = 4, 16_000, 12
    rng = np.random.default_rng(0)
    work = []
    for n in range(clips):
        path = tmp_path / f"clip{n}.wav"
        soundfile.write(path, (0.1 * rng.standard_normal(seconds * rate)).astype(np.float32), rate)
        work.append(WorkItem(n + 1, AssetSpec("audio", path), f"{n:064d}"))
    executor = RayExecutor(
        [Field("audio", "mfcc")],
        ["mfcc"],
        {"audio": (rate,)},
        batch_size=16,
        actors=1,
        audio_budget=3 * seconds * rate + 1_000,  # three clips (and their rounding)
        clip_seconds=seconds,
    )
    started = not ray.is_initialized()
    try:
        batches = list(executor.batches(work[:8]))
        actors = executor.handles
        batches += executor.batches(work[8:])  # the next chunk of a run: the same actors, models loaded once
        assert executor.handles is actors and actors is not None and len(actors) == 1
        executor.close()
        assert executor.handles is None
    finally:
        if started:
            ray.shutdown()
    assert max(len(b.decoded) for b in batches) <= 3, [len(b.decoded) for b in batches]
    ids = [int(i) for b in batches for i in b.vectors["audio@mfcc"][0]]
    assert sorted(ids) == list(range(1, clips + 1)), "every clip encoded once"
    vectors = np.concatenate([b.vectors["audio@mfcc"][1] for b in batches])
    assert len(np.unique(vectors.round(4), axis=0)) == clips, "each clip its own vector"
