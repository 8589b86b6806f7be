"""Where the windows run, and what to do when CUDA runs out of memory.

"auto" means CUDA when torch sees one, else the CPU. The whole volume and the accumulated
outputs always stay on the CPU; only window batches travel to the device, so device memory
grows with ``window_batch`` and the patch, not with the volume.

Out of memory on the device: the sweep restarts with half the window batch, down to one
window; if even that fails it restarts on the CPU with one window per batch. Each step is an
``InferenceMemoryWarning`` naming the device and batch size that failed.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ...errors import SemisegError


class DeviceError(SemisegError):
    """The requested device does not exist here."""


class InferenceMemoryWarning(UserWarning):
    """Inference ran out of device memory and continues with a smaller batch or on the CPU."""


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` if available else ``cpu``; any other torch device string is checked.

    Raises:
        DeviceError: a CUDA device is asked for and torch sees none (or not that index).
    """
    if isinstance(spec, str) and spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {spec!r} ({exc}); use 'auto', 'cpu' or 'cuda[:N]'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} asked for, but this torch sees no CUDA device; "
                              "use 'auto' or 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r} asked for, but only {torch.cuda.device_count()} CUDA "
                              "device(s) are visible")
    return device


def memory_fallbacks(device: torch.device, window_batch: int) -> Iterator[tuple[torch.device, int]]:
    """The (device, window batch) attempts, in order: halve the batch to 1, then the CPU with 1."""
    batch = max(1, int(window_batch))
    while True:
        yield device, batch
        if batch == 1:
            break
        batch = max(1, batch // 2)
    yield torch.device("cpu"), 1


def release_cached_memory() -> None:
    """Give the CUDA caching allocator's free blocks back after an out-of-memory error."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
