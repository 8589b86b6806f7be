"""Cases as the trainer and the methods see them: lazy sources, preparation, augmentation, caching.

Below the methods and the trainer, so both take cases from here and neither reaches into the
other. Pieces: ``_specs`` (cases named by files, as a child process rebuilds them), ``_cases``
(``CaseSource`` → ``prepare_case`` → ``PreparedCase``), ``_cache`` (a bounded LRU of prepared
cases), ``_augment`` (the LA rotation, flip and crop), ``_soft_targets`` (PLC-KD's distillation
material: stored soft labels of a project, corrected and cut with their image).
"""

from ._augment import IN_PLANE_AXES, crop_padding, la_augment
from ._cache import VolumeCache
from ._cases import CaseSource, LoadedCase, PreparedCase, TrainingData, prepare_case
from ._soft_targets import (DISTILL_SPLITS, GOLD_KINDS, SoftTarget, SoftTargetError, SoftTargetSampler,
                            check_soft_targets, load_target_probabilities, prepare_target_stack,
                            project_soft_targets, resolve_soft_targets)
from ._specs import CaseSpec, DataSpec

__all__ = [
    "DISTILL_SPLITS", "GOLD_KINDS", "IN_PLANE_AXES", "CaseSource", "CaseSpec", "DataSpec", "LoadedCase",
    "PreparedCase", "SoftTarget", "SoftTargetError", "SoftTargetSampler", "TrainingData", "VolumeCache",
    "check_soft_targets", "crop_padding", "la_augment", "load_target_probabilities", "prepare_case",
    "prepare_target_stack", "project_soft_targets", "resolve_soft_targets",
]
