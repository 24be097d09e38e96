"""One `get_device()`: CUDA, then Apple's MPS, then the CPU. `None` everywhere means "pick for me".

A device that was asked for by name but is not on this machine is a `DeviceNotFoundError` (a user error:
one line that lists the devices that are), not torch's traceback from deep inside a model's `.to()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.errors import NotFoundError

if TYPE_CHECKING:
    import torch


class DeviceNotFoundError(NotFoundError):
    """`--device` names a device this machine does not have."""


def available_devices() -> list[str]:
    """What `--device` accepts here: cpu, then cuda:0..N-1, then mps."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{n}" for n in range(torch.cuda.device_count())]
    if _mps_available():
        devices.append("mps")
    return devices


def _mps_available() -> bool:
    import torch

    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def _best() -> torch.device:
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_device(device: str | torch.device | None = None) -> torch.device:
    """`None` or "auto": the best device here; "gpu": the best accelerator (an error when there is none);
    otherwise a torch device name, checked against what this machine has."""
    import torch

    if device is None or str(device) == "auto":
        return _best()
    name = str(device).strip().lower()
    here = ", ".join(available_devices())
    if name == "gpu":
        best = _best()
        if best.type == "cpu":
            raise DeviceNotFoundError(f"--device gpu: this machine has no GPU (CUDA or MPS); devices here: {here}")
        return best
    try:
        chosen = torch.device(name)
    except RuntimeError:
        raise DeviceNotFoundError(f"--device {device}: not a device name; devices here: {here}") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceNotFoundError(f"--device {device}: this machine has no CUDA GPU; devices here: {here}")
        if chosen.index is not None and chosen.index >= count:
            raise DeviceNotFoundError(f"--device {device}: there is no CUDA GPU {chosen.index}; devices here: {here}")
    elif chosen.type == "mps" and not _mps_available():
        raise DeviceNotFoundError(f"--device {device}: Apple's MPS is not available here; devices here: {here}")
    elif chosen.type not in ("cpu", "cuda", "mps"):
        raise DeviceNotFoundError(f"--device {device}: not supported; devices here: {here}")
    return chosen


def check_device(device: str | None) -> None:
    """Refuse a `--device` this machine lacks, before any work; None, "auto" and "cpu" are always here.

    Those three are answered without importing torch (~2.3 s here), so an indexer whose encoders need no
    torch (the offline features: HOG, MFCC) never loads it, in its process or in its Ray workers."""
    if device is None or str(device).strip().lower() in ("auto", "cpu"):
        return
    get_device(device)


def half_precision(device: torch.device) -> bool:
    """fp16 where it is fast and safe (CUDA); fp32 elsewhere."""
    return device.type == "cuda"
