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
