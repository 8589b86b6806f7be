"""The one volume type every layer passes around.

Axis order is fixed here, at the io boundary: ``array`` is indexed **(z, y, x)**, which is
what napari shows as (plane, row, column). ``spacing`` and ``origin`` are given in the same
(z, y, x) order, in millimetres. ``direction`` is the 3×3 direction-cosine matrix in
SimpleITK's (x, y, z) convention, row-major, exactly as ``Image.GetDirection()`` returns it,
so that it can be written back unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Geometry:
    """Where a (z, y, x) voxel grid lies in patient space.

    Attributes:
        shape: voxels along (z, y, x).
        spacing: voxel size along (z, y, x) in mm.
        origin: physical position of voxel (0, 0, 0), given as (z, y, x) in mm.
        direction: 3×3 direction cosines, row-major, SimpleITK's (x, y, z) convention.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", tuple(float(d) for d in self.direction))

    def matches(self, other: "Geometry", tolerance: float = 1e-4) -> bool:
        """True when both describe the same voxel grid (shape exact, the rest to ``tolerance``)."""
        return self.shape == other.shape and all(
            np.allclose(a, b, atol=tolerance, rtol=0)
            for a, b in ((self.spacing, other.spacing), (self.origin, other.origin),
                         (self.direction, other.direction)))

    def describe_difference(self, other: "Geometry") -> str:
        """A short sentence naming what differs, for error messages."""
        parts = []
        for name in ("shape", "spacing", "origin", "direction"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "shape" and mine != theirs or name != "shape" and not np.allclose(
                    mine, theirs, atol=1e-4, rtol=0):
                parts.append(f"{name} {_fmt(theirs)} vs {_fmt(mine)}")
        return "; ".join(parts) or "no difference"

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "spacing": list(self.spacing),
                "origin": list(self.origin), "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls(tuple(data["shape"]), tuple(data["spacing"]), tuple(data["origin"]),
                   tuple(data["direction"]))


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


@dataclass(frozen=True)
class Volume:
    """A 3-D array with its geometry and provenance.

    Attributes:
        array: the voxels, indexed (z, y, x).
        geometry: the grid's placement; ``geometry.shape == array.shape``.
        source: the file or folder it was read from, if any.
        label: a label map on the same grid, when the source carried one (the LA h5 files do).
        zscored: the intensities already are the z-score of the whole original scan, cropped
            afterwards (the LA ``mri_norm2.h5`` files): a card whose intensity rule is
            ``"zscore-once"`` feeds them as stored instead of z-scoring the crop again.
    """

    array: np.ndarray
    geometry: Geometry
    source: Path | None = None
    label: np.ndarray | None = field(default=None, repr=False)
    zscored: bool = False

    @classmethod
    def from_array(cls, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                   direction=IDENTITY_DIRECTION, source: Path | None = None,
                   label: np.ndarray | None = None, zscored: bool = False) -> "Volume":
        return cls(array, Geometry(array.shape, spacing, origin, direction), source, label, zscored)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing

    @property
    def origin(self) -> tuple[float, float, float]:
        return self.geometry.origin

    @property
    def direction(self) -> tuple[float, ...]:
        return self.geometry.direction

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    def with_array(self, array: np.ndarray) -> "Volume":
        """The same geometry carrying another array (a prediction, a probability map)."""
        if tuple(array.shape[-3:]) != self.shape:
            raise ValueError(f"array shape {array.shape} does not fit grid {self.shape}")
        return replace(self, array=array, label=None, zscored=False)
