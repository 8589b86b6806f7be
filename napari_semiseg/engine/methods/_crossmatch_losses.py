"""CrossMatch's targets, confidence threshold and loss terms (docs/METHODS.md §3.3–3.6).

Every target is a hard label with its confidence (argmax and max of the softmax of a
prediction taken without gradient). Every unsupervised term is the squared Dice of the
foreground probability against such a target, computed only over the voxels whose confidence
reaches the threshold τ: the others leave all three sums (Σp·g, Σp², Σg²). With more than two
classes the term is the mean over the foreground classes 1..K−1 (exactly the official
foreground-channel loss for K = 2).

Notation (p = softmax of the logits; w weak image, s1/s2 the CutMixed strong images; fw/fs
the weak/strong feature-dropout decoder passes):

- L_ip  = ½·[D(p_s1, Y1) + D(p_s2, Y2)]                          (image-level perturbation)
- L_tkd = ¼·[D(p_w^fw, T_w) + D(p_w^fs, T_w) + D(p_s2^fw, Y2) + D(p_s2^fs, Y2)]
- L_dkd = ½·[D(p_s2^fw, Y2^fw) + D(p_s2^fs, Y2^fs)]
- L_kd  = (1 − η)·L_tkd + η·L_dkd

and the total, by ``LOSS_WEIGHTINGS``:

- ``"head2025"`` (official code since Dec 2024): ½·(L_sup + ½·L_ip + L_kd)
  = ½·(L_sup + ¼·D1 + ¼·D2 + L_kd);
- ``"paper2024"`` (official code at paper release): ⅓·(L_sup + L_ip + L_kd)
  = ⅓·(L_sup + ½·D1 + ½·D2 + L_kd);
- ``"paper"`` (the paper's Eq. 12): L_sup + L_ip + (1 − η)·L_tkd + η·L_dkd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ._losses import squared_dice_loss
from ._ramps import sigmoid_rampup

LOSS_WEIGHTINGS = ("head2025", "paper2024", "paper")
THRESHOLD_MODES = ("code", "paper")


@dataclass(frozen=True)
class HardTargets:
    """Hard pseudo-labels with their confidences.

    Attributes:
        label: (B, Z, Y, X) int64 class indices.
        confidence: (B, Z, Y, X) float max-softmax probability, in [1/K, 1].
    """

    label: Tensor
    confidence: Tensor

    @classmethod
    def from_logits(cls, logits: Tensor) -> "HardTargets":
        """Argmax and max of the softmax of (B, K, Z, Y, X) logits, without gradient."""
        with torch.no_grad():
            confidence, label = torch.softmax(logits.detach(), dim=1).max(dim=1)
        return cls(label, confidence)

    def cutmixed(self, inside: "HardTargets", masks: Tensor) -> "HardTargets":
        """These targets outside each box and ``inside``'s targets within it.

        Args:
            inside: the targets of the CutMix source images.
            masks: (B, Z, Y, X) bool box masks.
        """
        return HardTargets(torch.where(masks, inside.label, self.label),
                           torch.where(masks, inside.confidence, self.confidence))


def confidence_threshold(iteration: int, mode: str, tau: float, ramp_length: int) -> float:
    """The threshold τ of 0-based step ``iteration``.

    ``"paper"``: the fixed τ. ``"code"``: the official schedule, where step 0 uses τ_0 and
    every step then overwrites it with (τ_0 + (1 − τ_0)·r(t, L))·ln 2 for the step t just
    taken, so step t ≥ 1 uses (τ_0 + (1 − τ_0)·r(t − 1, L))·ln 2 (r the sigmoid ramp). The ln 2
    (from UA-MT's entropy threshold) makes the effective max-probability threshold about
    0.52 → 0.67 over the 14 000 official steps for τ_0 = 0.75.
    """
    if mode == "paper" or iteration == 0:
        return float(tau)
    if mode != "code":
        raise ValueError(f"unknown threshold mode {mode!r}; expected one of {THRESHOLD_MODES}")
    return (tau + (1.0 - tau) * sigmoid_rampup(iteration - 1, ramp_length)) * math.log(2.0)


def confident_dice(probs: Tensor, targets: HardTargets, threshold: float) -> Tensor:
    """Squared Dice of the foreground classes against ``targets`` over the confident voxels.

    Args:
        probs: (B, K, Z, Y, X) softmax probabilities (with gradient).
        targets: hard labels and confidences of the same (B, Z, Y, X).
        threshold: voxels with confidence < threshold are ignored.

    Returns:
        A scalar: the mean over classes 1..K−1 of 1 − (2Σpg + 1e-5)/(Σp² + Σg² + 1e-5), the
        sums over confident voxels only.
    """
    mask = targets.confidence >= threshold
    return torch.stack([squared_dice_loss(probs[:, c], targets.label == c, mask)
                        for c in range(1, probs.shape[1])]).mean()


def image_perturbation_loss(prob_s1: Tensor, prob_s2: Tensor, target_1: HardTargets, target_2: HardTargets,
                            threshold: float) -> Tensor:
    """L_ip = ½·[D(p_s1, Y1) + D(p_s2, Y2)]: the CutMixed strong views against the weak teacher."""
    return 0.5 * (confident_dice(prob_s1, target_1, threshold) + confident_dice(prob_s2, target_2, threshold))


def teacher_distillation_loss(prob_w_fw: Tensor, prob_w_fs: Tensor, prob_s2_fw: Tensor, prob_s2_fs: Tensor,
                              teacher_w: HardTargets, target_2: HardTargets, threshold: float) -> Tensor:
    """L_tkd: the teacher p_n^w (CutMixed as Y2 for the strong image) taught to the four
    feature-perturbed students, averaged."""
    terms = [confident_dice(prob_w_fw, teacher_w, threshold), confident_dice(prob_w_fs, teacher_w, threshold),
             confident_dice(prob_s2_fw, target_2, threshold), confident_dice(prob_s2_fs, target_2, threshold)]
    return torch.stack(terms).mean()


def decoder_distillation_loss(prob_s2_fw: Tensor, prob_s2_fs: Tensor, target_2_fw: HardTargets,
                              target_2_fs: HardTargets, threshold: float) -> Tensor:
    """L_dkd: each perturbed decoder's weak-image prediction (the teaching assistant) taught
    to the same decoder's strong-image prediction, averaged over the two decoders."""
    return 0.5 * (confident_dice(prob_s2_fw, target_2_fw, threshold)
                  + confident_dice(prob_s2_fs, target_2_fs, threshold))


def distillation_loss(tkd: Tensor, dkd: Tensor, eta: float) -> Tensor:
    """L_kd = (1 − η)·L_tkd + η·L_dkd."""
    return (1.0 - eta) * tkd + eta * dkd


def total_loss(supervised: Tensor, ip: Tensor, kd: Tensor, weighting: str) -> Tensor:
    """The total of ``weighting`` (see the module docstring) from L_sup, L_ip and L_kd."""
    if weighting == "head2025":
        return 0.5 * (supervised + 0.5 * ip + kd)
    if weighting == "paper2024":
        return (supervised + ip + kd) / 3.0
    if weighting == "paper":
        return supervised + ip + kd
    raise ValueError(f"unknown loss weighting {weighting!r}; expected one of {LOSS_WEIGHTINGS}")


__all__ = ["HardTargets", "LOSS_WEIGHTINGS", "THRESHOLD_MODES", "confidence_threshold", "confident_dice",
           "decoder_distillation_loss", "distillation_loss", "image_perturbation_loss", "teacher_distillation_loss",
           "total_loss"]
