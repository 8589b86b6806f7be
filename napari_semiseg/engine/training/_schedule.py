"""Optimisers and learning-rate schedules, as the papers set them (docs/METHODS.md §2.1, §3.5, §7).

The learning rate of step t (0-based) is a pure function of t: the trainer sets it on the
optimiser before each step, so a resumed run needs no scheduler state.

- ``"step"``: lr·gamma^⌊t/step_size⌋ (UA-MT, SS-Net: 0.01, ×0.1 every 2500 steps);
- ``"poly"``: lr·(1 − t/horizon)^power, 0 from the horizon on (CrossMatch: horizon 17000
  whatever the run length; SSL4MIS: horizon = iterations);
- ``"constant"``: lr.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ._config import TrainConfig


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate of 0-based ``step`` under ``config``'s schedule."""
    if config.schedule == "step":
        return config.lr * config.gamma ** (step // config.step_size)
    if config.schedule == "poly":
        horizon = config.poly_horizon or config.iterations
        return config.lr * max(0.0, 1.0 - step / horizon) ** config.poly_power
    return config.lr


def build_optimizer(parameters: Iterable[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay, or AdamW with weight decay."""
    parameters = list(parameters)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


__all__ = ["build_optimizer", "learning_rate", "set_learning_rate"]
