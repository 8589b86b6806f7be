"""The four correction steps of the teacher team (PLC-KD-style, RECONSTRUCTED).

Every step takes the current foreground soft label ``q`` (z, y, x), the gold label ``gold``
(bool (z, y, x): True = foreground) and ``mask`` (bool (z, y, x): where a gold or corrected
label exists), and returns a new array that differs from ``q`` only inside ``mask``.

A labelled voxel is *wrong* when its soft label is not strictly on its class's side of 0.5:
a foreground voxel with ``q ≤ 0.5`` or a background voxel with ``q ≥ 0.5``. Steps 1–3 move
only towards the correct side, never across it the wrong way, so they never make a correct
voxel wrong; step 4 guarantees that none is left.

The published method (Wang et al., MICCAI 2024) uses two *learned* assistants and a feature
similarity whose details are not public (see docs/METHODS.md §6.3). These steps are deterministic
stand-ins with the roles the abstract names, designed here; distances are in voxels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, special


def wrong_side(q: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Bool, same shape: foreground with ``q ≤ 0.5`` or background with ``q ≥ 0.5``."""
    return np.where(gold, q <= 0.5, q >= 0.5)


def false_pixel_assistant(q: np.ndarray, gold: np.ndarray, mask: np.ndarray, pull: float
                          ) -> np.ndarray:
    """Step 1, global: pull every false labelled voxel part of the way to its class.

    For a labelled voxel on the wrong side, ``q ← q + pull · (y − q)`` with ``y`` = 1 for
    foreground and 0 for background; other voxels are unchanged. ``pull = 0.5`` moves a false
    voxel halfway: a teacher that was wrong with confidence 0.8 ends on the right side (0.4),
    one wrong with certainty 1.0 stays a "hard" false voxel (0.5) for the next steps.

    Args:
        q: float64 (z, y, x) foreground probabilities.
        gold, mask: bool (z, y, x).
        pull: 0..1, the fraction of the distance to the class value moved.
    """
    out = q.copy()
    false = mask & wrong_side(q, gold)
    out[false] = q[false] + pull * (gold[false].astype(np.float64) - q[false])
    return out


def signed_boundary_distance(gold: np.ndarray, mask: np.ndarray, within: float | None = None
                             ) -> np.ndarray | None:
    """Signed distance (voxels) from each voxel centre to the gold label's boundary.

    Positive inside the foreground, negative in the background; a voxel next to the boundary
    sits at ±0.5 (the boundary lies halfway between neighbouring centres), the k-th layer at
    ±(k − 0.5). Only labelled voxels define the boundary: a foreground voxel's distance is
    to the nearest *labelled* background voxel and vice versa.

    Args:
        within: when given, distances are exact only where the nearest voxel of the other
            class is closer than ``within``; elsewhere they are at least that far (±inf
            outside the region examined). The Euclidean distance transform then runs on a
            box around the boundary instead of the whole volume (much faster on a volume
            whose object is small).

    Returns:
        float64 (z, y, x), or None when the labelled voxels hold only one class (no boundary).
    """
    foreground, background = mask & gold, mask & ~gold
    if not foreground.any() or not background.any():
        return None
    box = (tuple(slice(0, n) for n in gold.shape) if within is None
           else _boundary_box(foreground, background, int(np.ceil(within))))
    distance = np.where(gold, np.inf, -np.inf)
    if box is None:
        return distance
    to_background = _distance_to(background[box])
    to_foreground = _distance_to(foreground[box])
    distance[box] = np.where(gold[box], to_background - 0.5, -(to_foreground - 0.5))
    return distance


def _distance_to(targets: np.ndarray) -> np.ndarray:
    """Euclidean distance (voxels) from every voxel to the nearest True one; inf if none."""
    if not targets.any():
        return np.full(targets.shape, np.inf)
    return ndimage.distance_transform_edt(~targets)


def _bounding_box(selected: np.ndarray, reach: int) -> list[tuple[int, int]]:
    """Per axis, (start, stop) of the True voxels widened by ``reach`` (unclipped)."""
    bounds = []
    for axis in range(selected.ndim):
        others = tuple(a for a in range(selected.ndim) if a != axis)
        present = np.flatnonzero(selected.any(axis=others))
        bounds.append((int(present[0]) - reach, int(present[-1]) + 1 + reach))
    return bounds


def _boundary_box(foreground: np.ndarray, background: np.ndarray, reach: int
                  ) -> tuple[slice, ...] | None:
    """A box holding every voxel within ``reach`` of both classes, widened by ``reach``.

    A voxel closer than ``reach`` to both classes lies in the intersection of the two classes'
    boxes widened by ``reach``; its nearest voxel of the other class lies within ``reach`` of
    it, so inside that intersection widened once more. None when the intersection is empty.
    """
    near_both = [(max(f0, b0), min(f1, b1)) for (f0, f1), (b0, b1)
                 in zip(_bounding_box(foreground, reach), _bounding_box(background, reach))]
    if any(start >= stop for start, stop in near_both):
        return None
    return tuple(slice(max(0, start - reach), min(n, stop + reach))
                 for (start, stop), n in zip(near_both, foreground.shape))


def boundary_weights(distance: np.ndarray, band: float, weight: float) -> np.ndarray:
    """Blend weight of the boundary assistant for signed distances (voxels).

    ``w = weight · (1 − (|d| − 0.5) / band)`` for ``|d| − 0.5 < band``, else 0: ``weight``
    on the two layers touching the boundary, falling linearly to 0 after ``band`` layers.
    """
    depth = np.abs(distance) - 0.5
    return np.where(depth < band, weight * (1.0 - depth / band), 0.0) if band > 0 \
        else np.zeros_like(distance)


