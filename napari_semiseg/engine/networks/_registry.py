"""Networks by name: what a card's ``network.name`` may say, and how to build it."""

from __future__ import annotations

from typing import Callable

from ..cards import CardError, NetworkSpec
from ._base import SegmentationNetwork
from ._unet_small import UNetSmall
from ._vnet import VNet

NetworkFactory = Callable[[NetworkSpec, bool], SegmentationNetwork]

_REGISTRY: dict[str, NetworkFactory] = {"vnet": VNet, "unet-small": UNetSmall}


def register_network(name: str, factory: NetworkFactory) -> None:
    """Make ``factory(spec, second_decoder)`` buildable from cards that say ``network.name: name``."""
    _REGISTRY[name] = factory


def network_names() -> list[str]:
    return sorted(_REGISTRY)


def build_network(spec: NetworkSpec, *, second_decoder: bool | None = None) -> SegmentationNetwork:
    """Build the untrained network a card describes (on CPU, in training mode).

    Args:
        spec: the card's ``network`` section.
        second_decoder: add a student decoder on the shared encoder (dual-branch KD);
            None follows ``spec.second_decoder``.

    Raises:
        CardError: the card names an unknown network or gives it impossible settings.
    """
    factory = _REGISTRY.get(spec.name)
    if factory is None:
        raise CardError(f"network {spec.name!r} is unknown; known networks: {', '.join(network_names())}")
    dual = spec.second_decoder if second_decoder is None else second_decoder
    try:
        return factory(spec, dual)
    except ValueError as exc:  # e.g. an unknown normalization in a card made in code
        raise CardError(f"network {spec.name!r}: {exc}") from None
