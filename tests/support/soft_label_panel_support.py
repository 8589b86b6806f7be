"""Shared pieces of the Pseudo-label and Soft-label correction panel tests (no tests here).

``store_teacher`` keeps, for a phantom case, what a pseudo-labelling run keeps — a "pseudo"
label version and its soft label in one transaction — from a teacher whose quality the test
chooses: the phantom's true atrium, displaced and blurred, so that it is confidently wrong
on a band of voxels (which the teacher team must move across 0.5) and more or less
uncertain elsewhere (which the ranking must notice). An untrained network would give a soft
label near 0.5 everywhere, and training one is too slow for these tests.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_semiseg.samples import LA_SPACING, make_la_phantom
from napari_panel_support import SPEC


def phantom_truth(case_id: str) -> np.ndarray:
    """The true atrium (bool, z y x) of a ``la_phantom_NN`` case of the panel tests' project."""
    seed = int(case_id.rsplit("_", 1)[1])
    return make_la_phantom(SPEC.phantom_shape, LA_SPACING, seed=seed)[1] > 0


def teacher_probability(truth: np.ndarray, shift=(0, 0, 3), softness: float = 1.5,
                        noise: float = 0.5, seed: int = 0, blob: bool = True) -> np.ndarray:
    """float32 (z, y, x) foreground probability of an imperfect teacher.

    σ(signed distance to the truth shifted by ``shift`` voxels / ``softness`` + Gaussian logit
    noise), and with ``blob`` a ball of radius 4 in the background where the teacher is
    certain (probability 1) and wrong: the "hard false pixels" of the PLC-KD supplement,
    which the first assistant alone cannot move across 0.5.
    """
    moved = np.roll(truth, shift, axis=(0, 1, 2))
    inside = ndimage.distance_transform_edt(moved)
    outside = ndimage.distance_transform_edt(~moved)
    signed = np.where(moved, inside, -outside) - 0.5
    rng = np.random.default_rng(seed)
    logits = signed / softness + rng.normal(0.0, noise, truth.shape)
    probability = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    if blob:
        zz, yy, xx = np.indices(truth.shape)
        centre = (truth.shape[0] // 2, 7, 7)
        ball = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= 16
        probability[ball & ~truth] = 1.0
    return probability


def store_teacher(project, case_id: str, model_id: int | None = None, **teacher):
    """Keep a "pseudo" label version with its soft label, as pseudo-labelling does.

    Returns:
        (``LabelVersion``, ``SoftLabel``, the float32 foreground probability stored).
    """
    probability = teacher_probability(phantom_truth(case_id), **teacher)
    label, soft = project.save_label_with_soft_label(
        case_id, (probability > 0.5).astype(np.uint8), "pseudo", probability, model_id=model_id,
        note="test teacher")
    return label, soft, probability
