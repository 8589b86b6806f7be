"""The exponential-moving-average teacher of Mean Teacher and UA-MT (docs/METHODS.md §7.1, §7.2).

After every optimiser step the teacher's parameters move towards the student's:
θ_teacher ← α·θ_teacher + (1 − α)·θ_student with α = min(1 − 1/(t + 1), α_max), where t is
the 0-based step that was just taken (so at t = 0 the teacher becomes a copy of the student,
and α reaches α_max = 0.99 from t = 99 on). As in the official code only *parameters* are
averaged: the teacher's BatchNorm buffers follow its own forward passes (it trains in
train mode), unless ``buffers=True`` asks for them to be averaged too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def ema_decay(iteration: int, ceiling: float) -> float:
    """α = min(1 − 1/(t + 1), ceiling) for the 0-based step t (0 at t = 0)."""
    return min(1.0 - 1.0 / (iteration + 1.0), float(ceiling))


def frozen_copy(student: nn.Module, factory_copy: nn.Module) -> nn.Module:
    """Turn ``factory_copy`` (a freshly built network of the student's shape) into its teacher.

    The copy gets the student's weights and buffers and no longer requires gradients, so it
    stays out of the optimiser and out of autograd graphs.
    """
    factory_copy.load_state_dict(student.state_dict())
    for parameter in factory_copy.parameters():
        parameter.requires_grad_(False)
    return factory_copy


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, decay: float, *, buffers: bool = False) -> None:
    """θ_teacher ← decay·θ_teacher + (1 − decay)·θ_student, in place, parameter by parameter.

    Args:
        teacher, student: networks of one architecture (parameters in the same order).
        decay: α in [0, 1].
        buffers: also average floating-point buffers (BatchNorm running statistics); integer
            buffers (``num_batches_tracked``) are copied. The official code averages none.
    """
    for target, source in zip(teacher.parameters(), student.parameters()):
        target.mul_(decay).add_(source.detach(), alpha=1.0 - decay)
    if buffers:
        for target, source in zip(teacher.buffers(), student.buffers()):
            if torch.is_floating_point(target):
                target.mul_(decay).add_(source, alpha=1.0 - decay)
            else:
                target.copy_(source)


def clamped_gaussian_noise(like: Tensor, std: float, clip: float) -> Tensor:
    """The teacher's input noise clamp(N(0, std²), −clip, clip), shaped like ``like``.

    ``clip`` ≤ 0 leaves the Gaussian unclamped.

    Drawn from torch's global generator on ``like``'s device (the trainer seeds and
    checkpoints it, so runs repeat and resume exactly).
    """
    noise = torch.randn_like(like) * std
    return noise.clamp(-clip, clip) if clip > 0 else noise


__all__ = ["clamped_gaussian_noise", "ema_decay", "frozen_copy", "update_ema"]
