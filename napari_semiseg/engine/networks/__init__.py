"""Segmentation networks built from a card's ``network`` section.

``build_network(card.network)`` gives a ``SegmentationNetwork``: ``forward(x)`` maps a
(B, C, Z, Y, X) image to (B, K, Z, Y, X) logits, and ``encode`` / ``decode`` /
``forward_features`` / ``forward_dual`` / ``enable_mc_dropout`` are the hooks the
semi-supervised methods use (see ``_base``). Networks do no preprocessing.
"""

from ._base import (FeaturePerturbation, NetworkError, SegmentationNetwork, count_parameters, dropout_layers,
                    enable_mc_dropout)
from ._registry import build_network, network_names, register_network
from ._unet_small import UNetSmall
from ._vnet import VNet

__all__ = [
    "FeaturePerturbation", "NetworkError", "SegmentationNetwork", "UNetSmall", "VNet", "build_network",
    "count_parameters", "dropout_layers", "enable_mc_dropout", "network_names", "register_network",
]
