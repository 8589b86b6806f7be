"""Mean Teacher for 3-D segmentation with the LA-literature constants (docs/METHODS.md §7.2).

A student network trains on ½·(CE + squared Dice) of the labelled half plus a consistency
term on the unlabelled half: the mean squared difference between its softmax and the softmax
of an EMA teacher that sees the same unlabelled patches with clamped Gaussian noise
(clamp(N(0, 0.1²), −0.2, 0.2)). The consistency weight ramps up as 0.1·r(⌊t/150⌋, 40), t the
0-based step (docs/METHODS.md recommends UA-MT's LA constants so that Mean Teacher and UA-MT
differ only in UA-MT's uncertainty mask; SSL4MIS's BraTS defaults are other settings of the
same parameters). After each optimiser step the teacher becomes
α·teacher + (1 − α)·student, α = min(1 − 1/(t+1), 0.99) (``_ema``). Both networks stay in
train mode, as in the official code (the teacher's BatchNorm uses batch statistics and its
dropout is on). The **student** is deployed; the teacher is never in the optimiser. Each
validation measures the teacher too (``branch_dice``): its Dice is what the targets are worth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ._base import Batch, Method, MethodError, NetworkFactory, StepInfo
from ._consistency import mean_consistency, ramped_weight
from ._ema import clamped_gaussian_noise, ema_decay, frozen_copy, update_ema
from ._losses import DICE_KINDS, dice_and_cross_entropy
from ._registry import register_method


@dataclass
class MeanTeacherParams:
    """Hyperparameters of Mean Teacher (defaults: UA-MT's LA code, docs/METHODS.md §7.1–7.2).

    Attributes:
        ema_decay: the ceiling α_max of the EMA decay min(1 − 1/(t+1), α_max).
        consistency: the largest consistency weight (0.1).
        consistency_rampup: length of the sigmoid ramp, in units of ``rampup_period`` steps
            (40, so the weight is full from step 6000 on).
        rampup_period: steps per ramp unit (150: the ramp reads ⌊t/150⌋).
        noise_std, noise_clip: the teacher's input noise clamp(N(0, std²), −clip, clip).
        ema_buffers: also average the BatchNorm running statistics into the teacher (the
            official code averages parameters only).
        ce_weight, dice_weight, dice: the supervised loss, as ``supervised`` (½·(CE +
            squared Dice of the foreground)).
    """

    ema_decay: float = 0.99
    consistency: float = 0.1
    consistency_rampup: float = 40.0
    rampup_period: int = 150
    noise_std: float = 0.1
    noise_clip: float = 0.2
    ema_buffers: bool = False
    ce_weight: float = 0.5
    dice_weight: float = 0.5
    dice: str = "squared"


def check_teacher_params(name: str, params: MeanTeacherParams) -> None:
    """The checks Mean Teacher and UA-MT share; raises ``MethodError`` naming the field."""
    problems = []
    if not 0.0 <= params.ema_decay <= 1.0:
        problems.append(f"ema_decay must lie in [0, 1], got {params.ema_decay}")
    if params.consistency < 0 or params.consistency_rampup < 0:
        problems.append("consistency and consistency_rampup must be ≥ 0")
    if params.rampup_period < 1:
        problems.append(f"rampup_period must be ≥ 1 step, got {params.rampup_period}")
    if params.noise_std < 0:
        problems.append(f"noise_std must be ≥ 0, got {params.noise_std}")
    if params.dice not in DICE_KINDS:
        problems.append(f"dice must be one of {list(DICE_KINDS)}, got {params.dice!r}")
    if params.ce_weight < 0 or params.dice_weight < 0 or params.ce_weight + params.dice_weight == 0:
        problems.append("ce_weight and dice_weight must be ≥ 0, not both 0")
    if problems:
        raise MethodError(f"method {name!r}: " + "; ".join(problems))


@register_method
class MeanTeacher(Method):
    """Student + EMA teacher with a softmax-MSE consistency on the unlabelled half.

    Networks: ``student`` (trained, deployed) and ``teacher`` (EMA of the student, no
    gradients). Logged losses: ``supervised`` (with its ``ce`` and ``dice``),
    ``consistency``, ``consistency_weight`` and ``total``.
    """

    name = "mean-teacher"
    description = "Mean Teacher: EMA teacher on noisy unlabelled patches, softmax-MSE consistency (LA constants)"
    Params = MeanTeacherParams
    step_params = ("rampup_period",)
    weight_ramps = ("consistency_rampup",)
    trainable_networks = ("student",)
    deployed_network_name = "student"
    #: The LA papers evaluate Mean Teacher and UA-MT without a largest-component filter.
    postprocess_largest_component = False

    @classmethod
    def check_params(cls, params: MeanTeacherParams) -> None:
        check_teacher_params(cls.name, params)

    @classmethod
    def recommended_training(cls) -> dict[str, Any]:
        """UA-MT's LA recipe: SGD 0.01, momentum 0.9, weight decay 1e-4, lr ×0.1 every 2500
        steps, 6000 steps of 2 labelled + 2 unlabelled patches."""
        return {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "step",
                "step_size": 2500, "gamma": 0.1, "iterations": 6000, "batch_labeled": 2, "batch_unlabeled": 2}

    def build_networks(self, factory: NetworkFactory) -> Mapping[str, nn.Module]:
        student = factory(self.card.network)
        teacher = frozen_copy(student, factory(self.card.network))
        return {"student": student, "teacher": teacher}

    def branch_networks(self) -> Mapping[str, nn.Module]:
        """The EMA teacher, whose predictions are the unlabelled half's targets: the trainer
        validates it beside the deployed student, so a run shows what its targets are worth."""
        return {"teacher": self.network("teacher")}

    # -- schedule ------------------------------------------------------------------------------

    def consistency_weight(self, iteration: int) -> float:
        """λ(t) = consistency·r(⌊t / rampup_period⌋, consistency_rampup), t the 0-based step."""
        p = self.params
        return ramped_weight(p.consistency, iteration, p.consistency_rampup, p.rampup_period)

    # -- the step --------------------------------------------------------------------------------

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        p = self.params
        logits = self.net("student")(batch.image)
        supervised = dice_and_cross_entropy(logits[: batch.n_labeled], batch.label, dice=p.dice,
                                            ce_weight=p.ce_weight, dice_weight=p.dice_weight)
        weight = self.consistency_weight(step.iteration)
        logs: dict[str, Tensor] = {}
        if batch.n_unlabeled > 0:
            student_prob = torch.softmax(logits[batch.n_labeled:], dim=1)
            consistency, logs = self.consistency_loss(student_prob, batch.unlabeled_image, step)
        else:
            consistency = logits.new_zeros(())
        total = supervised["total"] + weight * consistency
        return {"total": total, "supervised": supervised["total"], "ce": supervised["ce"],
                "dice": supervised["dice"], "consistency": consistency,
                "consistency_weight": torch.tensor(weight), **logs}

    def consistency_loss(self, student_prob: Tensor, unlabeled: Tensor,
                         step: StepInfo) -> tuple[Tensor, dict[str, Tensor]]:
        """The consistency term on the unlabelled half and any extra values to log.

        Args:
            student_prob: (B_u, K, Z, Y, X) student softmax of the unlabelled patches.
            unlabeled: (B_u, C, Z, Y, X) the unlabelled patches (no noise yet).
            step: where the run is.
        """
        with torch.no_grad():
            target = torch.softmax(self.network("teacher")(self.noisy(unlabeled)), dim=1)
        return mean_consistency(student_prob, target), {}

    def noisy(self, image: Tensor) -> Tensor:
        """The teacher's input: ``image`` + clamp(N(0, noise_std²), ±noise_clip), fresh per voxel."""
        return image + clamped_gaussian_noise(image, self.params.noise_std, self.params.noise_clip)

    def after_step(self, step: StepInfo) -> None:
        """The EMA update of the teacher, α = min(1 − 1/(t+1), ema_decay)."""
        update_ema(self.network("teacher"), self.network("student"),
                   ema_decay(step.iteration, self.params.ema_decay), buffers=self.params.ema_buffers)


__all__ = ["MeanTeacher", "MeanTeacherParams", "check_teacher_params"]
