"""Supervised training: ½·(CE + squared Dice) on the labelled half, unlabelled data unused.

The loss is UA-MT's and CrossMatch's L_sup (docs/METHODS.md §3.4, §7.1): cross-entropy plus the
batch-global squared Dice of the foreground channel, each weighted ½. SS-Net's supervised term
(plain binary Dice alone) is ``ce_weight=0, dice_weight=1, dice="binary"``. It is the
baseline every semi-supervised method is compared with, and the first model of a project.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from ._base import Batch, Method, MethodError, NetworkFactory, StepInfo
from ._losses import DICE_KINDS, dice_and_cross_entropy
from ._registry import register_method


@dataclass
class SupervisedParams:
    """Hyperparameters of the supervised loss.

    Attributes:
        ce_weight: weight of the voxel-mean cross-entropy (½ as UA-MT and CrossMatch).
        dice_weight: weight of the Dice loss (½).
        dice: ``"squared"`` (UA-MT/CrossMatch, smoothing 1e-5), ``"binary"`` (SS-Net,
            Σp + Σg, 1e-8) or ``"multiclass"`` (SSL4MIS, all classes incl. background).
    """

    ce_weight: float = 0.5
    dice_weight: float = 0.5
    dice: str = "squared"


@register_method
class Supervised(Method):
    """Plain supervised training of one network on the labelled patches."""

    name = "supervised"
    description = "Supervised baseline: ½·(cross-entropy + squared Dice) on labelled cases only"
    Params = SupervisedParams
    uses_unlabeled = False
    trainable_networks = ("model",)
    deployed_network_name = "model"

    @classmethod
    def check_params(cls, params: SupervisedParams) -> None:
        if params.dice not in DICE_KINDS:
            raise MethodError(f"method 'supervised': dice must be one of {list(DICE_KINDS)}, got {params.dice!r}")
        if params.ce_weight < 0 or params.dice_weight < 0 or params.ce_weight + params.dice_weight == 0:
            raise MethodError("method 'supervised': ce_weight and dice_weight must be ≥ 0, not both 0")

    def build_networks(self, factory: NetworkFactory) -> Mapping[str, nn.Module]:
        return {"model": factory(self.card.network)}

    def training_step(self, batch: Batch, step: StepInfo) -> dict[str, Tensor]:
        logits = self.net("model")(batch.labeled_image)
        return dice_and_cross_entropy(logits, batch.label, dice=self.params.dice,
                                      ce_weight=self.params.ce_weight, dice_weight=self.params.dice_weight)


__all__ = ["Supervised", "SupervisedParams"]
