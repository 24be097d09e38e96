"""One `get_device()`: CUDA, then Apple's MPS, then the CPU. `None` everywhere means "pick for me"."""

from __future__ import annotations

import torch


def get_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def half_precision(device: torch.device) -> bool:
    """fp16 where it is fast and safe (CUDA); fp32 elsewhere."""
    return device.type == "cuda"
