"""Training methods as plug-ins over the one trainer (``engine.training``).

A method owns its networks, per-step losses, hyperparameters and extra state; the trainer
owns sampling, augmentation, the optimiser and schedule, checkpoints, events and DDP. See
``_base`` for the contract and ``supervised`` for the smallest complete example.

Example:
    >>> from napari_semiseg.engine.methods import list_methods, create_method
    >>> list_methods()
    ['supervised']
    >>> method = create_method("supervised", card, {"dice": "binary"})
"""

from ._base import Batch, Method, MethodError, NetworkFactory, NoParams, StepInfo, default_network_factory
from ._losses import (DICE_KINDS, binary_dice_loss, dice_and_cross_entropy, foreground_dice_loss,
                      multiclass_dice_loss, squared_dice_loss)
from ._ramps import sigmoid_rampup
from ._registry import create_method, get_method, list_methods, register_method
from .supervised import Supervised, SupervisedParams

__all__ = [
    "Batch", "DICE_KINDS", "Method", "MethodError", "NetworkFactory", "NoParams", "StepInfo", "Supervised",
    "SupervisedParams", "binary_dice_loss", "create_method", "default_network_factory",
    "dice_and_cross_entropy", "foreground_dice_loss", "get_method", "list_methods", "multiclass_dice_loss",
    "register_method", "sigmoid_rampup", "squared_dice_loss",
]
