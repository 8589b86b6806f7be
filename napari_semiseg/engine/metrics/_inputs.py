"""Checks on what the metric functions are given, with messages a user can act on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_semiseg.errors import SemisegError


class MetricsInputError(SemisegError):
    """A prediction/reference pair cannot be scored as given (shape, labels, spacing)."""


def _where(case_id: str | None) -> str:
    return f"case {case_id!r}: " if case_id is not None else ""


def check_same_shape(prediction: np.ndarray, reference: np.ndarray, case_id: str | None = None) -> None:
    """Raise MetricsInputError unless both arrays have the same shape."""
    if prediction.shape != reference.shape:
        raise MetricsInputError(
            f"{_where(case_id)}prediction shape {tuple(prediction.shape)} differs from "
            f"reference shape {tuple(reference.shape)}")


def as_binary(mask: np.ndarray) -> np.ndarray:
    """A bool copy of ``mask``: object wherever it is non-zero (medpy's reading)."""
    return np.asarray(mask).astype(bool, copy=False)


def as_label_map(labels: np.ndarray, what: str, case_id: str | None = None) -> np.ndarray:
    """``labels`` as an integer array of class indices (0 = background).

    Raises:
        MetricsInputError: the array holds negative or non-integer values (e.g. probabilities).
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise MetricsInputError(
                f"{_where(case_id)}{what} holds non-integer values; metrics need hard labels, "
                "not probabilities")
        labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise MetricsInputError(f"{_where(case_id)}{what} holds negative labels")
    return labels


def normalise_spacing(spacing: Sequence[float] | float | None, ndim: int,
                      case_id: str | None = None) -> tuple[float, ...] | None:
    """Spacing as one positive finite float per axis, in the arrays' axis order; None stays None."""
    if spacing is None:
        return None
    values = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (ndim,)) \
        if np.ndim(spacing) == 0 else np.asarray(spacing, dtype=np.float64)
    if values.shape != (ndim,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise MetricsInputError(
            f"{_where(case_id)}spacing {tuple(np.atleast_1d(spacing).tolist())} must be {ndim} "
            "positive numbers (z, y, x) in mm")
    return tuple(float(v) for v in values)
