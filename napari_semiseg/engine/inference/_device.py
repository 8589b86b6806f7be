"""Where the windows run, and what to do when CUDA runs out of memory.

"auto" means CUDA when torch sees one, else the CPU. On CUDA the preprocessed volume and the
accumulated outputs live on the device (a few copies of the volume, small beside a window
batch's activations); the window batch is sized from the free device memory
(``window_batch_for_memory``) unless the caller gives one.

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


#: Bytes a window costs the network per voxel and base filter at inference: the widest stage's
#: activations (base_filters channels, full resolution) a few times over, in float32 to be safe.
BYTES_PER_VOXEL_FILTER = 4 * 6
#: Share of the free device memory the window batches may take; the rest is for the outputs,
#: cuDNN workspaces and other processes.
MEMORY_SHARE = 0.5
#: Beyond this many windows per call the GPU is busy anyway and a sweep only waits longer for
#: its first report (cancellation, progress).
MAX_WINDOW_BATCH = 32


def window_batch_for_memory(device: torch.device, card, passes: int = 1) -> int | None:
    """Windows per network call that fit ``MEMORY_SHARE`` of the free memory of a CUDA device
    (each call runs ``passes`` MC samples of every window); None on the CPU (the card decides)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    voxels = 1
    for size in card.patch_size:
        voxels *= int(size)
    per_window = voxels * max(1, card.network.base_filters) * BYTES_PER_VOXEL_FILTER * max(1, passes)
    return max(1, min(MAX_WINDOW_BATCH, int(free * MEMORY_SHARE // per_window)))


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
