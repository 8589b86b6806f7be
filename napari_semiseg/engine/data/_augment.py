"""The LA papers' augmentation (docs/METHODS.md §1.1) with MONAI's deterministic array transforms.

In order, on the whole prepared volume:

1. rot90 by k ∈ {0, 1, 2, 3} in the axial plane;
2. a flip along one of the two in-plane axes (one always happens);
3. zero-pad when any side is no larger than the patch, by (patch − size)//2 + 3 on both ends
   of every axis where that is positive; then a crop whose start is uniform in
   [0, size − patch) on each axis.

The papers store volumes as (x, y, z) and rotate/flip in their axes (0, 1); our arrays are
(z, y, x), so those are our axes (2, 1): ``Rotate90(k, spatial_axes=(2, 1))`` equals their
``np.rot90(a, k, axes=(0, 1))`` exactly, and their flip axis 0/1 is our 2/1.

Random draws come from the numpy generator the caller passes (one per sample, seeded from
the run seed, rank, iteration and slot), never from MONAI's or numpy's global state, so a
batch is a pure function of its iteration: repeatable, and resumable without saved sampler
state. The label rides along as an extra channel through the same transforms, so image and
label stay aligned by construction. Only the patch's source block is ever copied, not the
volume (see ``la_augment``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.transforms import BorderPad, Flip, Rotate90, SpatialCrop

#: Our spatial axes (of a channel-first (C, Z, Y, X) array) for the papers' (x, y) axes (0, 1).
IN_PLANE_AXES = (2, 1)
PAD_MARGIN = 3


def crop_padding(shape: Sequence[int], patch: Sequence[int]) -> list[int]:
    """Voxels of zero padding on each end of each axis before cropping (the papers' rule)."""
    if all(s > p for s, p in zip(shape, patch)):
        return [0] * len(shape)
    return [max((p - s) // 2 + PAD_MARGIN, 0) for s, p in zip(shape, patch)]


def _axis_map(k: int, flip_axis: int) -> list[tuple[int, bool]]:
    """For each spatial axis of rot90-then-flip's output: (its source axis, reversed?)."""
    state = [(0, False), (1, False), (2, False)]
    first, second = IN_PLANE_AXES
    for _ in range(k):  # numpy's rot90 by one quarter: flip the second axis, swap the two
        source, reversed_ = state[second]
        state[second] = (source, not reversed_)
        state[first], state[second] = state[second], state[first]
    source, reversed_ = state[flip_axis]
    state[flip_axis] = (source, not reversed_)
    return state


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    """MONAI returns MetaTensors; we need no metadata."""
    return tensor.as_tensor() if hasattr(tensor, "as_tensor") else tensor


def la_augment(image: np.ndarray, label: np.ndarray | None, patch: Sequence[int],
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotate, flip, pad and crop one case to a training patch.

    The result equals rotating and flipping the whole volume, padding it and cropping it (the
    papers' order), but only the patch's source block is copied: the crop box is mapped back
    through the rotation and flip, cut out (zero-padded where it leaves the volume), and only
    that block is rotated and flipped.

    Args:
        image: (C, Z, Y, X) float32 prepared volume.
        label: (Z, Y, X) integer classes on the same grid, or None (unlabelled).
        patch: the card's patch size (z, y, x) in voxels.
        rng: this sample's generator (three kinds of draws: k, the flip axis, the crop start).

    Returns:
        (image patch (C, *patch) float32, label patch (*patch) int64 or None).
    """
    k = int(rng.integers(0, 4))
    flip_axis = IN_PLANE_AXES[int(rng.integers(0, 2))]
    axes = _axis_map(k, flip_axis)
    size = image.shape[1:]
    out_shape = [size[source] for source, _ in axes]
    padding = crop_padding(out_shape, patch)
    starts = [int(rng.integers(0, n + 2 * pad - p)) for n, pad, p in zip(out_shape, padding, patch)]
    block_start, block_end = [0, 0, 0], [0, 0, 0]
    for (source, reversed_), start, pad, p in zip(axes, starts, padding, patch):
        low, high = start - pad, start - pad + p  # the crop, in the unpadded output frame
        if reversed_:
            low, high = size[source] - high, size[source] - low
        block_start[source], block_end[source] = low, high
    inside_start = [max(0, s) for s in block_start]
    inside_end = [min(n, e) for n, e in zip(size, block_end)]
    crop = SpatialCrop(roi_start=inside_start, roi_end=inside_end)
    block = _plain(crop(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))))
    if label is not None:  # the label rides along as one more channel, cut from the same block
        label_block = _plain(crop(torch.from_numpy(np.ascontiguousarray(label))[None]))
        block = torch.cat([block, label_block.to(torch.float32)])
    border = [w for s, e, lo, hi in zip(block_start, block_end, inside_start, inside_end) for w in (lo - s, e - hi)]
    if any(border):
        block = BorderPad(spatial_border=border, mode="constant")(block)
    block = Flip(spatial_axis=flip_axis)(Rotate90(k=k, spatial_axes=IN_PLANE_AXES)(block))
    block = _plain(block).numpy()
    if label is None:
        return np.ascontiguousarray(block, dtype=np.float32), None
    return np.ascontiguousarray(block[:-1], dtype=np.float32), np.ascontiguousarray(block[-1]).astype(np.int64)


__all__ = ["IN_PLANE_AXES", "crop_padding", "la_augment"]
