"""The small torch modules behind the learned strategies: one input convention, one output.

Every module takes one block per field (B x d_f, zeros where absent) and a presence mask (B x F), and
returns an L2-normalised fused vector (B x D). The same module fuses items and queries, so a query with
only audio lands in the same space as an item with only an image: that is what training aligns.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import erf
from torch import nn

from retrieval.linalg import l2_normalise


class FusionModule(nn.Module):
    kind: ClassVar[str]
    # the hyper-parameters (besides dims, out_dim, dropout) that training reads from its config by name
    config_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, dims: list[int], out_dim: int = 128, **hyper: Any) -> None:
        super().__init__()
        self.dims, self.out_dim, self.hyper = list(dims), out_dim, hyper
        self._numpy: dict[str, np.ndarray] | None = None  # float32 weights for the numpy forward pass

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "dims": self.dims, "out_dim": self.out_dim, **self.hyper}

    def forward(self, blocks: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fuse(blocks, mask), dim=-1)

    def fuse(self, blocks: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_numpy(self, blocks: list[np.ndarray], mask: np.ndarray) -> np.ndarray | None:
        """The same forward pass in numpy, for a query's few rows, or None where a module has none.

        A search fuses one query (and its leave-one-out variants): torch's per-operation dispatch costs
        ~1 ms there, more than the index search itself; numpy does the same arithmetic in ~0.1 ms.
        `blocks` may hold one row that every row of `mask` shares (a query under several masks): the
        arithmetic broadcasts, so each field is projected once.
        """
        return None

    def weights_numpy(self) -> dict[str, np.ndarray]:
        """The parameters as float32 arrays, taken once (inference only: eval mode, no further training)."""
        weights = self._numpy
        if weights is None:
            weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.state_dict().items()}
            self._numpy = weights
        return weights

    def train(self, mode: bool = True) -> FusionModule:
        self._numpy = None  # weights may change: take them again after training
        return super().train(mode)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)).astype(np.float32))


def _mlp_numpy(w: dict[str, np.ndarray], prefix: str, x: np.ndarray) -> np.ndarray:
    """`_mlp` in numpy: one Linear, or Linear, GELU, (Dropout: identity), Linear."""
    if f"{prefix}.weight" in w:
        return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]
    hidden = _gelu(x @ w[f"{prefix}.0.weight"].T + w[f"{prefix}.0.bias"])
    return hidden @ w[f"{prefix}.3.weight"].T + w[f"{prefix}.3.bias"]


def _layer_norm(x: np.ndarray, w: dict[str, np.ndarray], prefix: str, eps: float = 1e-5) -> np.ndarray:
    centred = x - x.mean(axis=-1, keepdims=True)
    scale = np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
    return centred / scale * w[f"{prefix}.weight"] + w[f"{prefix}.bias"]


def _mlp(d_in: int, d_out: int, hidden: int, dropout: float) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(d_in, d_out)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))


class EarlyProjection(FusionModule):
    """Concatenate, then project (linear, or an MLP when hidden > 0); gaps are zeros or learned vectors."""

    kind = "early"
    config_keys = ("hidden",)

    def __init__(
        self, dims: list[int], out_dim: int = 128, hidden: int = 256, dropout: float = 0.1, missing: str = "learned"
    ) -> None:
        super().__init__(dims, out_dim, hidden=hidden, dropout=dropout, missing=missing)
        self.missing = nn.ParameterList(
            [nn.Parameter(torch.zeros(d), requires_grad=missing == "learned") for d in dims]
        )
        self.project = _mlp(sum(dims), out_dim, hidden, dropout)

    def fuse(self, blocks: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        filled = [torch.where(mask[:, i : i + 1], b, self.missing[i].expand_as(b)) for i, b in enumerate(blocks)]
        return self.project(torch.cat(filled, dim=-1))

    def forward_numpy(self, blocks: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
        w = self.weights_numpy()
        filled = [np.where(mask[:, i : i + 1], b, w[f"missing.{i}"]) for i, b in enumerate(blocks)]
        return l2_normalise(_mlp_numpy(w, "project", np.concatenate(filled, axis=1)))


class GatedNet(FusionModule):
    """Σ gate_f × projection_f(x_f); gates are sigmoids of all present inputs and the presence mask."""

    kind = "gated"
    config_keys = ("hidden",)

    def __init__(self, dims: list[int], out_dim: int = 128, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__(dims, out_dim, hidden=hidden, dropout=dropout)
        self.project = nn.ModuleList([_mlp(d, out_dim, hidden, dropout) for d in dims])
        self.gate = nn.Sequential(
            nn.Linear(sum(dims) + len(dims), hidden or 64), nn.GELU(), nn.Linear(hidden or 64, len(dims))
        )

    def gates(self, blocks: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        inputs = torch.cat([*(b * mask[:, i : i + 1] for i, b in enumerate(blocks)), mask.float()], dim=-1)
        return torch.sigmoid(self.gate(inputs)) * mask.float()

    def fuse(self, blocks: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        gates = self.gates(blocks, mask)
        projected = torch.stack([F.normalize(p(b), dim=-1) for p, b in zip(self.project, blocks)], dim=1)
        return (gates.unsqueeze(-1) * projected).sum(dim=1)

    def gates_numpy(self, blocks: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
        """Each row's gate per field (0 where absent): what a result's explanation shows."""
        w = self.weights_numpy()
        present = mask.astype(np.float32)
        weight = w["gate.0.weight"]
        if len(mask) > 1 and all(len(b) == 1 for b in blocks):
            # one query row under several masks: the first layer is linear in each field's masked block, so
            # each field's part is taken once and the masks mix them (the concatenated rows' product was
            # ~70 of a query's ~140 us here, on one BLAS thread)
            ends = np.cumsum(self.dims).tolist()
            parts = [b[0] @ weight[:, end - len(b[0]) : end].T for b, end in zip(blocks, ends)]
            hidden = _gelu(present @ (np.stack(parts) + weight[:, ends[-1] :].T) + w["gate.0.bias"])
        else:
            inputs = np.concatenate([*(b * present[:, i : i + 1] for i, b in enumerate(blocks)), present], axis=1)
            hidden = _gelu(inputs @ weight.T + w["gate.0.bias"])
        return present / (1.0 + np.exp(-(hidden @ w["gate.2.weight"].T + w["gate.2.bias"])))

    def forward_numpy(self, blocks: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
        w = self.weights_numpy()
        gates = self.gates_numpy(blocks, mask)
        fused = sum(gates[:, i : i + 1] * l2_normalise(_mlp_numpy(w, f"project.{i}", b)) for i, b in enumerate(blocks))
        return l2_normalise(fused)


class CrossAttentionNet(FusionModule):
    """Each present field is a token (projection + modality embedding); attention lets them inform each
    other; a masked mean pools the tokens into one vector."""

    kind = "cross_attention"
    config_keys = ("width", "heads", "layers")

    def __init__(
        self,
        dims: list[int],
        out_dim: int = 128,
        width: int = 128,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(dims, out_dim, width=width, heads=heads, layers=layers, dropout=dropout)
        self.project = nn.ModuleList([nn.Linear(d, width) for d in dims])
        self.modality = nn.Parameter(torch.randn(len(dims), width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, dim_feedforward=2 * width, dropout=dropout, batch_first=True, norm_first=True
        )
        self.attention = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(width, out_dim)

    def fuse(self, blocks: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        tokens = torch.stack([p(b) for p, b in zip(self.project, blocks)], dim=1) + self.modality
        attended = self.attention(tokens, src_key_padding_mask=~mask)
        weights = mask.float().unsqueeze(-1)
        pooled = (attended * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        return self.out(pooled)

    def attention_numpy(self, blocks: list[np.ndarray], mask: np.ndarray) -> np.ndarray:
        """rows x fields x fields: how much each field's token attended to each other's, averaged over
        heads and layers (what a result's explanation shows)."""
        maps: list[np.ndarray] = []
        self.forward_numpy(blocks, mask, attention=maps)
        return np.mean(maps, axis=0)

    def forward_numpy(
        self, blocks: list[np.ndarray], mask: np.ndarray, attention: list[np.ndarray] | None = None
    ) -> np.ndarray:
        """The encoder layers written out (pre-norm attention, then a ReLU feed-forward, each residual).
        With `attention`, each layer's head-averaged attention map is appended to it."""
        w = self.weights_numpy()
        heads = self.hyper["heads"]
        tokens = (
            np.stack([b @ w[f"project.{i}.weight"].T + w[f"project.{i}.bias"] for i, b in enumerate(blocks)], axis=1)
            + w["modality"]
        )
        x = np.broadcast_to(tokens, (len(mask), *tokens.shape[1:]))  # one query row under several masks
        rows, count, width = x.shape
        blocked = np.where(mask[:, None, None, :], 0.0, -1e9).astype(np.float32)  # padded keys get no weight
        for layer in range(self.hyper["layers"]):
            p = f"attention.layers.{layer}."
            qkv = _layer_norm(x, w, p + "norm1") @ w[p + "self_attn.in_proj_weight"].T + w[p + "self_attn.in_proj_bias"]
            q, k, v = (part.reshape(rows, count, heads, -1).transpose(0, 2, 1, 3) for part in np.split(qkv, 3, axis=-1))
            scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1]) + blocked
            weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            if attention is not None:
                attention.append(weights.mean(axis=1))
            attended = (weights @ v).transpose(0, 2, 1, 3).reshape(rows, count, width)
            x = x + attended @ w[p + "self_attn.out_proj.weight"].T + w[p + "self_attn.out_proj.bias"]
            hidden = np.maximum(_layer_norm(x, w, p + "norm2") @ w[p + "linear1.weight"].T + w[p + "linear1.bias"], 0)
            x = x + hidden @ w[p + "linear2.weight"].T + w[p + "linear2.bias"]
        present = mask.astype(np.float32)[..., None]
        pooled = (x * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1.0)
        return l2_normalise(pooled @ w["out.weight"].T + w["out.bias"])


MODULES: dict[str, type[FusionModule]] = {m.kind: m for m in (EarlyProjection, GatedNet, CrossAttentionNet)}


def build_module(config: dict[str, Any]) -> FusionModule:
    config = dict(config)
    return MODULES[config.pop("kind")](**config)
