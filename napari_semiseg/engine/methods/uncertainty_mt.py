"""UA-MT: Mean Teacher whose consistency counts only where the teacher is certain
(Yu et al., MICCAI 2019; yulequan/UA-MT, docs/METHODS.md §7.1).

Per step, on the unlabelled half (B_u patches):

1. the student's softmax p_s of the whole-batch forward pass;
2. the teacher's target p_t: one pass on the patches + clamped Gaussian noise;
3. T = 8 further stochastic teacher passes (fresh noise, dropout on, BatchNorm on batch
   statistics: the teacher stays in train mode), averaged to p̄; the uncertainty is the
   predictive entropy u = −Σ_c p̄_c·ln(p̄_c + 1e-6);
4. the mask m = 1[u < H_t] with H_t = (0.75 + 0.25·r(t, t_max))·ln 2 (t_max: the run's
   iterations, 6000 on LA);
5. L_con = Σ m·(p_s − p_t)² / (2·Σm + 1e-16), weighted by 0.1·r(⌊t/150⌋, 40).

Cost. The teacher passes are gradient-free, so they are cheap per sample, but there are
T + 1 of them. By default they are batched into **one** teacher forward of (T + 1)·B_u
patches (``mc_passes_per_forward = 0``): one kernel launch sequence instead of T + 1, which
is what keeps UA-MT's iteration cost down on a GPU; memory is that of a gradient-free
forward of (T + 1)·B_u patches. ``mc_passes_per_forward = 2`` reproduces the official
code's layout exactly (the target pass alone, then T/2 forwards of the unlabelled batch
repeated twice). The layouts differ only in which patches share a BatchNorm batch (the
teacher normalises with batch statistics): all noisy copies of the same patches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._base import MethodError, NetworkFactory, StepInfo
from ._consistency import masked_consistency, predictive_entropy, uncertainty_threshold
from ._registry import register_method
from .mean_teacher import MeanTeacher, MeanTeacherParams, check_teacher_params

#: Passes per teacher forward after a CUDA out-of-memory error with all of them at once.
OOM_FALLBACK_PASSES = 2


@dataclass
class UncertaintyMeanTeacherParams(MeanTeacherParams):
    """Mean Teacher's hyperparameters plus the uncertainty estimate's.

    Attributes:
        mc_samples: T, the stochastic teacher passes averaged for the uncertainty (8).
        mc_passes_per_forward: how many of the T (+1 target) passes one teacher forward
            carries: 0 = all of them at once (fastest; memory of a gradient-free forward of
            (T+1)·B_u patches; on a CUDA out-of-memory error the run continues with 2),
            2 = the official code's layout, 1 = one pass per forward (least memory).
        threshold_base: H_t starts at this fraction of ln K (0.75).
        threshold_rampup: steps over which H_t ramps to ln K; 0 = the run's iterations
            (the code's max_iterations).
    """

    mc_samples: int = 8
    mc_passes_per_forward: int = 0
    threshold_base: float = 0.75
    threshold_rampup: int = 0


@register_method
class UncertaintyMeanTeacher(MeanTeacher):
    """UA-MT: Mean Teacher with an MC-dropout entropy mask on the consistency.

    Extra logged values: ``uncertainty_threshold`` (H_t in nats) and ``certain_fraction``
    (the share of unlabelled voxels under it).
    """

    name = "ua-mt"
    description = "UA-MT: Mean Teacher whose consistency counts only where T=8 MC-dropout teacher passes agree"
    Params = UncertaintyMeanTeacherParams

    @classmethod
    def check_params(cls, params: UncertaintyMeanTeacherParams) -> None:
        check_teacher_params(cls.name, params)
        problems = []
        if params.mc_samples < 1:
            problems.append(f"mc_samples must be ≥ 1, got {params.mc_samples}")
        if params.mc_passes_per_forward < 0:
            problems.append(f"mc_passes_per_forward must be ≥ 0 (0 = all at once), got {params.mc_passes_per_forward}")
        if not 0.0 <= params.threshold_base <= 1.0:
            problems.append(f"threshold_base must lie in [0, 1], got {params.threshold_base}")
        if params.threshold_rampup < 0:
            problems.append(f"threshold_rampup must be ≥ 0 (0 = the run's iterations), got {params.threshold_rampup}")
        if problems:
            raise MethodError(f"method {cls.name!r}: " + "; ".join(problems))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._passes_per_forward = self.params.mc_passes_per_forward

    def build_networks(self, factory: NetworkFactory) -> Mapping[str, nn.Module]:
        from ..networks import dropout_layers  # late, as _base's factory: the registry must not need it
        networks = super().build_networks(factory)
        if not dropout_layers(networks["teacher"]):
            raise MethodError(f"method {self.name!r} samples the teacher's dropout, but card {self.card.name!r} "
                              "builds its network without dropout: use a card with network.dropout: true")
        return networks

    def uncertainty_threshold(self, iteration: int, iterations: int) -> float:
        """H_t in nats for the 0-based step t of a run of ``iterations`` steps."""
        p = self.params
        rampup = p.threshold_rampup or iterations
        return uncertainty_threshold(iteration, rampup, self.card.network.num_classes, p.threshold_base)

    def consistency_loss(self, student_prob: Tensor, unlabeled: Tensor,
                         step: StepInfo) -> tuple[Tensor, dict[str, Tensor]]:
        target_prob, mean_prob = self.teacher_passes(unlabeled)
        threshold = self.uncertainty_threshold(step.iteration, step.iterations)
        mask = (predictive_entropy(mean_prob) < threshold).to(student_prob.dtype)
        consistency = masked_consistency(student_prob, target_prob, mask)
        return consistency, {"uncertainty_threshold": torch.tensor(threshold),
                             "certain_fraction": mask.mean().detach()}

    @torch.no_grad()
    def teacher_passes(self, unlabeled: Tensor) -> tuple[Tensor, Tensor]:
        """The teacher's target and its MC mean on the unlabelled patches.

        Args:
            unlabeled: (B_u, C, Z, Y, X) patches without noise.

        Returns:
            (p_t, p̄): the softmax of one noisy pass, and the mean softmax of
            ``mc_samples`` further noisy passes; both (B_u, K, Z, Y, X).
        """
        teacher = self.network("teacher")
        samples, per_forward = self.params.mc_samples, self._passes_per_forward
        size = unlabeled.shape[0]
        if per_forward == 0:
            try:
                logits = teacher(self.noisy(_copies(unlabeled, samples + 1)))
            except torch.cuda.OutOfMemoryError:
                # one big forward did not fit: the official layout from now on (a few GB less)
                torch.cuda.empty_cache()
                self._passes_per_forward = OOM_FALLBACK_PASSES
                return self.teacher_passes(unlabeled)
            target_logits, mc_logits = logits[:size], logits[size:]
        else:
            target_logits = teacher(self.noisy(unlabeled))
            mc_logits = torch.cat([teacher(self.noisy(_copies(unlabeled, min(per_forward, samples - start))))
                                   for start in range(0, samples, per_forward)])
        mc_prob = torch.softmax(mc_logits, dim=1)
        mean_prob = mc_prob.reshape(samples, size, *mc_prob.shape[1:]).mean(dim=0)
        return torch.softmax(target_logits, dim=1), mean_prob


def _copies(image: Tensor, count: int) -> Tensor:
    """``count`` copies of a batch stacked along the batch axis: [b0, b1, b0, b1, ...]."""
    return image.repeat(count, *([1] * (image.dim() - 1)))


__all__ = ["UncertaintyMeanTeacher", "UncertaintyMeanTeacherParams"]
