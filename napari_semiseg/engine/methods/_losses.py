"""The Dice-loss variants of the papers (docs/METHODS.md §1.3), kept distinct on purpose.

They differ in their denominators and smoothing constants, and the published numbers depend
on which one a method used. All are **batch-global**: one sum over the batch and all voxels,
not a mean of per-sample losses. Probabilities are softmax outputs, (B, K, Z, Y, X); labels
are int64 class indices, (B, Z, Y, X).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SQUARED_SMOOTH = 1e-5
BINARY_SMOOTH = 1e-8
DICE_KINDS = ("squared", "binary", "multiclass")


def squared_dice_loss(prob: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """UA-MT / CrossMatch / SSL4MIS Dice: 1 − (2Σp·g + 1e-5) / (Σp² + Σg² + 1e-5).

    Args:
        prob: probabilities of one class, any shape (e.g. (B, Z, Y, X)).
        target: its 0/1 target, same shape (float or bool).
        mask: optional 0/1 map of the voxels that count (CrossMatch ignores voxels below its
            confidence threshold); same shape.

    Returns:
        A scalar tensor.
    """
    target = target.to(prob.dtype)
    if mask is not None:
        mask = mask.to(prob.dtype)
        prob, target = prob * mask, target * mask
    intersection = (prob * target).sum()
    denominator = (prob * prob).sum() + (target * target).sum()
    return 1.0 - (2.0 * intersection + SQUARED_SMOOTH) / (denominator + SQUARED_SMOOTH)


def binary_dice_loss(prob: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """SS-Net's "plain binary" Dice: 1 − (2Σp·g + 1e-8) / (Σp + Σg + 1e-8); arguments as
    ``squared_dice_loss``."""
    target = target.to(prob.dtype)
    if mask is not None:
        mask = mask.to(prob.dtype)
        prob, target = prob * mask, target * mask
    intersection = (prob * target).sum()
    return 1.0 - (2.0 * intersection + BINARY_SMOOTH) / (prob.sum() + target.sum() + BINARY_SMOOTH)


def multiclass_dice_loss(probs: Tensor, labels: Tensor) -> Tensor:
    """SSL4MIS ``DiceLoss(K)``: the squared Dice of every class, background included, averaged.

    Args:
        probs: (B, K, Z, Y, X) softmax probabilities.
        labels: (B, Z, Y, X) int64 class indices.
    """
    classes = probs.shape[1]
    losses = [squared_dice_loss(probs[:, c], labels == c) for c in range(classes)]
    return torch.stack(losses).mean()


def foreground_dice_loss(probs: Tensor, labels: Tensor, kind: str = "squared") -> Tensor:
    """A Dice loss of the foreground: the papers' foreground-channel loss for 2 classes.

    Args:
        probs: (B, K, Z, Y, X) softmax probabilities.
        labels: (B, Z, Y, X) int64 class indices.
        kind: ``"squared"`` or ``"binary"``: that variant on each foreground class
            1..K−1, averaged (for K = 2 exactly the papers' loss on channel 1);
            ``"multiclass"``: ``multiclass_dice_loss`` (background included).
    """
    if kind == "multiclass":
        return multiclass_dice_loss(probs, labels)
    loss = {"squared": squared_dice_loss, "binary": binary_dice_loss}[kind]
    return torch.stack([loss(probs[:, c], labels == c) for c in range(1, probs.shape[1])]).mean()


def dice_and_cross_entropy(logits: Tensor, labels: Tensor, *, dice: str = "squared",
                           ce_weight: float = 0.5, dice_weight: float = 0.5) -> dict[str, Tensor]:
    """The supervised loss ce_weight·CE + dice_weight·Dice (½·(CE + squared Dice) by default:
    UA-MT's and CrossMatch's L_sup).

    Args:
        logits: (B, K, Z, Y, X) network outputs.
        labels: (B, Z, Y, X) int64 class indices.
        dice: one of ``DICE_KINDS`` (see ``foreground_dice_loss``).
        ce_weight, dice_weight: the two weights.

    Returns:
        ``{"ce", "dice", "total"}`` scalar tensors (``total`` carries the gradient).
    """
    ce = F.cross_entropy(logits, labels)
    dice_loss = foreground_dice_loss(torch.softmax(logits, dim=1), labels, dice)
    return {"ce": ce, "dice": dice_loss, "total": ce_weight * ce + dice_weight * dice_loss}


__all__ = ["BINARY_SMOOTH", "DICE_KINDS", "SQUARED_SMOOTH", "binary_dice_loss", "dice_and_cross_entropy",
           "foreground_dice_loss", "multiclass_dice_loss", "squared_dice_loss"]
