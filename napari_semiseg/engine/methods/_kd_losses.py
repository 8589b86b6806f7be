"""Distillation terms of the dual-branch KD and PLC-KD methods (docs/METHODS.md §4.2, §6.3).

Logits and probabilities are (B, K, Z, Y, X); a voxel mask is bool (B, Z, Y, X). Every term
is a mean over the voxels that count (classes summed per voxel), in nats; an empty mask gives
0 (still part of the graph), never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._losses import squared_dice_loss


def masked_voxel_mean(values: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean of per-voxel ``values`` (B, Z, Y, X) over ``mask`` (all voxels when None)."""
    if mask is None:
        return values.mean()
    if not bool(mask.any()):
        return values.sum() * 0.0
    return values[mask].mean()


def shannon_entropy(logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """L_H: the mean over voxels of H(p) = −Σ_c p_c·ln p_c with p = softmax(logits).

    Computed from ``log_softmax`` so that a saturated class gives 0·(finite) = 0, not NaN.
    Gradient flows into ``logits``.

    Args:
        logits: (B, K, Z, Y, X) network outputs (the student's).
        mask: optional bool (B, Z, Y, X) of the voxels that count.

    Returns:
        A scalar in [0, ln K].
    """
    log_p = F.log_softmax(logits, dim=1)
    return masked_voxel_mean(-(log_p.exp() * log_p).sum(dim=1), mask)


def kl_divergence(target_prob: Tensor, student_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """L_KL: the mean over voxels of KL(q ‖ p) = Σ_c q_c·(ln q_c − ln p_c).

    ``q`` is the teacher's (or a stored soft label's) probabilities and is **detached**: the
    term moves the student only, never the teacher (the usual KD convention, docs/METHODS.md §4.2).
    0·ln 0 counts as 0, so soft labels with exact zeros (8-bit storage) are fine.

    Args:
        target_prob: (B, K, Z, Y, X) probabilities q, summing to 1 over K.
        student_logits: (B, K, Z, Y, X) the student's logits (p = softmax).
        mask: optional bool (B, Z, Y, X) of the voxels that count.

    Returns:
        A scalar ≥ 0.
    """
    q = target_prob.detach()
    log_p = F.log_softmax(student_logits, dim=1)
    per_voxel = (torch.xlogy(q, q) - q * log_p).sum(dim=1)
    return masked_voxel_mean(per_voxel, mask)


def soft_dice_loss(student_prob: Tensor, target_prob: Tensor, mask: Tensor | None = None) -> Tensor:
    """The squared Dice loss of each foreground class against a soft target, averaged.

    1 − (2Σp·q + 1e-5) / (Σp² + Σq² + 1e-5) per class c = 1..K−1 (batch-global sums, the
    supervised ``squared_dice_loss`` with a probability in place of the 0/1 label); the
    target is detached.
    """
    mask_ = None if mask is None else mask.to(student_prob.dtype)
    target = target_prob.detach()
    terms = [squared_dice_loss(student_prob[:, c], target[:, c], mask_) for c in range(1, student_prob.shape[1])]
    return torch.stack(terms).mean()


@torch.no_grad()
def hard_dice(logits: Tensor, labels: Tensor) -> Tensor:
    """Monitoring only: the Dice of argmax(logits) vs ``labels``, batch-global, averaged over
    the foreground classes (1 when a class is absent from both). A detached scalar."""
    prediction = logits.argmax(dim=1)
    scores = []
    for c in range(1, logits.shape[1]):
        a, b = prediction == c, labels == c
        total = a.sum() + b.sum()
        scores.append(torch.ones((), device=logits.device) if total == 0
                      else 2.0 * (a & b).sum() / total)
    return torch.stack(scores).float().mean()


__all__ = ["hard_dice", "kl_divergence", "masked_voxel_mean", "shannon_entropy", "soft_dice_loss"]
