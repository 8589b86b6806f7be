"""Surface-distance metrics (95HD, ASD, ASSD) with medpy's semantics, on numpy + scipy only.

Definitions (those of ``medpy.metric.binary``, which the LA and pancreas papers call):

- the *surface* of a mask is the mask XOR its one-step binary erosion with the
  connectivity-1 structuring element (6 neighbours in 3D); outside the array is background;
- the directed distances from P to R are, for every surface voxel of P, the Euclidean distance
  to the nearest surface voxel of R (an EDT of R's surface, with ``sampling=spacing``);
- **95HD** is the 95th percentile (numpy's default linear interpolation) of the *pooled*
  directed distances P→R and R→P concatenated; this is not MONAI's 95HD, which takes the max of
  the two directed 95th percentiles;
- **ASD** is the mean of the directed distances P→R only (not symmetric); **ASSD** the mean of the
  pooled distances.

Empty masks follow the papers' convention: an empty prediction scores 0 (95HD = ASD = ASSD = 0),
which is optimistic; :func:`napari_semiseg.engine.metrics.evaluate_case` flags it. With an empty
reference and a non-empty prediction no distance is defined: the result is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._inputs import as_binary, check_same_shape, normalise_spacing

# The crop keeps one voxel of background around both objects. Zero would already be exact (the
# tests check both), but with the margin the cropped erosion sees real background voxels on every
# side that lies inside the array instead of relying on ``border_value`` there.
_CROP_MARGIN = 1


def surface_mask(mask: np.ndarray) -> np.ndarray:
    """The one-voxel-thick surface of a binary mask (medpy's border).

    Args:
        mask: any shape, e.g. (z, y, x); non-zero is object.

    Returns:
        bool array of the same shape: object voxels with at least one 6-neighbour (face
        neighbour) in the background or outside the array.
    """
    mask = as_binary(mask)
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask ^ ndimage.binary_erosion(mask, structure=cross, iterations=1, border_value=0)


def _bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Slices of the bounding box of ``mask``'s non-zero voxels, grown by ``margin``, clipped."""
    box = ndimage.find_objects(mask.astype(np.uint8, copy=False))[0]
    return tuple(slice(max(s.start - margin, 0), min(s.stop + margin, n))
                 for s, n in zip(box, mask.shape))


def _distances_to(surface: np.ndarray, at: np.ndarray, spacing: tuple[float, ...] | None) -> np.ndarray:
    """Distances from every voxel of ``at`` to the nearest voxel of ``surface`` (C order)."""
    return ndimage.distance_transform_edt(~surface, sampling=spacing)[at]


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances between a prediction P and a reference R.

    Attributes:
        prediction_to_reference: 1-D float64, one distance per surface voxel of P (C order),
            in voxels or in mm as ``spacing`` says.
        reference_to_prediction: the same from R's surface voxels to P's surface.
        spacing: the (z, y, x) voxel size in mm the distances were measured with; None = voxels.
    """

    prediction_to_reference: np.ndarray
    reference_to_prediction: np.ndarray
    spacing: tuple[float, ...] | None = None

    def pooled(self) -> np.ndarray:
        """Both directed sets concatenated (P→R first), as medpy's hd95 and assd pool them."""
        return np.concatenate([self.prediction_to_reference, self.reference_to_prediction])

    def hd95(self) -> float:
        """95th percentile of the pooled distances (linear interpolation)."""
        return float(np.percentile(self.pooled(), 95))

    def asd(self) -> float:
        """Mean distance from the prediction's surface to the reference's surface."""
        return float(self.prediction_to_reference.mean())

    def assd(self) -> float:
        """Mean of the pooled distances (symmetric)."""
        return float(self.pooled().mean())


def surface_distances(prediction: np.ndarray, reference: np.ndarray,
                      spacing: Sequence[float] | None = None, *, crop: bool = True) -> SurfaceDistances:
    """Directed surface distances P→R and R→P, both masks non-empty.

    The two EDTs run on the bounding box of P ∪ R (plus a one-voxel margin) rather than on the
    whole volume, which is several times faster on LA-sized volumes and gives the same numbers:
    every neighbour the erosion reads outside the box is background in the full array too (or
    lies outside the array, which the erosion treats as background), and every zero of either
    EDT (a surface voxel) lies inside the box, so the nearest one found in the box is the
    nearest one overall.

    Args:
        prediction, reference: masks of one shape, e.g. (z, y, x); non-zero is object; neither
            may be empty.
        spacing: voxel size per axis in mm, (z, y, x); None measures in voxels.
        crop: False runs the EDTs on the whole array (same result; kept for verification).

    Returns:
        SurfaceDistances in voxels, or in mm when ``spacing`` is given.

    Raises:
        ValueError: a mask is empty (no surface to measure from or to).
        MetricsInputError: shapes or spacing do not fit.
    """
    prediction, reference = as_binary(prediction), as_binary(reference)
    check_same_shape(prediction, reference)
    spacing = normalise_spacing(spacing, prediction.ndim)
    if not prediction.any() or not reference.any():
        raise ValueError("surface distances need two non-empty masks")
    return directed_distances(*surfaces(prediction, reference, crop=crop), spacing)


def surfaces(prediction: np.ndarray, reference: np.ndarray, *, crop: bool = True,
             margin: int = _CROP_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """The surfaces of two non-empty bool masks, on their shared bounding box when ``crop``.

    Both results share one grid, so they can be measured against each other with any spacing
    (:func:`directed_distances`) without repeating the erosions. ``margin`` voxels of the
    array are kept around the box on each side where the array has them.
    """
    if crop:
        box = _bounding_box(prediction | reference, margin)
        prediction, reference = prediction[box], reference[box]
    return surface_mask(prediction), surface_mask(reference)


def directed_distances(prediction_surface: np.ndarray, reference_surface: np.ndarray,
                       spacing: tuple[float, ...] | None) -> SurfaceDistances:
    """Both directed distance sets between two non-empty surfaces on one grid."""
    return SurfaceDistances(
        prediction_to_reference=_distances_to(reference_surface, prediction_surface, spacing),
        reference_to_prediction=_distances_to(prediction_surface, reference_surface, spacing),
        spacing=spacing)


def _by_convention(prediction: np.ndarray, reference: np.ndarray,
                   spacing: Sequence[float] | None) -> float | None:
    """The papers' value when a mask is empty (0, or NaN for an empty reference); else None."""
    prediction, reference = as_binary(prediction), as_binary(reference)
    check_same_shape(prediction, reference)
    normalise_spacing(spacing, prediction.ndim)
    if not prediction.any():
        return 0.0
    if not reference.any():
        return float("nan")
    return None


def hd95(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th-percentile Hausdorff distance of the pooled surface distances (medpy's ``hd95``).

    Args:
        prediction, reference: masks of one shape, e.g. (z, y, x); non-zero is object.
        spacing: voxel size (z, y, x) in mm; None gives voxel units (the papers' tables).

    Returns:
        The distance; 0.0 for an empty prediction (papers' convention), NaN for an empty
        reference with a non-empty prediction.
    """
    fixed = _by_convention(prediction, reference, spacing)
    return fixed if fixed is not None else surface_distances(prediction, reference, spacing).hd95()


def asd(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Average surface distance from the prediction's surface to the reference's (medpy's ``asd``).

    Args and returns as :func:`hd95`.
    """
    fixed = _by_convention(prediction, reference, spacing)
    return fixed if fixed is not None else surface_distances(prediction, reference, spacing).asd()


def assd(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Average symmetric surface distance, the mean of the pooled distances (medpy's ``assd``).

    Args and returns as :func:`hd95`.
    """
    fixed = _by_convention(prediction, reference, spacing)
    return fixed if fixed is not None else surface_distances(prediction, reference, spacing).assd()
