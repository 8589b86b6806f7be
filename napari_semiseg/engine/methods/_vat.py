"""Virtual adversarial training with a Dice divergence: SS-Net's smoothness term L_lds
(docs/METHODS.md §2.1 step 3).

Given a batch x (B, C, Z, Y, X) and the network's own prediction q on it (a constant):

1. d ~ Uniform(−½, ½) per voxel, L2-normalised per sample (norm over C, Z, Y, X; +1e-8);
2. power iteration(s): g = ∂D(softmax(f(x + ξ·d)), q)/∂d, d ← g / ‖g‖ per sample;
3. r_adv = ε·d; L_lds = D(softmax(f(x + r_adv)), q), the gradient flowing into f only.

D is SS-Net's plain-binary Dice over the whole tensor (both channels, all samples):
1 − (2Σp̂·q + 1e-8)/(Σp̂ + Σq + 1e-8). During steps 2 and 3 BatchNorm layers normalise with
batch statistics but do not update their running statistics (the code toggles
``track_running_stats``); dropout still samples. The inner gradient is taken with
``torch.autograd.grad`` with respect to d alone, so no parameter ``.grad`` is touched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._losses import binary_dice_loss

#: Added to the per-sample norm before dividing (the code's value).
NORM_EPS = 1e-8

Divergence = Callable[[Tensor, Tensor], Tensor]
LogitsFn = Callable[[Tensor], Tensor]


def dice_divergence(prob: Tensor, target: Tensor) -> Tensor:
    """SS-Net's VAT divergence: plain-binary Dice over every element (both channels, batch)."""
    return binary_dice_loss(prob, target)


def l2_normalise_per_sample(d: Tensor) -> Tensor:
    """d / (‖d_b‖₂ + 1e-8) for each sample b (norm over all non-batch axes)."""
    norms = d.flatten(1).norm(dim=1).view(-1, *([1] * (d.dim() - 1)))
    return d / (norms + NORM_EPS)


@contextlib.contextmanager
def batchnorm_statistics_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers of ``module`` use batch statistics but leave their running ones alone.

    In train mode a BatchNorm with ``track_running_stats = False`` normalises with the batch's
    statistics and updates no buffer (nor ``num_batches_tracked``): what the official
    ``_disable_tracking_bn_stats`` does by toggling the flag. Only BatchNorm layers are
    touched (the code toggles every module with the attribute; for the shipped networks
    those are the same layers). The flags are restored on exit, also after an exception.
    """
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    previous = [m.track_running_stats for m in layers]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer, flag in zip(layers, previous):
            layer.track_running_stats = flag


@dataclass
class VATResult:
    """What ``virtual_adversarial_loss`` computed.

    Attributes:
        loss: L_lds, a scalar carrying the gradient of the perturbed pass.
        perturbation: r_adv = ε·d, (B, C, Z, Y, X), detached.
        target: q, the (B, K, Z, Y, X) probabilities the divergence compares with.
    """

    loss: Tensor
    perturbation: Tensor
    target: Tensor


def virtual_adversarial_loss(model: LogitsFn, x: Tensor, *, xi: float, epsilon: float, iterations: int = 1,
                             target: Tensor | None = None, bn_module: nn.Module | None = None,
                             inner_model: LogitsFn | None = None,
                             divergence: Divergence = dice_divergence) -> VATResult:
    """L_lds of a batch; see the module docstring.

    Args:
        model: maps (B, C, Z, Y, X) images to (B, K, Z, Y, X) logits; the perturbed pass
            goes through it (under DDP: the wrapper, so that it sees the parameters' use).
        x: the batch, labelled and unlabelled alike.
        xi: ξ, the finite-difference step of the power iteration (10 in SS-Net).
        epsilon: ε, the L2 norm of the final perturbation per sample (10 on LA, 6 on ACDC).
        iterations: power iterations (1).
        target: q; None computes softmax(model(x)) without gradient, in the caller's mode
            (SS-Net: train mode, so dropout samples and BatchNorm updates its statistics).
        bn_module: the module whose BatchNorm statistics stay frozen during the perturbed
            passes (the bare network); None uses ``model`` when it is an ``nn.Module``.
        inner_model: used for the target and power-iteration passes, whose results carry
            no parameter gradient (the bare network under DDP); None uses ``model``.
        divergence: D(p̂, q), plain-binary Dice by default.

    Returns:
        The ``VATResult``.
    """
    inner = inner_model or model
    frozen = bn_module if bn_module is not None else (model if isinstance(model, nn.Module) else None)
    if target is None:
        with torch.no_grad():
            target = torch.softmax(inner(x), dim=1)
    target = target.detach()
    d = l2_normalise_per_sample(torch.rand(x.shape, device=x.device, dtype=x.dtype) - 0.5)
    with batchnorm_statistics_frozen(frozen) if frozen is not None else contextlib.nullcontext():
        for _ in range(iterations):
            d = d.detach().requires_grad_(True)
            distance = divergence(torch.softmax(inner(x + xi * d), dim=1), target)
            (gradient,) = torch.autograd.grad(distance, d)
            d = l2_normalise_per_sample(gradient.detach())
        perturbation = (epsilon * d).detach()
        loss = divergence(torch.softmax(model(x + perturbation), dim=1), target)
    return VATResult(loss, perturbation, target)


__all__ = ["NORM_EPS", "VATResult", "batchnorm_statistics_frozen", "dice_divergence", "l2_normalise_per_sample",
           "virtual_adversarial_loss"]
