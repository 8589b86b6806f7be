"""3-D CutMix boxes for CrossMatch (docs/METHODS.md §3.2): drawn per sample, pasted on the device.

A box is drawn on the data side with the sample's own numpy generator (so a batch stays a pure
function of its step) and travels as a small (3, 2) int64 array of half-open ``[start, stop)``
voxel ranges along (z, y, x); ``box_masks`` turns a batch of them into voxel masks on the
training device and ``paste_boxes`` mixes two image batches with them.

The draw follows the official code: with probability ``p`` a box of volume
V = U(min_volume, max_volume)·(voxels of the patch) and aspect ratio r = U(min_ratio,
1/min_ratio), with integer edges d = ⌊V^⅓⌋ along z, h = ⌊(V·r)^⅓⌋ along y and
w = ⌊(V/r)^⅓⌋ along x (so d·h·w ≤ V); otherwise an empty box.

Two placements:

- ``"official"`` (default, the published recipe): the official code's layout. It draws the
  starts on a patch it believes is ordered (x, y, z) = (X, Y, Z) with an exclusive upper bound
  (start < side − edge, so the box never touches the far border), then writes the z range on
  the x axis and the x range on the z axis. In our (z, y, x) arrays: the z axis receives the x
  range [x0, x0 + w), cut at Z (empty when x0 ≥ Z), and the x axis receives the z range
  [z0, z0 + d). On the LA patch its boxes are smaller (about 22% less volume) and never
  reach x ≥ 80. Formerly called ``"bug-compatible"`` (still accepted).
- ``"within-patch"``: what the paper's text describes: each edge capped at the patch side,
  the start uniform over every position that keeps the box inside the patch, edges along
  the axes they were drawn for. Formerly called ``"correct"`` (still accepted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CUTMIX_PLACEMENTS = ("official", "within-patch")
#: Earlier names of the placements, still accepted in method parameters and recorded configs.
CUTMIX_PLACEMENT_ALIASES = {"bug-compatible": "official", "correct": "within-patch"}


def placement_name(name: str) -> str:
    """The current name of a placement given by its current or earlier name (else unchanged)."""
    return CUTMIX_PLACEMENT_ALIASES.get(name, name)


@dataclass(frozen=True)
class CutMixSettings:
    """How CutMix boxes are drawn.

    Attributes:
        probability: chance that a sample gets a box (else an empty one).
        min_volume, max_volume: the box volume as a fraction of the patch's voxels.
        min_ratio: the aspect ratio r is uniform in [min_ratio, 1/min_ratio].
        placement: one of ``CUTMIX_PLACEMENTS`` or an earlier name of one (see the module
            docstring).
    """

    probability: float = 0.5
    min_volume: float = 0.02
    max_volume: float = 0.4
    min_ratio: float = 0.3
    placement: str = "official"


@dataclass(frozen=True)
class BoxDraw:
    """The random part of a box: integer edges and starts, both (z, y, x), before placement."""

    edges: tuple[int, int, int]
    starts: tuple[int, int, int]


def empty_box() -> np.ndarray:
    """A (3, 2) int64 box that covers no voxel."""
    return np.zeros((3, 2), dtype=np.int64)


def box_edges(volume: float, ratio: float) -> tuple[int, int, int]:
    """Integer edges (d, h, w) along (z, y, x) of a box of ``volume`` voxels and aspect ``ratio``."""
    return (int(np.power(volume, 1.0 / 3.0)), int(np.power(volume * ratio, 1.0 / 3.0)),
            int(np.power(volume / ratio, 1.0 / 3.0)))


def draw_box(patch: Sequence[int], rng: np.random.Generator, settings: CutMixSettings) -> BoxDraw | None:
    """Draw a box for a patch of ``patch`` = (Z, Y, X) voxels, or None (no box this time).

    Draw order (probability coin, volume, ratio, then the three starts) is part of the
    contract: a batch is a pure function of the sample's generator.
    """
    if rng.random() >= settings.probability:
        return None
    volume = rng.uniform(settings.min_volume, settings.max_volume) * float(np.prod(patch))
    ratio = rng.uniform(settings.min_ratio, 1.0 / settings.min_ratio)
    edges = box_edges(volume, ratio)
    if placement_name(settings.placement) == "official":
        # The official bound is exclusive (start < side − edge); an edge as long as the side
        # would crash there, so cap it one voxel short.
        edges = tuple(min(e, s - 1) for e, s in zip(edges, patch))
        starts = tuple(int(rng.integers(0, s - e)) for e, s in zip(edges, patch))
    else:
        edges = tuple(min(e, s) for e, s in zip(edges, patch))
        starts = tuple(int(rng.integers(0, s - e + 1)) for e, s in zip(edges, patch))
    return BoxDraw(edges, starts)


def place_box(draw: BoxDraw | None, patch: Sequence[int], placement: str = "official") -> np.ndarray:
    """The voxel ranges of a drawn box in a (Z, Y, X) patch.

    Returns:
        (3, 2) int64: ``[start, stop)`` along z, y, x, inside the patch (start == stop when
        the box is empty).
    """
    if draw is None:
        return empty_box()
    ranges = [(s, s + e) for s, e in zip(draw.starts, draw.edges)]
    if placement_name(placement) == "official":
        ranges = [ranges[2], ranges[1], ranges[0]]  # z and x ranges swap axes (module docstring)
    box = empty_box()
    for axis, ((start, stop), side) in enumerate(zip(ranges, patch)):
        start = min(start, side)
        box[axis] = (start, max(start, min(stop, side)))
    return box


def cutmix_box(patch: Sequence[int], rng: np.random.Generator, settings: CutMixSettings) -> np.ndarray:
    """Draw and place one box: (3, 2) int64 ``[start, stop)`` ranges along (z, y, x)."""
    return place_box(draw_box(patch, rng, settings), patch, settings.placement)


def box_masks(boxes: Tensor, shape: Sequence[int]) -> Tensor:
    """Voxel masks of a batch of boxes.

    Args:
        boxes: (B, 3, 2) integer ``[start, stop)`` ranges along (z, y, x), on any device.
        shape: the patch (Z, Y, X).

    Returns:
        (B, Z, Y, X) bool on ``boxes``' device, True inside each sample's box.
    """
    inside = []
    for axis, size in enumerate(shape):
        coordinate = torch.arange(int(size), device=boxes.device)
        inside.append((coordinate >= boxes[:, axis, :1]) & (coordinate < boxes[:, axis, 1:]))
    z, y, x = inside
    return z[:, :, None, None] & y[:, None, :, None] & x[:, None, None, :]


def paste_boxes(image: Tensor, source: Tensor, masks: Tensor) -> Tensor:
    """``image`` with each sample's box voxels taken from ``source``.

    Args:
        image, source: (B, C, Z, Y, X) batches of one shape.
        masks: (B, Z, Y, X) bool, from ``box_masks``.

    Returns:
        A new (B, C, Z, Y, X) tensor (the inputs are left untouched).
    """
    return torch.where(masks[:, None], source, image)


__all__ = ["BoxDraw", "CUTMIX_PLACEMENTS", "CUTMIX_PLACEMENT_ALIASES", "CutMixSettings", "box_edges", "box_masks", "cutmix_box", "draw_box",
           "empty_box", "paste_boxes", "place_box", "placement_name"]
