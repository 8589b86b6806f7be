"""A model's post-processing follows the method it was trained with (one rule for every face).

SS-Net's published numbers keep the largest connected component at test time; a model trained
with it predicts that way unless its run recorded otherwise (its ``largest_component``
hyperparameter); ``largest_component`` passed to inference still wins over both.
"""

from __future__ import annotations

import dataclasses

from ...errors import SemisegError
from ..cards import ModelCard
from ._registry import get_method


def keeps_largest_component(card_default: bool, method: str | None, config: dict | None) -> bool:
    """Whether a model predicts with the largest connected component only.

    Args:
        card_default: the card's ``inference.largest_component``.
        method, config: the model version's method and recorded run configuration.
    """
    if not method:
        return bool(card_default)
    try:
        default = bool(getattr(get_method(method), "postprocess_largest_component", False))
    except SemisegError:  # a method this installation does not know: the card as trained
        return bool(card_default)
    return bool(((config or {}).get("method_params") or {}).get("largest_component", default))


def with_method_postprocessing(card: ModelCard, method: str | None, config: dict | None) -> ModelCard:
    """The card whose inference settings follow ``keeps_largest_component``."""
    wanted = keeps_largest_component(card.inference.largest_component, method, config)
    if wanted == card.inference.largest_component:
        return card
    return card.replace(inference=dataclasses.replace(card.inference, largest_component=wanted))


__all__ = ["keeps_largest_component", "with_method_postprocessing"]
