"""Teacher–student consistency terms of Mean Teacher and UA-MT (docs/METHODS.md §7.1, §7.2).

Probabilities are softmax outputs (B, K, Z, Y, X). All reductions are batch-global (one sum
over samples, classes and voxels), as in the official code.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._ramps import sigmoid_rampup

#: Inside the log of the predictive entropy, as UA-MT's code (keeps log finite at p = 0).
ENTROPY_EPS = 1e-6
#: In the denominator of the masked mean (an all-zero mask gives 0, not NaN).
MASK_EPS = 1e-16


def squared_difference(student_prob: Tensor, teacher_prob: Tensor) -> Tensor:
    """(p_s − p_t)² per voxel and class (the code's ``softmax_mse_loss``, unreduced).

    The teacher side is a constant: no gradient reaches it.
    """
    return (student_prob - teacher_prob.detach()) ** 2


def mean_consistency(student_prob: Tensor, teacher_prob: Tensor) -> Tensor:
    """Mean Teacher's L_con: the mean of (p_s − p_t)² over samples, classes and voxels."""
    return squared_difference(student_prob, teacher_prob).mean()


def masked_consistency(student_prob: Tensor, teacher_prob: Tensor, mask: Tensor) -> Tensor:
    """UA-MT's L_con = Σ(m·(p_s − p_t)²) / (K·Σm + 1e-16): a mean over the certain voxels.

    Args:
        student_prob, teacher_prob: (B, K, Z, Y, X) probabilities.
        mask: (B, 1, Z, Y, X) 0/1 map of the voxels that count (broadcast over the K
            classes, so the K in the denominator makes it a per-voxel, per-class mean).
    """
    mask = mask.to(student_prob.dtype)
    classes = student_prob.shape[1]
    distance = squared_difference(student_prob, teacher_prob) * mask
    return distance.sum() / (classes * mask.sum() + MASK_EPS)


def predictive_entropy(mean_prob: Tensor) -> Tensor:
    """u = −Σ_c p̄_c·ln(p̄_c + 1e-6) over the class axis, in nats (not normalised).

    Args:
        mean_prob: (B, K, Z, Y, X) probabilities averaged over the MC passes.

    Returns:
        (B, 1, Z, Y, X) uncertainty; at most ln K.
    """
    return -(mean_prob * torch.log(mean_prob + ENTROPY_EPS)).sum(dim=1, keepdim=True)


def uncertainty_threshold(iteration: int, rampup: int, classes: int, base: float = 0.75) -> float:
    """H_t = (base + (1 − base)·r(t, rampup))·ln K: UA-MT's ramped threshold.

    With the code's base 0.75 and K = 2 classes this is (0.75 + 0.25·r(t, t_max))·ln 2: it
    starts at ¾ of the largest possible entropy (strict) and relaxes to all of it.

    Args:
        iteration: t, the 0-based step.
        rampup: the ramp length in steps (the code's max_iterations).
        classes: K (ln K is the entropy of the uniform distribution).
        base: the starting fraction.
    """
    return (base + (1.0 - base) * sigmoid_rampup(iteration, rampup)) * math.log(classes)


def ramped_weight(weight: float, iteration: int, rampup: float, period: int) -> float:
    """weight·r(⌊t / period⌋, rampup): the papers' consistency weight (period 150 on LA)."""
    return float(weight) * sigmoid_rampup(iteration // period, rampup)


__all__ = ["ENTROPY_EPS", "MASK_EPS", "masked_consistency", "mean_consistency", "predictive_entropy",
           "ramped_weight", "squared_difference", "uncertainty_threshold"]
