"""One code path for one process and for ``torchrun``: devices, process groups, DDP wrapping.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the trainer joins a process group
(NCCL on CUDA, gloo on CPU), each rank uses ``cuda:LOCAL_RANK`` (or the CPU), the trainable
networks are wrapped in ``DistributedDataParallel`` (gradients averaged over ranks, so the
weights stay identical), every rank samples its own batches (its rank is in the data seed),
and rank 0 alone writes events, checkpoints and the model. Alone, all of this is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ._config import TrainingError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands.

    Attributes:
        rank, world_size, local_rank: as torchrun sets them (0, 1, 0 alone).
        device: the device this process trains on.
        owns_group: this module created the process group (and destroys it at the end).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` → CUDA (this rank's GPU) when present, else CPU; other names as given.

    Raises:
        TrainingError: CUDA was asked for but is not available.
    """
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainingError(f"device {preference!r} was asked for but CUDA is not available here")
        if preference == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
    try:
        return torch.device(preference)
    except RuntimeError:
        raise TrainingError(f"unknown device {preference!r}; use auto, cpu, cuda or cuda:N") from None


def init_distributed(device_preference: str) -> DistributedContext:
    """Join the ``torchrun`` process group when there is one; pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size <= 1:
        return DistributedContext(0, 1, 0, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)


def shutdown(context: DistributedContext) -> None:
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def ddp_wrapper(context: DistributedContext):
    """A ``wrap(module, find_unused) -> module`` for ``Method.wrap_trainable``."""
    def wrap(module: nn.Module, find_unused: bool) -> nn.Module:
        if not context.distributed:
            return module
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=find_unused)
    return wrap


def any_rank(flag: bool, context: DistributedContext) -> bool:
    """True on every rank when ``flag`` is True on at least one (a stop must be unanimous)."""
    if not context.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """``obj`` of every rank, in rank order (just ``[obj]`` alone)."""
    if not context.distributed:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(context: DistributedContext) -> None:
    if context.distributed:
        dist.barrier()


__all__ = ["DistributedContext", "any_rank", "barrier", "ddp_wrapper", "gather_objects", "init_distributed",
           "resolve_device", "shutdown"]
