"""From probabilities to a hard label, and the optional largest-connected-component filter."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

#: z-slabs per argmax step: torch's argmax returns int64, eight bytes a voxel.
SLAB = 16
#: Full (26-neighbour) 3-D connectivity, skimage.measure.label's default, as SS-Net uses it.
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def hard_labels(probabilities: torch.Tensor) -> np.ndarray:
    """Argmax over classes of (K, z, y, x) probabilities.

    A tie goes to the lower class index (background first), as the papers' argmax does.

    Returns:
        uint8 (z, y, x).
    """
    k, *shape = probabilities.shape
    if k > 256:
        raise ValueError(f"{k} classes do not fit a uint8 label")
    out = np.empty(shape, dtype=np.uint8)
    for z in range(0, shape[0], SLAB):
        out[z:z + SLAB] = probabilities[:, z:z + SLAB].argmax(dim=0).to(torch.uint8).numpy()
    return out


def keep_largest_component(labels: np.ndarray) -> np.ndarray:
    """Keep, for each foreground class, only its largest 26-connected component.

    Voxels of the smaller components become background (0). The probabilities are not
    changed: the filter is a property of the hard label only.

    Args:
        labels: integer (z, y, x); modified in place.

    Returns:
        ``labels``.
    """
    for cls in np.unique(labels):
        if cls == 0:
            continue
        mask = labels == cls
        components, count = ndimage.label(mask, structure=FULL_CONNECTIVITY)
        if count <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        labels[mask & (components != int(sizes.argmax()))] = 0
    return labels
