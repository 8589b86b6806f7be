"""A synthetic left-atrium-like volume that tests and demos can make at any size.

The phantom imitates what makes LGE-MRI atrium segmentation hard, not its anatomy:

- a bright, irregular blob (the atrial blood pool) whose boundary is blurred and of low
  contrast against the surroundings;
- thin tubes leaving it (pulmonary-vein-like branches, part of the label);
- an unlabelled bright tube passing nearby (an aorta-like distractor);
- Gaussian noise and a smooth multiplicative bias field (coil inhomogeneity).

The image is z-scored like the LA benchmark's ``mri_norm2.h5`` files. Everything is derived
from one ``numpy.random.Generator`` seeded by ``seed``, so a seed always gives the same pair.
numpy and scipy only: no napari, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

LA_SPACING: tuple[float, float, float] = (0.625, 0.625, 0.625)


@dataclass(frozen=True)
class PhantomStyle:
    """How hard the phantom is to segment.

    Attributes:
        contrast: blob intensity minus background intensity, before noise (background is 1.0).
        noise: standard deviation of the additive Gaussian noise, same units as ``contrast``.
        bias: peak relative amplitude of the multiplicative bias field (0.3 means ×0.7..×1.3).
        boundary_blur_mm: Gaussian sigma, in mm, that blurs the intensity edge of the label.
        n_branches: number of vein-like tubes leaving the blob.
    """

    contrast: float = 0.6
    noise: float = 0.25
    bias: float = 0.3
    boundary_blur_mm: float = 1.5
    n_branches: int = 4


def make_la_phantom(shape: tuple[int, int, int] = (64, 96, 96),
                    spacing: tuple[float, float, float] = LA_SPACING,
                    seed: int = 0,
                    style: PhantomStyle = PhantomStyle()) -> tuple[np.ndarray, np.ndarray]:
    """Make a left-atrium-like image and its label.

    Args:
        shape: voxels along (z, y, x); any size of at least one voxel per axis.
        spacing: voxel size along (z, y, x) in mm; the anatomy is laid out in mm, so a finer
            spacing gives the same shapes with more voxels.
        seed: the random seed; the same (shape, spacing, seed, style) gives identical arrays.
        style: contrast, noise, bias field and blur.

    Returns:
        ``(image, label)``: ``image`` float32 (z, y, x), z-scored (mean 0, std 1);
        ``label`` uint8 (z, y, x), 1 on the blob and its branches, 0 elsewhere, never empty.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"phantom shape must be three positive sizes (z, y, x), got {shape}")
    spacing = np.asarray(spacing, dtype=float)
    rng = np.random.default_rng(seed)
    coords = _coordinates_mm(shape, spacing)
    extent = np.asarray(shape) * spacing

    blob = _irregular_blob(coords, extent, spacing, rng)
    branches = _branches(coords, extent, spacing, blob, rng, style.n_branches)
    label = (blob | branches).astype(np.uint8)
    distractor = _distractor_tube(coords, extent, spacing, rng) & ~label.astype(bool)

    image = _render(label, distractor, spacing, style, rng, coords, extent)
    return image, label


def _coordinates_mm(shape, spacing) -> list[np.ndarray]:
    """Physical (z, y, x) coordinates in mm of every voxel centre, as open grids."""
    return [np.arange(n, dtype=np.float32).reshape([-1 if a == axis else 1 for a in range(3)])
            * np.float32(spacing[axis]) for axis, n in enumerate(shape)]


