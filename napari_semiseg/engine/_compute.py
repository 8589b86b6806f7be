"""How the network computes on a device: precision, memory format, kernel determinism.

One place decides, for training and inference alike, what ``"auto"`` means on a device:

- ``precision``: ``"bf16"`` (autocast of convolutions and matrix products to bfloat16) on CUDA,
  ``"fp32"`` on the CPU, where bf16 convolutions are slower and today's results must not move.
  Under autocast, softmax, log, exp, sums and the losses still run in float32 (PyTorch's
  autocast rules), and the shipped networks hand their logits back as float32.
- ``channels_last``: the ``channels_last_3d`` memory format for networks and inputs on CUDA,
  where cuDNN's bf16 convolution kernels want it (the issue measured 59 → 20 ms a step).
- ``deterministic``: deterministic algorithms on the CPU (bitwise-repeatable resume) and off
  on CUDA, where ``cudnn.benchmark`` then picks the fastest kernels instead.

``ComputeMode.resolve`` turns the run's settings into concrete booleans once; the result is
what the start event, the checkpoint and the model file record.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .cards import PRECISIONS


def _is_cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"auto"`` → ``"bf16"`` on CUDA, ``"fp32"`` elsewhere; bf16 is never used off CUDA."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if not _is_cuda(device):
        return "fp32"
    return "bf16" if precision == "auto" else precision


@dataclass(frozen=True)
class ComputeMode:
    """The concrete settings of a run or an inference call on one device.

    Attributes:
        precision: ``"bf16"`` or ``"fp32"``.
        channels_last: networks and inputs in ``channels_last_3d``.
        deterministic: deterministic kernels (and no ``cudnn.benchmark``).
        device: where it runs (``"cpu"``, ``"cuda:0"``...).
    """

    precision: str = "fp32"
    channels_last: bool = False
    deterministic: bool = True
    device: str = "cpu"

    @classmethod
    def resolve(cls, device: torch.device | str, *, precision: str = "auto", channels_last: bool | None = None,
                deterministic: bool | None = None) -> "ComputeMode":
        """Concrete settings; None and ``"auto"`` take the device's defaults (module docstring)."""
        cuda = _is_cuda(device)
        return cls(precision=resolve_precision(precision, device),
                   channels_last=cuda if channels_last is None else bool(channels_last and cuda),
                   deterministic=(not cuda) if deterministic is None else bool(deterministic),
                   device=str(torch.device(device)))

    def to_dict(self) -> dict:
        return asdict(self)

    def autocast(self):
        """The context the forward passes run in: bf16 autocast (on CUDA, as ``resolve`` makes it), else nothing."""
        if self.precision == "bf16":
            return torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare_network(self, net: nn.Module) -> nn.Module:
        """Put ``net``'s weights in this mode's memory format (in place); returns it."""
        if self.channels_last:
            net.to(memory_format=torch.channels_last_3d)
        return net

    def prepare_input(self, tensor: torch.Tensor) -> torch.Tensor:
        """A 5-D input batch in this mode's memory format (other tensors unchanged)."""
        if self.channels_last and tensor.ndim == 5:
            return tensor.contiguous(memory_format=torch.channels_last_3d)
        return tensor

    @contextlib.contextmanager
    def kernels(self):
        """Kernel selection for the duration of a run, then the caller's settings again.

        Deterministic: deterministic algorithms (warn-only: an op without a deterministic kernel
        warns instead of failing the run) and deterministic cuDNN. Otherwise, on CUDA,
        ``cudnn.benchmark``: the fixed-shape steps of a run amortise its search at once.
        """
        previous = (torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled(),
                    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        if self.deterministic:
            if _is_cuda(self.device):  # cuBLAS reads it when its first handle is made
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        elif _is_cuda(self.device):
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, True
        try:
            yield self
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]


def is_channels_last(net: nn.Module) -> bool:
    """Whether ``net``'s 5-D weights are stored in ``channels_last_3d``, judged by the first one whose
    two layouts differ (a weight with one input channel is laid out alike in both)."""
    for parameter in net.parameters():
        if parameter.ndim == 5:
            last = parameter.is_contiguous(memory_format=torch.channels_last_3d)
            if last != parameter.is_contiguous():
                return last
    return False


@contextlib.contextmanager
def network_memory_format(net: nn.Module, mode: ComputeMode):
    """``net`` in ``mode``'s memory format for a while, then in the format it had."""
    was_channels_last = is_channels_last(net)
    mode.prepare_network(net)
    try:
        yield net
    finally:
        if mode.channels_last and not was_channels_last:
            net.to(memory_format=torch.contiguous_format)


__all__ = ["PRECISIONS", "ComputeMode", "is_channels_last", "network_memory_format", "resolve_precision"]
