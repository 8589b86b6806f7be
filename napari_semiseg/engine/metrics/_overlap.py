"""Overlap metrics on binary masks: Dice and Jaccard, as medpy's ``dc`` and ``jc`` define them."""

from __future__ import annotations

import numpy as np

from ._inputs import as_binary, check_same_shape


def _counts(prediction: np.ndarray, reference: np.ndarray) -> tuple[int, int, int]:
    """(|P ∩ R|, |P|, |R|) for two masks of one shape."""
    prediction, reference = as_binary(prediction), as_binary(reference)
    check_same_shape(prediction, reference)
    return (int(np.count_nonzero(prediction & reference)), int(np.count_nonzero(prediction)),
            int(np.count_nonzero(reference)))


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice coefficient 2|P∩R| / (|P|+|R|), in 0..1.

    Args:
        prediction, reference: masks of one shape, e.g. (z, y, x); non-zero is object.

    Returns:
        The Dice coefficient; 0.0 when only one mask is empty; 1.0 when both are (the value
        medpy's code means to return; with numpy 2 its division gives NaN instead).
    """
    intersection, size_p, size_r = _counts(prediction, reference)
    if size_p + size_r == 0:
        return 1.0
    return 2.0 * intersection / float(size_p + size_r)


def jaccard(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Jaccard index |P∩R| / |P∪R|, in 0..1; 1.0 when both masks are empty (as :func:`dice`).

    Args:
        prediction, reference: masks of one shape, e.g. (z, y, x); non-zero is object.
    """
    intersection, size_p, size_r = _counts(prediction, reference)
    union = size_p + size_r - intersection
    if union == 0:
        return 1.0
    return intersection / float(union)
