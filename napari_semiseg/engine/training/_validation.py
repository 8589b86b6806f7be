"""Validation Dice during training: the deployed network on held-out labelled cases.

Each case is predicted whole with the engine's sliding-window inference
(``engine.inference.predict_volume``: the card's preprocessing, window grid and blending, back
on the case's own grid) and compared with its label: the Dice of each foreground class
(medpy's definition, ``engine.metrics.dice``), averaged over classes, then over cases. Cases
are read one at a time and dropped after use. Under DDP each rank predicts its share of the
cases and the per-case results are gathered, so every rank returns the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ...io import Volume
from ..cards import ModelCard
from ..data import CaseSource
from ..methods import Method
from ..inference import Cancelled, predict_volume
from ..metrics import dice
from ._ddp import DistributedContext, gather_objects


@dataclass(frozen=True)
class ValidationResult:
    """Dice of one validation pass.

    Attributes:
        dice: mean over cases of the mean foreground-class Dice (0..1).
        per_case: {case_id: that case's mean foreground-class Dice}.
    """

    dice: float
    per_case: dict[str, float]


class ValidationStopped(Exception):
    """The run was asked to stop in the middle of a validation pass."""


def case_dice(prediction: np.ndarray, reference: np.ndarray, num_classes: int) -> float:
    """Mean over the foreground classes 1..K−1 of the Dice of ``prediction == c`` vs ``reference == c``."""
    return float(np.mean([dice(prediction == c, reference == c) for c in range(1, num_classes)]))


def validate(network: nn.Module, cases: Sequence[CaseSource], card: ModelCard, context: DistributedContext,
             should_stop: Callable[[], bool] | None = None, *, precision: str = "auto",
             channels_last: bool | None = None) -> ValidationResult:
    """Predict this rank's share of ``cases`` and return everyone's Dice.

    ``precision`` and ``channels_last`` are the run's (``predict_volume``'s meaning): the
    network is validated in the memory format it trains in, so it is never converted.

    Raises:
        ValidationStopped: ``should_stop`` became true between or within cases.
    """
    mine = {}
    for source in list(cases)[context.rank::context.world_size]:
        if should_stop is not None and should_stop():
            raise ValidationStopped()
        loaded = source.load()
        image = loaded.image if loaded.image.ndim == 3 else loaded.image[0]
        volume = Volume.from_array(np.asarray(image), spacing=loaded.spacing, zscored=loaded.zscored)
        try:
            prediction = predict_volume(network, volume, card, device=context.device, should_stop=should_stop,
                                        precision=precision, channels_last=channels_last)
        except Cancelled:
            raise ValidationStopped() from None
        mine[source.case_id] = case_dice(prediction.labels, np.asarray(loaded.label), card.network.num_classes)
    per_case: dict[str, float] = {}
    for part in gather_objects(mine, context):
        per_case.update(part)
    ordered = {s.case_id: per_case[s.case_id] for s in cases}
    return ValidationResult(float(np.mean(list(ordered.values()))) if ordered else float("nan"), ordered)


def validate_method(method: Method, cases: Sequence[CaseSource], card: ModelCard | None = None, *,
                    device: str | torch.device | None = None) -> dict[str, ValidationResult]:
    """What a run reports at each validation, for a method outside a run, with the same code.

    Args:
        method: a (trained) method, e.g. ``TrainResult.method``.
        cases: labelled ``CaseSource`` objects.
        card: the card for inference; the method's by default.
        device: where to predict; None: where the deployed network is (moving a network moves
            the method's own modules, which branches may share).

    Returns:
        ``{"deployed": ValidationResult, <branch>: ValidationResult, ...}``: the deployed network
        and each of ``method.branch_networks()`` (e.g. the dual-branch method's teacher).
    """
    if device is None:
        device = next(method.deployed_network().parameters()).device
    context = DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))
    networks = {"deployed": method.deployed_network(), **method.branch_networks()}
    return {name: validate(network.to(context.device), list(cases), card or method.card, context)
            for name, network in networks.items()}


__all__ = ["ValidationResult", "ValidationStopped", "case_dice", "validate", "validate_method"]
