"""Checks that keep bad voxels away from the networks and bad labels out of a project."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import GeometryMismatchError, VolumeError
from ._volume import Geometry, Volume


def check_finite(volume: Volume) -> None:
    """Raise if any intensity is NaN or ±inf (integer volumes always pass).

    Raises:
        VolumeError: naming ``volume.source`` and how many voxels are NaN and how many infinite.
    """
    array = volume.array
    if not np.issubdtype(array.dtype, np.inexact):
        return
    n_nan = int(np.count_nonzero(np.isnan(array)))
    n_inf = int(np.count_nonzero(np.isinf(array)))
    if n_nan or n_inf:
        raise VolumeError(volume.source, f"{n_nan + n_inf} of {array.size} voxels are not finite "
                          f"({n_nan} NaN, {n_inf} infinite); fix or mask them before use")


def check_real(array: np.ndarray, source: str | Path | None) -> None:
    """Raise unless the voxels are real numbers (bool, integer or float).

    Text would fail deep inside the networks and complex values would be cast to their real
    part without a word, so both are refused where the file is read.

    Raises:
        VolumeError: naming ``source`` and what the voxels are instead.
    """
    kind = array.dtype.kind
    if kind in "biuf":
        return
    what = {"c": "complex numbers", "S": "text", "U": "text", "O": "text or Python objects"}.get(
        kind, "values that are not numbers")
    raise VolumeError(source, f"image voxels are {what} (dtype {array.dtype}); a volume of real "
                      "numbers is needed")


def label_storage_dtype(max_value: int) -> np.dtype:
    """The smallest unsigned dtype holding label values up to ``max_value`` (uint8 usually)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if max_value <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def validate_label(array: np.ndarray, geometry: Geometry | None, like: Geometry,
                   source: str | Path | None = None) -> np.ndarray:
    """Check that ``array`` is a label map for the image on ``like``'s grid; return it as unsigned.

    Args:
        array: the label map, (z, y, x), any integer, bool or float dtype.
        geometry: the grid the label was stored on (its file's geometry), or None for an
            in-memory label that is on ``like``'s grid by construction (only its shape is checked).
        like: the image's grid.
        source: the file or object named in error messages.

    Returns:
        The same values as uint8 (uint16/uint32 when a value exceeds 255/65535). Float arrays
        with whole-number values are accepted and cast: some public label files are float32.

    Raises:
        GeometryMismatchError: shape, spacing, origin or direction differ from ``like``'s.
        VolumeError: not 3-D, not numeric, non-integer (NaN included) or negative values.
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise VolumeError(source, f"label is {array.ndim}-D {array.shape}; "
                          "a (z, y, x) map is needed")
    label_grid = geometry if geometry is not None else Geometry(array.shape, like.spacing,
                                                                like.origin, like.direction)
    if tuple(array.shape) != like.shape or not label_grid.matches(like):
        raise GeometryMismatchError(source, "label does not lie on the image's grid: "
                                    f"{like.describe_difference(label_grid)} (label vs image)")
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise VolumeError(source, f"label has dtype {array.dtype}; integer values are needed")
    if np.issubdtype(array.dtype, np.floating):
        _require_whole_numbers(array, source)
    if array.size and array.min() < 0:
        raise VolumeError(source, f"label has {int(np.count_nonzero(array < 0))} negative voxels "
                          f"(min {array.min():g}); label values are 0 (background) or more")
    target = label_storage_dtype(int(array.max()) if array.size else 0)
    return array if array.dtype == target else array.astype(target)


def _require_whole_numbers(array: np.ndarray, source) -> None:
    fractional = ~np.isfinite(array) | (array != np.round(array))
    count = int(np.count_nonzero(fractional))
    if count:
        example = array[fractional].flat[0]
        raise VolumeError(source, f"label has {count} voxels with non-integer values "
                          f"(e.g. {example:g}); a label map holds whole numbers")