def _irregular_blob(coords, extent, spacing, rng) -> np.ndarray:
    """An ellipsoid near the centre whose radius wobbles smoothly with direction."""
    centre = extent / 2 + rng.uniform(-0.05, 0.05, 3) * extent
    radii = extent * rng.uniform(0.22, 0.3, 3)
    offsets = [(c - centre[axis]) / radii[axis] for axis, c in enumerate(coords)]
    radius = np.sqrt(sum(o * o for o in offsets))
    # Low-order "spherical harmonics": cosines of the direction components with random phase.
    wobble = sum(a * np.cos(f * o / np.maximum(radius, 1e-6) + p) for o, a, f, p in zip(
        offsets, rng.uniform(0.06, 0.14, 3), rng.uniform(1.5, 3.5, 3), rng.uniform(0, 2 * np.pi, 3)))
    blob = radius <= 1.0 + wobble
    # The voxel nearest the centre is always inside, so even a tiny phantom has a label.
    nearest = tuple(int(np.clip(round(c / s), 0, n - 1))
                    for c, s, n in zip(centre, spacing, blob.shape))
    blob[nearest] = True
    return blob


def _tube(coords, start, end, radius_mm) -> np.ndarray:
    """Voxels within ``radius_mm`` of the segment ``start``→``end`` (points in mm)."""
    direction = end - start
    length_sq = max(float(direction @ direction), 1e-12)
    along = sum((c - start[a]) * direction[a] for a, c in enumerate(coords)) / length_sq
    along = np.clip(along, 0.0, 1.0)
    distance_sq = sum((c - (start[a] + along * direction[a])) ** 2 for a, c in enumerate(coords))
    return distance_sq <= radius_mm ** 2


def _branches(coords, extent, spacing, blob, rng, n_branches) -> np.ndarray:
    """Thin tubes from the blob's surface outwards, mostly in the (y, x) plane like the veins."""
    out = np.zeros(blob.shape, dtype=bool)
    inside = np.argwhere(blob)
    if n_branches <= 0 or len(inside) == 0:
        return out
    centre = inside.mean(axis=0) * spacing
    radius_mm = max(0.05 * float(extent.min()), 0.6 * float(spacing.max()))
    for _ in range(n_branches):
        direction = rng.normal(size=3) * np.array([0.4, 1.0, 1.0])
        direction /= np.linalg.norm(direction) + 1e-12
        end = centre + direction * extent * rng.uniform(0.38, 0.5)
        out |= _tube(coords, centre, end, radius_mm * rng.uniform(0.8, 1.2))
    return out


def _distractor_tube(coords, extent, spacing, rng) -> np.ndarray:
    """A bright unlabelled tube along z near one side (what a model must learn to ignore)."""
    y, x = extent[1] * rng.uniform(0.12, 0.2), extent[2] * rng.uniform(0.75, 0.88)
    start, end = np.array([0.0, y, x]), np.array([extent[0], y, x])
    return _tube(coords, start, end, max(0.1 * float(extent.min()), 0.6 * float(spacing.max())))


def _render(label, distractor, spacing, style, rng, coords, extent) -> np.ndarray:
    """Intensities: blurred objects on a background, bias field, noise, then z-scored."""
    objects = label.astype(np.float32) * style.contrast + distractor * (1.2 * style.contrast)
    sigma_voxels = style.boundary_blur_mm / spacing
    image = 1.0 + ndimage.gaussian_filter(objects, sigma_voxels, mode="nearest")
    image *= _bias_field(coords, extent, style.bias, rng)
    image += rng.normal(0.0, style.noise, size=label.shape).astype(np.float32)
    image = image.astype(np.float32)
    std = float(image.std())
    return (image - image.mean()) / (std if std > 0 else 1.0)


def _bias_field(coords, extent, amplitude, rng) -> np.ndarray:
    """A smooth multiplicative field 1 ± amplitude: a random linear ramp plus one slow cosine."""
    ramp = sum(g * (c / max(e, 1e-6) - 0.5) for g, c, e in zip(rng.uniform(-1, 1, 3), coords, extent))
    wave = np.cos(sum(k * c / max(e, 1e-6) for k, c, e in zip(rng.uniform(0, np.pi, 3), coords, extent))
                  + rng.uniform(0, 2 * np.pi))
    field = 0.5 * ramp + 0.5 * wave
    peak = float(np.abs(field).max()) or 1.0
    return (1.0 + amplitude * field / peak).astype(np.float32)
