"""CrossMatch's strong image views (docs/METHODS.md §3.2), made from the weak crop with torch ops.

The official code builds each strong view with torchio: with probability 0.8 a random bias
field followed by a random gamma, then with probability 0.5 a random Gaussian blur. Here the
same three operations are written in torch from their definitions, and every random draw comes
from the numpy generator the data pipeline gives each sample, so a view is a pure function of
(seed, rank, step, sample), like the rest of the batch.

- **Bias field**: a smooth multiplicative field exp(Σ c_ijk·z^i·y^j·x^k) over the monomials of
  total degree ≤ ``bias_order`` in coordinates spanning [−1, 1] along each axis, each
  coefficient uniform in [−bias_coefficient, bias_coefficient] (torchio's defaults: order 3,
  0.5).
- **Gamma**: γ = exp(U(−log_gamma, log_gamma)), applied as torchio does to the z-scored
  image: sign(I)·|I|^γ (no rescaling to [0, 1] first, which would move a strong view about
  2.4× further from its weak view than the official one).
- **Blur**: a separable Gaussian with one standard deviation per axis, uniform in
  [blur_min_std, blur_max_std] voxels, as ``scipy.ndimage.gaussian_filter`` computes it (what
  torchio calls): kernel radius ``int(4σ + 0.5)``, borders reflected with the edge voxel
  repeated (scipy's mode "reflect": d c b a | a b c d).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: Kernel radius in standard deviations: scipy.ndimage.gaussian_filter's default ``truncate``.
BLUR_TRUNCATE = 4.0


@dataclass(frozen=True)
class StrongAugmentation:
    """Probabilities and ranges of the strong view's operations.

    Attributes:
        bias_gamma_probability: chance of the bias field + gamma pair (0.8).
        blur_probability: chance of the blur (0.5), drawn independently.
        bias_order: highest total degree of the bias-field polynomial (3).
        bias_coefficient: its coefficients are uniform in ±this (0.5).
        log_gamma: log γ is uniform in ±this (0.5).
        blur_min_std, blur_max_std: range of each axis' Gaussian std in voxels (0.1, 2).
    """

    bias_gamma_probability: float = 0.8
    blur_probability: float = 0.5
    bias_order: int = 3
    bias_coefficient: float = 0.5
    log_gamma: float = 0.5
    blur_min_std: float = 0.1
    blur_max_std: float = 2.0


def monomial_exponents(order: int) -> list[tuple[int, int, int]]:
    """Exponents (i, j, k) of z^i·y^j·x^k with i + j + k ≤ ``order`` (20 of them for order 3)."""
    return [(i, j, k) for i in range(order + 1) for j in range(order + 1 - i) for k in range(order + 1 - i - j)]


def bias_field(shape: Sequence[int], coefficients: Sequence[float], order: int) -> Tensor:
    """The multiplicative field exp(Σ c·z^i·y^j·x^k) on a (Z, Y, X) grid.

    Args:
        shape: (Z, Y, X).
        coefficients: one per ``monomial_exponents(order)`` entry, in that order.
        order: the polynomial's total degree.

    Returns:
        (Z, Y, X) float32 field, positive everywhere.
    """
    exponents = monomial_exponents(order)
    if len(coefficients) != len(exponents):
        raise ValueError(f"a bias field of order {order} needs {len(exponents)} coefficients, "
                         f"got {len(coefficients)}")
    # Voxel centres spanning [-1, 1]; a single voxel sits at 0.
    z, y, x = [torch.linspace(-1.0, 1.0, int(n)) if n > 1 else torch.zeros(1) for n in shape]
    log_field = torch.zeros(tuple(int(n) for n in shape))
    for c, (i, j, k) in zip(coefficients, exponents):
        log_field += float(c) * (z ** i)[:, None, None] * (y ** j)[None, :, None] * (x ** k)[None, None, :]
    return torch.exp(log_field)


def apply_gamma(image: Tensor, gamma: float) -> Tensor:
    """torchio's gamma on signed intensities: sign(I)·|I|^γ, voxel by voxel.

    Args:
        image: (C, Z, Y, X) float (z-scores: negative values keep their sign).
        gamma: positive exponent.

    Returns:
        (C, Z, Y, X); 0, 1 and −1 are fixed points.
    """
    return torch.sign(image) * image.abs() ** gamma


def gaussian_kernel(std: float) -> Tensor:
    """A normalised 1-D Gaussian of radius ``int(4·std + 0.5)`` (float32), scipy's kernel."""
    radius = int(BLUR_TRUNCATE * std + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / std) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(image: Tensor, stds: Sequence[float]) -> Tensor:
    """Separable Gaussian blur of each channel, one std (voxels) per axis (z, y, x).

    Args:
        image: (C, Z, Y, X) float.
        stds: three positive standard deviations in voxels.

    Returns:
        (C, Z, Y, X) blurred image (borders reflected as scipy's "reflect", so a constant
        image stays constant).
    """
    out = image
    for axis, std in enumerate(stds):
        kernel = gaussian_kernel(float(std)).to(image.dtype)
        radius = kernel.numel() // 2
        # conv1d along one axis (moved last, every other axis folded into the batch) is much
        # faster on CPUs than a conv3d with a k×1×1 kernel.
        moved = out.movedim(1 + axis, -1)
        rows = moved.reshape(-1, 1, moved.shape[-1])
        padded = rows.index_select(-1, reflected_indices(rows.shape[-1], radius, rows.device))
        rows = F.conv1d(padded, kernel.view(1, 1, -1))
        out = rows.reshape(moved.shape).movedim(-1, 1 + axis)
    return out.contiguous()


def reflected_indices(size: int, radius: int, device=None) -> Tensor:
    """Indices of a row of ``size`` padded by ``radius`` on each side, scipy's "reflect" mode.

    The row continues mirrored about its edge *including* the edge voxel (d c b a | a b c d |
    d c b a), periodically with period 2·size, so any radius works (torch's own "reflect"
    leaves the edge voxel out, and neither of its modes covers a radius past the row).
    """
    position = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(position < size, position, 2 * size - 1 - position)


def strong_view(image: np.ndarray, rng: np.random.Generator, settings: StrongAugmentation) -> np.ndarray:
    """One strong view of a weak patch.

    Args:
        image: (C, Z, Y, X) float32 weak (standard-augmented) patch; left untouched.
        rng: the sample's generator (every draw comes from it).
        settings: probabilities and ranges.

    Returns:
        (C, Z, Y, X) float32, finite when the input is.
    """
    view = torch.from_numpy(np.array(image, dtype=np.float32, copy=True))
    if rng.random() < settings.bias_gamma_probability:
        n_terms = len(monomial_exponents(settings.bias_order))
        coefficients = rng.uniform(-settings.bias_coefficient, settings.bias_coefficient, size=n_terms)
        view = view * bias_field(view.shape[1:], coefficients, settings.bias_order)
        view = apply_gamma(view, math.exp(rng.uniform(-settings.log_gamma, settings.log_gamma)))
    if rng.random() < settings.blur_probability:
        view = gaussian_blur(view, rng.uniform(settings.blur_min_std, settings.blur_max_std, size=3))
    return np.ascontiguousarray(view.numpy(), dtype=np.float32)


__all__ = ["StrongAugmentation", "apply_gamma", "bias_field", "gaussian_blur", "gaussian_kernel",
           "monomial_exponents", "reflected_indices", "strong_view"]
