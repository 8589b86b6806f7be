"""A volume becomes network input (and probabilities come back): the card's preprocessing.

Order, as in the pancreas protocol (docs/METHODS.md §1.2): resample to the card's target spacing
first, then intensity (CT window, then z-score; or z-score alone). The z-score is always over
the whole volume, never a crop of it; under ``"zscore-once"`` a volume that already is the
z-score of its whole scan (the LA ``mri_norm2.h5``, ``Volume.zscored``) is fed as stored, as
the LA papers' code does (docs/METHODS.md §1.1).

Resampling uses ``torch.nn.functional.interpolate`` (trilinear, ``align_corners=False``) to
``round(shape · spacing / target_spacing)`` voxels. That mapping keeps the volume's physical
extent (first and last voxel *edges* coincide), so the effective spacing is
``spacing · shape / new_shape``, within half a voxel of the target, and the way back to the
input grid is the exact inverse mapping. Probabilities are resampled back linearly (a convex
combination, so they still sum to 1) before the argmax. MONAI's ``Spacing`` works through
an affine on a MetaTensor; for a there-and-back on one axis-aligned voxel grid ``interpolate``
is all that is needed. Linear rather than the pancreas notebook's B-spline: it cannot
overshoot the intensity window.

All arrays are (z, y, x), float32, on the CPU; memory stays at one or two volume copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import SemisegError, VolumeError
from ...io._volume import Volume

#: z-slabs processed at a time by the statistics and intensity passes: bounds temporaries.
SLAB = 16
#: Relative spacing difference below which resampling is skipped.
SPACING_TOLERANCE = 1e-3


class PreprocessingError(SemisegError):
    """The card's preprocessing cannot be applied to this volume."""


@dataclass(frozen=True)
class NetworkInput:
    """A volume on the network's grid.

    Attributes:
        image: float32 (z, y, x), preprocessed, on the network grid (CPU).
        input_shape: the volume's own (z, y, x) shape, where results must return.
        spacing: effective (z, y, x) spacing of ``image`` in mm.
    """

    image: np.ndarray
    input_shape: tuple[int, int, int]
    spacing: tuple[float, float, float]


def _where(volume: Volume) -> str:
    return str(volume.source) if volume.source is not None else "volume"


def check_finite_volume(volume: Volume) -> None:
    """Refuse NaN or infinite voxels before they poison the statistics and the network.

    Raises:
        VolumeError: naming the source and the count of non-finite voxels.
    """
    array = volume.array
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = sum(int(np.count_nonzero(~np.isfinite(array[z:z + SLAB]))) for z in range(0, array.shape[0], SLAB))
    if bad:
        raise VolumeError(volume.source, f"{bad} voxel(s) are NaN or infinite; fix or mask them before "
                                         "predicting (the network cannot be fed non-finite values)")


def network_shape(shape, spacing, target_spacing) -> tuple[int, int, int]:
    """The (z, y, x) voxel counts on the target spacing (the input's when ``target_spacing`` is None)."""
    if target_spacing is None:
        return tuple(int(s) for s in shape)
    new = []
    for size, have, want in zip(shape, spacing, target_spacing):
        if want <= 0:
            raise PreprocessingError(f"target spacing must be positive, got {tuple(target_spacing)}")
        same = abs(have - want) <= SPACING_TOLERANCE * want
        new.append(int(size) if same else max(1, int(round(size * have / want))))
    return tuple(new)


def resample_linear(array: torch.Tensor, shape) -> torch.Tensor:
    """Trilinear resampling of (C, z, y, x) or (z, y, x) to ``shape`` (z, y, x), extent-preserving."""
    if tuple(array.shape[-3:]) == tuple(shape):
        return array
    batch = array[None] if array.ndim == 4 else array[None, None]
    out = F.interpolate(batch, size=tuple(shape), mode="trilinear", align_corners=False)
    return out[0] if array.ndim == 4 else out[0, 0]


def _slab_mean_std(array: np.ndarray) -> tuple[float, float]:
    # Two passes over z-slabs in float64: exact enough, and no full-size temporary.
    n = array.size
    mean = sum(float(array[z:z + SLAB].sum(dtype=np.float64)) for z in range(0, array.shape[0], SLAB)) / n
    sq = sum(float(np.square(array[z:z + SLAB].astype(np.float64) - mean).sum())
             for z in range(0, array.shape[0], SLAB))
    return mean, (sq / n) ** 0.5


def zscore_(array: np.ndarray) -> np.ndarray:
    """Z-score a float32 array in place with its own mean and (population) std."""
    mean, std = _slab_mean_std(array)
    array -= np.float32(mean)
    if std > 1e-8:  # a constant volume stays all zeros rather than becoming NaN
        array /= np.float32(std)
    return array


def window_(array: np.ndarray, window) -> np.ndarray:
    """Clip a float32 array in place to ``window`` = (low, high) and scale it to 0..1."""
    low, high = (float(w) for w in window)
    if not high > low:
        raise PreprocessingError(f"intensity window must be (low, high) with high > low, got {tuple(window)}")
    np.clip(array, low, high, out=array)
    array -= np.float32(low)
    array /= np.float32(high - low)
    return array


def normalise_intensity_(array: np.ndarray, preprocessing, *, zscored: bool = False) -> np.ndarray:
    """Apply the card's intensity rule to a float32 array in place (see ``Preprocessing``).

    ``zscored``: the array already is the z-score of its whole original scan (``Volume.zscored``);
    the ``"zscore-once"`` rule then keeps it as stored, as the LA papers' code feeds
    ``mri_norm2.h5`` (z-scoring the crop again would erase its offset from the scan's mean).
    """
    kind = preprocessing.intensity
    if kind == "none" or (kind == "zscore-once" and zscored):
        return array
    if kind in ("zscore", "zscore-once"):
        return zscore_(array)
    if kind == "window":
        if preprocessing.window is None:
            raise PreprocessingError("intensity 'window' needs preprocessing.window = [low, high]")
        return zscore_(window_(array, preprocessing.window))
    raise PreprocessingError(f"unknown intensity preprocessing {kind!r}; expected zscore, zscore-once, window or none")


def prepare_input(volume: Volume, preprocessing) -> NetworkInput:
    """Check, resample and normalise a volume for the network.

    Args:
        volume: the input, any numeric dtype, (z, y, x).
        preprocessing: the card's ``Preprocessing``.

    Returns:
        The float32 network image (a new array; the volume is untouched).

    Raises:
        VolumeError: the volume is not 3-D or holds NaN/inf.
        PreprocessingError: the card's preprocessing is malformed.
    """
    if volume.array.ndim != 3:
        raise VolumeError(volume.source, f"expected a 3-D (z, y, x) volume, got shape {volume.array.shape}")
    check_finite_volume(volume)
    target = network_shape(volume.shape, volume.spacing, preprocessing.target_spacing)
    image = torch.from_numpy(np.array(volume.array, dtype=np.float32, copy=True))
    image = resample_linear(image, target).contiguous().numpy()
    normalise_intensity_(image, preprocessing, zscored=volume.zscored)
    spacing = tuple(sp * s / t for sp, s, t in zip(volume.spacing, volume.shape, target))
    return NetworkInput(image, tuple(volume.shape), spacing)


def to_input_grid(maps: torch.Tensor, input_shape) -> torch.Tensor:
    """Bring (C, z', y', x') maps on the network grid back to the volume's (z, y, x) grid, linearly."""
    if tuple(maps.shape[-3:]) == tuple(input_shape):
        return maps
    return resample_linear(maps, input_shape).contiguous()
