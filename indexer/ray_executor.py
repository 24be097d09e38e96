"""Decode and encode on a Ray cluster: one actor per CPU (or GPU), each loading the encoders once.

Each actor decodes and encodes its chunk as the local executor does (`LocalExecutor.batches`), with an equal
share of the audio budget: decoded audio held by all actors together stays within `AUDIO_BUDGET_SAMPLES`
(a single clip larger than an actor's share still goes, alone), whatever --batch-size.

`ray.init()` starts a local cluster when no address is given (tests, one machine); `address="auto"` or
`ray://HOST:10001` joins an existing one. The project's packages travel to the workers as `py_modules`,
so a cluster needs only the same Python packages (requirements.txt) and the model weights where the
profile names local paths. The driver keeps writing: results come back as `EncodedBatch`es to the
pipeline, which checkpoints them exactly as it does for local work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType

from indexer.executors import AUDIO_BUDGET_SAMPLES, EncodedBatch, ExecutorSettings, LocalExecutor
from indexer.work import WorkItem
from retrieval.errors import ClusterError
from retrieval.media import MAX_AUDIO_SECONDS
from retrieval.profiles import Field

PACKAGES = [Path(__file__).resolve().parents[1] / name for name in ("indexer", "retrieval", "storage")]
TOKEN_FILE = Path.home() / ".ray" / "auth_token"  # where Ray looks for a token by default


class EncodeWorker:
    """A Ray actor's state: the encoders, created once, then one chunk of work after another."""

    def __init__(
        self,
        fields: list[Field],
        encoder_names: list[str],
        device: str | None,
        batch_size: int,
        rates: dict[str, tuple[int, ...]],
        audio_budget: int = AUDIO_BUDGET_SAMPLES,
        clip_seconds: float = MAX_AUDIO_SECONDS,
    ) -> None:
        from retrieval.encoders import create_encoder

        self.encoders = {name: create_encoder(name, device) for name in encoder_names}
        self.fields, self.batch_size, self.rates = fields, batch_size, rates
        self.audio_budget, self.clip_seconds = audio_budget, clip_seconds

    def run(self, chunk: list[WorkItem], transcripts: dict[str, str]) -> list[EncodedBatch]:
        """The chunk's batches, decoded within this actor's share of the audio budget; decoding in this
        actor's thread where the budget allows (it has one CPU)."""
        local = LocalExecutor(
            self.encoders,
            self.fields,
            self.rates,
            self.batch_size,
            workers=0,
            transcripts=transcripts,
            audio_budget=self.audio_budget,
            clip_seconds=self.clip_seconds,
        )
        return list(local.batches(chunk))


class RayExecutor:
    name = "ray"

    @classmethod
    def from_settings(cls, settings: ExecutorSettings) -> RayExecutor:
        return cls(
            settings.fields,
            sorted(settings.encoders),
            settings.rates,
            settings.device,
            settings.batch_size,
            settings.address,
            transcripts=settings.transcripts,
        )

    def __init__(
        self,
        fields: list[Field],
        encoder_names: list[str],
        rates: dict[str, tuple[int, ...]],
        device: str | None = None,
        batch_size: int = 64,
        address: str | None = None,
        actors: int | None = None,
        transcripts: Mapping[str, str] | None = None,
        audio_budget: int = AUDIO_BUDGET_SAMPLES,
        clip_seconds: float = MAX_AUDIO_SECONDS,
    ) -> None:
        self.fields, self.encoder_names, self.rates = fields, encoder_names, rates
        self.transcripts = transcripts if transcripts is not None else {}  # the run's, updated chunk by chunk
        self.device, self.batch_size, self.address, self.actors = device, batch_size, address, actors
        self.audio_budget, self.clip_seconds = audio_budget, clip_seconds
        self.handles: list | None = None  # the actors, kept from one call to the next until `close`

    def _said(self, chunk: list[WorkItem]) -> dict[str, str]:
        """The transcripts of the chunk's recordings: each actor is sent only its own."""
        return {w.sha256: self.transcripts[w.sha256] for w in chunk if w.sha256 and w.sha256 in self.transcripts}

    def start(self, num_cpus: int | None = None) -> ModuleType:  # the ray module, imported late
        """Join the cluster (`address`, else $RAY_ADDRESS), or start a local one of `num_cpus` (default all).
        A run starts it on its first batch; calling it first keeps the start out of what a caller times."""
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError("--executor ray needs the ray package: pip install -r requirements.txt") from exc
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS")
            try:
                self._init(ray, address, num_cpus)
            except (ConnectionError, ray.exceptions.RayError) as exc:
                where = f"join the Ray cluster at {address}" if address else "start a local Ray cluster"
                raise ClusterError(f"cannot {where}: {_first_line(exc)}{auth_hint()}") from exc
        return ray

    def _init(self, ray, address: str | None, num_cpus: int | None) -> None:  # noqa: ANN001 - the ray module
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,  # a cluster that exists has its own size
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            runtime_env={
                "py_modules": [str(p) for p in PACKAGES],
                "env_vars": {
                    k: v for k, v in os.environ.items() if k.startswith(("HF_", "TRANSFORMERS_", "RETRIEVAL_"))
                },
            },
        )

    def batches(self, work: list[WorkItem]) -> Iterator[EncodedBatch]:
        if not work:
            return
        ray = self.start()
        from ray.util import ActorPool

        chunks = [work[i : i + self.batch_size] for i in range(0, len(work), self.batch_size)]
        try:
            pool = ActorPool(self._actors(ray, len(chunks)))
            for batches in pool.map_unordered(lambda a, chunk: a.run.remote(chunk, self._said(chunk)), chunks):
                yield from batches
        except ray.exceptions.ActorDiedError as exc:
            self.close()
            if not auth_hint():
                raise
            raise ClusterError(
                f"a Ray worker died before it encoded anything: {_first_line(exc)}{auth_hint()}"
            ) from exc

    def _actors(self, ray, chunks: int) -> list:  # noqa: ANN001 - the ray module
        """The actors, started at the first call (one per CPU or GPU, no more than its chunks): each loads
        the encoders once a run, not once a chunk of the source."""
        if self.handles is None:
            gpu = self.device not in (None, "cpu") and ray.cluster_resources().get("GPU", 0) > 0
            count = self.actors or max(1, int(ray.cluster_resources().get("GPU" if gpu else "CPU", 1)))
            count = min(count, chunks)
            actor = ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0)(EncodeWorker)
            share = self.audio_budget // count  # every actor may hold its share at once
            args = (self.fields, self.encoder_names, self.device, self.batch_size, self.rates, share, self.clip_seconds)
            self.handles = [actor.remote(*args) for _ in range(count)]
        return self.handles

    def close(self) -> None:
        if self.handles:
            import ray

            for handle in self.handles:
                ray.kill(handle)
        self.handles = None


def auth_hint() -> str:
    """Why Ray may refuse this process: from 2.60 a cluster authenticates with a token once one exists
    (~/.ray/auth_token, RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH), and a process without RAY_AUTH_MODE=token is
    refused (AuthenticationError, or a bare ConnectionError / ActorDiedError). "" where that cannot be it."""
    token = os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or TOKEN_FILE.exists()
    if not token or os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ""
    return (
        ". A Ray token is set up here but RAY_AUTH_MODE is not 'token': a cluster started with a token refuses "
        "this process. export RAY_AUTH_MODE=token (with the cluster's token in ~/.ray/auth_token or "
        "RAY_AUTH_TOKEN) on every node and here"
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
