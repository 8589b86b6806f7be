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
from ._postprocessing import keeps_largest_component, with_method_postprocessing
from .supervised import Supervised, SupervisedParams
# Importing a method module registers it: the trainer's child process, the CLI and the GUI
# all find every method through this package.
from .crossmatch import CrossMatch, CrossMatchParams  # noqa: E402
from .mean_teacher import MeanTeacher, MeanTeacherParams  # noqa: E402
from .ss_net import SSNet, SSNetParams  # noqa: E402
from .uncertainty_mt import UncertaintyMeanTeacher, UncertaintyMeanTeacherParams  # noqa: E402
from .dual_branch_kd import DualBranchKD, DualBranchKDParams  # noqa: E402
from .plc_kd import PLCKD, PLCKDParams, plc_kd_params  # noqa: E402

__all__ = [
    "Batch", "CrossMatch", "MeanTeacher", "MeanTeacherParams", "SSNet", "SSNetParams",
    "UncertaintyMeanTeacher", "UncertaintyMeanTeacherParams", "CrossMatchParams", "DICE_KINDS", "DualBranchKD", "DualBranchKDParams", "PLCKD", "PLCKDParams", "Method", "MethodError", "NetworkFactory", "NoParams", "StepInfo", "Supervised",
    "SupervisedParams", "binary_dice_loss", "create_method", "default_network_factory",
    "dice_and_cross_entropy", "foreground_dice_loss", "get_method", "list_methods", "multiclass_dice_loss",
    "register_method", "sigmoid_rampup", "squared_dice_loss", "plc_kd_params", "keeps_largest_component",
    "with_method_postprocessing",
]
