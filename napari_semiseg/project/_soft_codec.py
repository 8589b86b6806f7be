"""Soft labels on disk: class probabilities quantised to 8 bits, and their uncertainty summary.

A soft label is a (K, z, y, x) array of class probabilities summing to 1 per voxel. The file
keeps only the K − 1 foreground channels (the background is 1 minus their sum), each as
``uint8`` with ``p ≈ code / 255``, in a compressed ``.npz`` (no pickled objects):

- stored channels: ``code = rint(255 · p)``, so ``|decoded − p| ≤ 1/510`` (``MAX_ERROR``);
- background: ``1 − Σ decoded`` clipped to 0..1, within ``(K − 1)/510`` of the original (exact
  complement of the foreground for a binary task, so its error is also ≤ 1/510).

Because 255 is odd, no code decodes to exactly 0.5: for a binary task a foreground
probability above 0.5 decodes above 0.5 and one below decodes below, so the side of 0.5 (the
hard label, and the teacher team's "all-correct" guarantee) survives storage. Exactly 0.5
rounds to code 128 (0.502).

An LA volume (about 9 M voxels) takes 9 MB before compression, a quarter of float32's K
channels at K = 2 — the float16 alternative would take twice that for an error (≤ 2⁻¹¹ near
1) that distillation cannot use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ProjectError
from ..io._atomic import atomic_path

#: Marks our files; ``format`` entry of the npz.
SOFT_LABEL_FORMAT = "napari-semiseg-soft-label"
SOFT_LABEL_FORMAT_VERSION = 1
#: The ``encoding`` the catalogue records: 8-bit codes, probability = code / 255.
ENCODING = "uint8/255"
#: Largest decoding error of a stored (foreground) channel.
MAX_ERROR = 1.0 / 510.0
SOFT_LABEL_SUFFIX = ".npz"
_SCALE = 255.0
#: z-slabs per step when summarising: bounds the temporaries on large volumes.
_SLAB = 16


@dataclass(frozen=True)
class SoftLabelStats:
    """Uncertainty summary of one soft label, over all its voxels.

    Attributes:
        mean_entropy: mean normalised entropy ``−Σ p log p / log K`` (0 certain .. 1 uniform).
        max_entropy: its largest value over the voxels.
        mean_confidence: mean of the largest class probability (1/K .. 1).
        foreground_fraction: fraction of voxels whose most probable class is not background.
    """

    mean_entropy: float
    max_entropy: float
    mean_confidence: float
    foreground_fraction: float


def as_class_probabilities(probabilities: np.ndarray, shape: tuple[int, ...], what: str
                           ) -> np.ndarray:
    """Check a soft label and return it as (K, z, y, x) float32.

    Args:
        probabilities: (K, z, y, x) class probabilities, or a (z, y, x) foreground probability
            of a binary task (background = 1 − foreground).
        shape: the case's (z, y, x) grid.
        what: names the soft label in error messages.

    Raises:
        ProjectError: wrong shape, non-finite values, values outside 0..1, or channels that
            do not sum to 1 (within 1e-3).
    """
    array = np.asarray(probabilities)
    if not np.issubdtype(array.dtype, np.floating):
        raise ProjectError(f"{what}: probabilities must be floating point, not {array.dtype}")
    if array.shape == tuple(shape):
        foreground = array.astype(np.float32, copy=False)
        array = np.stack([1.0 - foreground, foreground])
    if array.ndim != 4 or array.shape[1:] != tuple(shape) or array.shape[0] < 2:
        raise ProjectError(f"{what}: probabilities of shape {array.shape} do not fit the case's "
                           f"grid {tuple(shape)}; give (K, z, y, x) with K ≥ 2 or (z, y, x)")
    array = array.astype(np.float32, copy=False)
    if not np.isfinite(array).all():
        raise ProjectError(f"{what}: probabilities contain NaN or infinite values")
    if array.min() < -1e-6 or array.max() > 1 + 1e-6:
        raise ProjectError(f"{what}: probabilities must lie in 0..1 (found {array.min():.4g}.."
                           f"{array.max():.4g}); were logits given?")
    worst = float(np.abs(array.sum(axis=0, dtype=np.float64) - 1.0).max())
    if worst > 1e-3:
        raise ProjectError(f"{what}: class probabilities must sum to 1 per voxel (off by up to "
                           f"{worst:.3g})")
    return array


def encode(probabilities: np.ndarray) -> np.ndarray:
    """(K, z, y, x) probabilities → (K − 1, z, y, x) uint8 codes of the foreground channels."""
    codes = np.empty((probabilities.shape[0] - 1, *probabilities.shape[1:]), dtype=np.uint8)
    for channel in range(1, probabilities.shape[0]):
        # float64: 255·p must land on the right side of 127.5 even for p one ulp above 0.5.
        scaled = np.clip(probabilities[channel].astype(np.float64) * _SCALE, 0.0, _SCALE)
        codes[channel - 1] = np.rint(scaled)
    return codes


def decode(codes: np.ndarray) -> np.ndarray:
    """(K − 1, z, y, x) uint8 codes → (K, z, y, x) float32 probabilities."""
    foreground = codes.astype(np.float32) / np.float32(_SCALE)
    background = np.clip(1.0 - foreground.sum(axis=0), 0.0, 1.0).astype(np.float32)
    return np.concatenate([background[None], foreground])


def write_soft_label(path: Path, codes: np.ndarray) -> None:
    """Write codes (from ``encode``) as a compressed npz, atomically.

    Raises:
        ProjectError: the file cannot be written (a full disk, the file-size limit); no
            temporary file is left.
    """
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, format=np.array(SOFT_LABEL_FORMAT),
                                version=np.array(SOFT_LABEL_FORMAT_VERSION),
                                encoding=np.array(ENCODING), codes=codes)
    except OSError as error:
        raise ProjectError(f"{path}: cannot be written, nothing was saved: {error.strerror or error}") from None


def read_soft_label(path: Path, shape: tuple[int, ...], num_classes: int) -> np.ndarray:
    """Read a soft-label file back as (K, z, y, x) float32 probabilities.

    Raises:
        ProjectError: the file is missing, damaged, not ours, or does not fit the case.
    """
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"{path}: soft-label file is missing")
    try:
        with np.load(path, allow_pickle=False) as stored:
            fmt, encoding = str(stored["format"]), str(stored["encoding"])
            codes = stored["codes"]
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise ProjectError(f"{path}: not a readable soft-label file ({error})") from None
    if fmt != SOFT_LABEL_FORMAT or encoding != ENCODING:
        raise ProjectError(f"{path}: not a napari-semiseg soft label ({fmt}, {encoding})")
    if codes.dtype != np.uint8 or codes.shape != (num_classes - 1, *shape):
        raise ProjectError(f"{path}: soft label of shape {codes.shape} does not fit "
                           f"{num_classes} classes on the grid {tuple(shape)}")
    return decode(codes)


def summarise(probabilities: np.ndarray) -> SoftLabelStats:
    """Entropy, confidence and foreground fraction of (K, z, y, x) probabilities."""
    k, depth = probabilities.shape[0], probabilities.shape[1]
    voxels = int(np.prod(probabilities.shape[1:]))
    entropy_sum = confidence_sum = 0.0
    entropy_max = 0.0
    foreground = 0
    scale = 1.0 / math.log(k)
    for z in range(0, depth, _SLAB):
        p = probabilities[:, z:z + _SLAB].astype(np.float64)
        # p·log p with 0·log 0 = 0: log of a tiny floor, multiplied by the exact 0.
        entropy = np.clip(-(p * np.log(np.maximum(p, 1e-300))).sum(axis=0) * scale, 0.0, 1.0)
        entropy_sum += float(entropy.sum())
        entropy_max = max(entropy_max, float(entropy.max(initial=0.0)))
        confidence_sum += float(p.max(axis=0).sum())
        foreground += int(np.count_nonzero(p.argmax(axis=0)))
    return SoftLabelStats(mean_entropy=entropy_sum / voxels, max_entropy=entropy_max,
                          mean_confidence=confidence_sum / voxels,
                          foreground_fraction=foreground / voxels)
