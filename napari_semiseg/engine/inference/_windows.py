"""The sliding-window grid: the papers' exact integer stride, or a fractional overlap.

MONAI's ``sliding_window_inference`` places windows with ``dense_patch_slices``: along each
axis the starts are ``min(k·s, size − patch)`` for ``k = 0 … ceil((size − patch)/s)``, which is
the papers' grid (docs/METHODS.md §1.1) *when the integer step ``s`` is theirs*. MONAI derives
``s = int(patch · (1 − overlap))``, and float rounding can lose a voxel (patch 96 with
overlap 1 − 16/96 gives 15). For an exact stride we therefore hand MONAI the overlap
``1 − (stride + 0.5)/patch``: ``patch · (1 − overlap) = stride + 0.5`` lies half a voxel away
from both neighbouring integers, so no rounding error can change ``int(...)``; the result is
asserted anyway.

A volume smaller than the patch along an axis is zero-padded symmetrically to the patch
(MONAI does it as the papers do: ``diff // 2`` before, the rest after) and un-padded after.
All sizes are in (z, y, x) voxels of the *network* grid (after resampling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monai.data.utils import dense_patch_slices

from ...errors import SemisegError

Triple = tuple[int, int, int]


class GridError(SemisegError):
    """A stride or overlap that cannot tile a volume."""


def window_starts(size: int, patch: int, stride: int) -> list[int]:
    """The papers' window starts along one axis.

    Args:
        size: voxels along the axis (after any padding to the patch).
        patch: window size along the axis.
        stride: integer step between windows.

    Returns:
        ``[min(k·stride, size − patch) for k in 0 … ceil((size − patch)/stride)]``; ``[0]``
        when the volume is no larger than the patch (it is padded to the patch).
    """
    if size <= patch:
        return [0]
    last = size - patch
    return [min(k * stride, last) for k in range(math.ceil(last / stride) + 1)]


def overlap_for_stride(patch: int, stride: int) -> float:
    """The overlap fraction for which MONAI's ``int(patch·(1 − overlap))`` equals ``stride``.

    Raises:
        GridError: the stride leaves gaps (larger than the patch) or is not positive.
    """
    if not 1 <= stride <= patch:
        raise GridError(f"window stride {stride} must be between 1 and the patch size {patch}: "
                        "a larger stride leaves voxels that no window covers")
    overlap = 0.0 if stride == patch else 1.0 - (stride + 0.5) / patch
    if _monai_step(patch, overlap) != stride:  # cannot happen; guards the half-voxel argument
        raise GridError(f"overlap {overlap!r} does not give stride {stride} for patch {patch}")
    return overlap


def _monai_step(patch: int, overlap: float) -> int:
    # MONAI's own rule (inferers.utils._get_scan_interval), for a volume larger than the patch.
    return max(int(patch * (1 - overlap)), 1)


@dataclass(frozen=True)
class WindowGrid:
    """Where the windows go: what ``sliding_window_inference`` receives, and why.

    Attributes:
        patch: window size (z, y, x) in voxels.
        overlap: per-axis overlap fraction handed to MONAI.
        stride: the exact integer stride in "paper" mode, None in "overlap" mode.
    """

    patch: Triple
    overlap: tuple[float, float, float]
    stride: Triple | None = None

    @property
    def mode(self) -> str:
        return "overlap" if self.stride is None else "paper"

    def describe(self) -> str:
        if self.stride is not None:
            return f"paper grid, stride {self.stride} (z, y, x), patch {self.patch}"
        return f"overlap {self.overlap[0]:g}, patch {self.patch}"

    def padded_shape(self, shape: Triple) -> Triple:
        """The shape after zero-padding every axis smaller than the patch up to the patch."""
        return tuple(max(s, p) for s, p in zip(shape, self.patch))

    def axis_starts(self, shape: Triple) -> list[list[int]]:
        """Window starts per axis (padded coordinates), as MONAI will place them."""
        padded = self.padded_shape(shape)
        steps = [p if s == p else _monai_step(p, o) for s, p, o in zip(padded, self.patch, self.overlap)]
        slices = dense_patch_slices(padded, self.patch, steps)
        return [sorted({s[axis].start for s in slices}) for axis in range(3)]

    def count(self, shape: Triple) -> int:
        """Number of windows over a volume of ``shape``."""
        return math.prod(len(starts) for starts in self.axis_starts(shape))


def _triple(value, name: str) -> tuple:
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3
    if len(values) != 3:
        raise GridError(f"{name} must be one number or three (z, y, x), got {value!r}")
    return values


def make_grid(patch: Triple, *, stride=None, overlap=None) -> WindowGrid:
    """A grid with an exact integer ``stride`` (int or (z, y, x)) or a fractional ``overlap``.

    Raises:
        GridError: both or neither given, or a value that cannot tile (see ``overlap_for_stride``).
    """
    patch = tuple(int(p) for p in _triple(patch, "patch"))
    if (stride is None) == (overlap is None):
        raise GridError("give exactly one of a window stride (the papers' grid) or an overlap fraction")
    if stride is not None:
        strides = tuple(int(s) for s in _triple(stride, "stride"))
        overlaps = tuple(overlap_for_stride(p, s) for p, s in zip(patch, strides))
        return WindowGrid(patch, overlaps, strides)
    overlaps = tuple(float(o) for o in _triple(overlap, "overlap"))
    if not all(0.0 <= o < 1.0 for o in overlaps):
        raise GridError(f"window overlap must be in [0, 1), got {overlap!r}")
    return WindowGrid(patch, overlaps)


def grid_for_card(card, *, stride=None, overlap=None) -> WindowGrid:
    """The grid an inference call asks for, else the card's.

    An explicit ``stride`` or ``overlap`` wins (not both); otherwise the card's
    ``inference.stride`` (paper mode) if set, else its ``inference.overlap``.
    """
    if stride is not None and overlap is not None:
        raise GridError("give a window stride or an overlap, not both")
    if stride is None and overlap is None:
        stride = card.inference.stride
        overlap = card.inference.overlap if stride is None else None
    return make_grid(card.patch_size, stride=stride, overlap=overlap)
