"""Dual-branch confidence-maximisation KD (Liu, Desrosiers, Ben Ayed, Dolz; docs/METHODS.md §4).

One network, one shared encoder, two decoders (``build_network(spec, second_decoder=True)``):
the **teacher** (upper) decoder learns from the strong labels only, the **student** (lower)
decoder from the same labels plus two terms on the unlabelled voxels. With p^A, p^B the
softmax of the teacher and student logits, every step (one forward pass over the labelled and
unlabelled halves of the batch) computes:

- L_A = ce_weight·CE(p^A, y) + dice_weight·Dice(p^A, y) on the labelled half;
- L_B = the same loss for the student on the labelled half (docs/METHODS.md §4.2: in the
  semi-supervised setting the student's partial CE covers the labelled images only;
  ``student_supervised=False`` drops it);
- L_KL = mean over voxels of KL(p^A ‖ p^B) = Σ_c p^A_c (ln p^A_c − ln p^B_c), p^A **detached**
  (the teacher learns from labels only; the KL moves the student decoder and, through it, the
  shared encoder); voxels: the unlabelled half (``kl_voxels="unlabeled"``, default) or the
  whole batch (``"all"``);
- L_H = mean over the unlabelled voxels of the student's Shannon entropy −Σ_c p^B_c ln p^B_c.

    total = L_A + L_B + r(t)·(λ_KL·L_KL + λ_H·L_H)

``terms`` ablates: ``"both"`` (the paper's point), ``"kl"`` (no entropy term), ``"entropy"``
(no KL term); a removed term is still computed and logged, detached, for comparable curves,
but is not part of ``total``. r(t) is the sigmoid ramp-up over ``rampup`` steps (0: none).

Provenance: the structure is from the paper's abstract; λ_KL, λ_H, the KL direction, the
stop-gradient and the lack of temperature are not published (docs/METHODS.md §4.2 [UNVERIFIED]), so
the defaults below are choices made here, to tune on validation. The official code is
inference only. On 3-D LA/Pancreas this is an adaptation (V-Net encoder, two V-Net decoders).

Deployment and validation: the **student** branch is deployed. The method's networks are
``"model"`` (the dual network, the one the optimiser and DDP see) and ``"student"``, a
``BranchNetwork`` sharing the encoder and the student decoder: the trainer validates it, and
its weights are those of a plain single-decoder network of the card. Both branches' Dice are
reported: every step logs ``train_dice_teacher`` and ``train_dice_student`` (hard Dice on the
labelled patches, as losses); each validation gives the student's Dice (the deployed network)
and, through ``branch_networks``, the teacher's (``branch_dice`` of the validation event);
``engine.training.validate_method`` computes both outside a run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..cards import NetworkSpec
from ._base import Batch, Method, MethodError, NetworkFactory, StepInfo
from ._kd_branches import BranchNetwork
from ._kd_losses import hard_dice, kl_divergence, shannon_entropy
from ._losses import DICE_KINDS, dice_and_cross_entropy
from ._ramps import sigmoid_rampup
from ._registry import register_method

TERMS = ("both", "kl", "entropy")
KL_VOXELS = ("unlabeled", "all")


@dataclass
class DualBranchKDParams:
    """Hyperparameters of the dual-branch KD (docs/METHODS.md §4.2; the weights are not published).

    Attributes:
        lambda_kl: λ_KL, weight of KL(teacher ‖ student).
        lambda_ent: λ_H, weight of the student's entropy on unlabelled voxels.
        terms: ``"both"``, ``"kl"`` (KL only) or ``"entropy"`` (entropy only).
        kl_voxels: ``"unlabeled"`` (the less-supervised images W, default) or ``"all"``.
        student_supervised: add the student's own supervised loss L_B on the labelled half.
        rampup: steps of the sigmoid ramp-up of both unlabelled weights; 0 = full from step 0.
        ce_weight, dice_weight, dice: the supervised loss of each branch, as ``supervised``
            (½·(CE + squared Dice of the foreground)).
    """

    lambda_kl: float = 1.0
    lambda_ent: float = 0.1
    terms: str = "both"
    kl_voxels: str = "unlabeled"
    student_supervised: bool = True
    rampup: float = 0.0
    ce_weight: float = 0.5
    dice_weight: float = 0.5
    dice: str = "squared"


@register_method
class DualBranchKD(Method):
    """Shared encoder, teacher decoder on labels, student decoder with entropy + KL; see module."""

    name = "dual-branch-kd"
    description = ("Dual-branch confidence-maximisation KD: teacher decoder on labels, student decoder "
                   "with entropy minimisation + KL from the teacher on unlabelled voxels (student deployed)")
    Params = DualBranchKDParams
    uses_unlabeled = True
    trainable_networks = ("model",)
    deployed_network_name = "student"
    weight_ramps = ("rampup",)

    @classmethod
    def check_params(cls, params: DualBranchKDParams) -> None:
        problems = []
        if params.terms not in TERMS:
            problems.append(f"terms must be one of {list(TERMS)}, got {params.terms!r}")
        if params.kl_voxels not in KL_VOXELS:
            problems.append(f"kl_voxels must be one of {list(KL_VOXELS)}, got {params.kl_voxels!r}")
        if params.dice not in DICE_KINDS:
            problems.append(f"dice must be one of {list(DICE_KINDS)}, got {params.dice!r}")
        if min(params.lambda_kl, params.lambda_ent, params.rampup, params.ce_weight, params.dice_weight) < 0:
            problems.append("lambda_kl, lambda_ent, rampup, ce_weight and dice_weight must be ≥ 0")
        if params.ce_weight + params.dice_weight == 0:
            problems.append("ce_weight and dice_weight must not both be 0")
        if problems:
            raise MethodError(f"method {cls.name!r}: " + "; ".join(problems))

    # -- networks ----------------------------------------------------------------------------------

    def build_networks(self, factory: NetworkFactory) -> Mapping[str, nn.Module]:
        dual = factory(dataclasses.replace(self.card.network, second_decoder=True))
        if not getattr(dual, "has_second_decoder", False):
            raise MethodError(f"method {self.name!r}: network {self.card.network.name!r} was built without the "
                              "second (student) decoder this method needs")
        return {"model": dual, "student": BranchNetwork(dual, "student")}

    def branch_network(self, branch: str) -> BranchNetwork:
        """``"teacher"`` or ``"student"`` as a single-decoder network sharing the current weights."""
        if branch == "student":
            return self.networks["student"]
        return BranchNetwork(self.networks["model"], branch)

    def branch_networks(self) -> Mapping[str, nn.Module]:
        """The teacher decoder: the trainer validates it beside the deployed student."""
        return {"teacher": self.branch_network("teacher")}

    def deployed_spec(self) -> NetworkSpec:
        """The card's network without the second decoder (what the student's weights fit)."""
        return dataclasses.replace(self.card.network, second_decoder=False)

    def initialize_from(self, weights: Mapping[str, Tensor]) -> list[str]:
        """Fine-tune from a deployed single-decoder model: the encoder and *both* decoders
        start from its weights (the teacher as well as the student).

        Raises:
            MethodError: the weights are not those of this card's single-decoder network.
        """
        layout = {key: tuple(value.shape) for key, value in weights.items()}
        for branch in ("student", "teacher"):
            view = self.branch_network(branch)
            if {k: tuple(v.shape) for k, v in view.state_dict().items()} != layout:
                raise MethodError(f"method {self.name!r}: the initial weights do not fit the card's network "
                                  f"{self.card.network.name!r}; was the model trained with another card?")
            view.load_state_dict(weights)
        return ["model", "student"]

    # -- the step ------------------------------------------------------------------------------------

    def unlabeled_weights(self, step: StepInfo) -> dict[str, float]:
        """The weights of L_KL and L_H at this step (0 for an ablated term)."""
        ramp = sigmoid_rampup(step.iteration, self.params.rampup)
        return {"kl": ramp * self.params.lambda_kl if self.params.terms in ("both", "kl") else 0.0,
                "entropy": ramp * self.params.lambda_ent if self.params.terms in ("both", "entropy") else 0.0}

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        params, n = self.params, batch.n_labeled
        teacher_logits, student_logits = self.net("model")(batch.image, output="dual")
        supervised = dict(dice=params.dice, ce_weight=params.ce_weight, dice_weight=params.dice_weight)
        teacher = dice_and_cross_entropy(teacher_logits[:n], batch.label, **supervised)
        student = dice_and_cross_entropy(student_logits[:n], batch.label, **supervised)
        kl, entropy = self._unlabeled_terms(teacher_logits, student_logits, n)
        weights = self.unlabeled_weights(step)
        total = teacher["total"]
        if params.student_supervised:
            total = total + student["total"]
        if weights["kl"]:
            total = total + weights["kl"] * kl
        if weights["entropy"]:
            total = total + weights["entropy"] * entropy
        return {"teacher": teacher["total"], "student_supervised": student["total"],
                "kl": kl if weights["kl"] else kl.detach(),
                "entropy": entropy if weights["entropy"] else entropy.detach(),
                "train_dice_teacher": hard_dice(teacher_logits[:n], batch.label),
                "train_dice_student": hard_dice(student_logits[:n], batch.label),
                "total": total}

    def _unlabeled_terms(self, teacher_logits: Tensor, student_logits: Tensor, n: int) -> tuple[Tensor, Tensor]:
        """(L_KL, L_H); both 0 when the batch has no unlabelled half (batch_unlabeled = 0),
        except L_KL over ``"all"`` voxels, which then covers the labelled ones."""
        first = 0 if self.params.kl_voxels == "all" else n
        teacher_prob = torch.softmax(teacher_logits[first:], dim=1).detach()
        kl = (kl_divergence(teacher_prob, student_logits[first:]) if teacher_prob.shape[0]
              else student_logits.sum() * 0.0)
        unlabeled = student_logits[n:]
        entropy = shannon_entropy(unlabeled) if unlabeled.shape[0] else student_logits.sum() * 0.0
        return kl, entropy


__all__ = ["DualBranchKD", "DualBranchKDParams", "KL_VOXELS", "TERMS"]