def boundary_assistant(q: np.ndarray, gold: np.ndarray, mask: np.ndarray, *, band: float,
                       softness: float, weight: float) -> np.ndarray:
    """Step 2, boundary: blend labelled voxels near the boundary towards a smoothed label.

    The smoothed label is ``s = σ(d / softness)`` with ``d`` the signed boundary distance
    (``signed_boundary_distance``) and σ the logistic function: a soft version of the gold
    label, above 0.5 inside and below outside, closest to 0.5 at the boundary, where a
    teacher is least reliable (blur, partial volume). In the band, ``q ← (1 − w)·q + w·s``
    with ``w`` from ``boundary_weights``. Both ``q`` (when correct) and ``s`` lie on the
    correct side, so the blend never creates a false voxel and moves false ones towards the
    right side.

    Args:
        band: layers of voxels on each side of the boundary that are blended (0 disables).
        softness: σ's scale in voxels; smaller is a sharper smoothed label.
        weight: 0..1, the blend weight at the boundary.
    """
    if band <= 0 or weight <= 0:
        return q.copy()
    # Weights vanish beyond band + 0.5 voxels from the boundary (edt ≥ band + 1): only
    # distances closer than that are needed exactly.
    distance = signed_boundary_distance(gold, mask, within=band + 1.0)
    if distance is None:
        return q.copy()
    out = q.copy()
    in_band = mask & (np.abs(distance) - 0.5 < band)
    d = distance[in_band]
    w = boundary_weights(d, band, weight)
    out[in_band] = (1.0 - w) * q[in_band] + w * special.expit(d / softness)
    return out


def similarity_features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Intensity standardised over the labelled voxels: (image − mean) / std, float64."""
    values = image[mask].astype(np.float64)
    spread = values.std() or 1.0
    return (image.astype(np.float64) - values.mean()) / spread


def similarity_correction(q: np.ndarray, gold: np.ndarray, mask: np.ndarray,
                          image: np.ndarray | None, tolerance: float) -> np.ndarray:
    """Step 3: give each remaining false voxel the soft label of similar voxels of its class.

    References of a class are its labelled voxels that are already on the correct side. A
    false voxel ``i`` of class ``c`` gets the mean ``q`` of the references of ``c`` whose
    standardised intensity (``similarity_features``) lies within ``tolerance`` of its own —
    a box kernel on intensity: voxels that look alike get alike soft labels. When none is
    that close, or when no image is given, it gets the mean over all references of ``c``
    (the class prototype). A mean of values on the correct side is on the correct side, so
    this fixes every false voxel of a class that has at least one correct reference.

    Args:
        image: the case's image (z, y, x) or None.
        tolerance: half-width of the intensity window, in standard deviations of the
            intensity over the labelled voxels.
    """
    out = q.copy()
    wrong = mask & wrong_side(q, gold)
    if not wrong.any():
        return out
    features = None if image is None else similarity_features(image, mask)
    for cls in (True, False):
        queries = wrong & (gold == cls)
        references = mask & (gold == cls) & ~wrong
        if not queries.any() or not references.any():
            continue
        if features is None:
            out[queries] = q[references].mean()
        else:
            out[queries] = _window_means(features[references], q[references], features[queries],
                                         tolerance)
    return out


def _window_means(reference_features: np.ndarray, reference_values: np.ndarray,
                  query_features: np.ndarray, tolerance: float) -> np.ndarray:
    """Mean reference value with ``|f_ref − f_query| ≤ tolerance`` per query; else the mean."""
    order = np.argsort(reference_features, kind="stable")
    sorted_features = reference_features[order]
    sums = np.concatenate([[0.0], np.cumsum(reference_values[order])])
    low = np.searchsorted(sorted_features, query_features - tolerance, side="left")
    high = np.searchsorted(sorted_features, query_features + tolerance, side="right")
    counts = high - low
    prototype = reference_values.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums[high] - sums[low]) / counts
    return np.where(counts > 0, means, prototype)


def force_correct_side(q: np.ndarray, gold: np.ndarray, mask: np.ndarray, *, margin: float,
                       mode: str) -> np.ndarray:
    """Step 4, final forcing: every labelled voxel ends strictly on its class's side.

    Wrong foreground voxels become ``0.5 + margin`` ("clamp", the smallest move that leaves
    a margin) or ``max(1 − q, 0.5 + margin)`` ("reflect": a confidently wrong teacher becomes
    confidently right); background voxels symmetrically ``0.5 − margin`` or
    ``min(1 − q, 0.5 − margin)``. Not part of the published description: it is the
    implementation choice that makes "all correct" a guarantee (docs/METHODS.md §6.3, step 5).

    Args:
        q: (z, y, x) soft label in its output dtype (the check is made in that precision).
        margin: 0 < margin < 0.5.
        mode: "clamp" or "reflect".
    """
    out = q.copy()
    wrong = mask & wrong_side(q, gold)
    positive, negative = wrong & gold, wrong & ~gold
    if mode == "reflect":
        out[positive] = np.maximum(1.0 - q[positive], 0.5 + margin)
        out[negative] = np.minimum(1.0 - q[negative], 0.5 - margin)
    else:
        out[positive] = 0.5 + margin
        out[negative] = 0.5 - margin
    return out
