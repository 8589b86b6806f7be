"""The LA benchmark's ``mri_norm2.h5`` files (UA-MT preprocessing of the 2018 LA challenge).

Each file holds ``image`` (float32: the z-score of the whole original scan, cropped afterwards,
so a crop's own mean and std are not 0 and 1; ``Volume.zscored`` says so) and usually ``label`` (uint8, {0, 1}),
both stored **(x, y, z)**, e.g. 183 × 140 × 88. They carry no geometry: the voxels are 0.625 mm
isotropic, the origin is 0 and the direction the identity. Here both arrays are transposed to
(z, y, x) (88 × 140 × 183) so that they look like every other volume.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from ..errors import VolumeError
from ._volume import Geometry

#: Voxel size of the LA benchmark's volumes in mm, the same along every axis.
LA_SPACING_MM = 0.625


def read_la_h5(path: Path, spacing: tuple[float, float, float] | None = None
               ) -> tuple[np.ndarray, Geometry, np.ndarray | None]:
    """Read an LA ``mri_norm2.h5`` file.

    Args:
        path: the .h5 file.
        spacing: (z, y, x) voxel size in mm; by default 0.625 mm isotropic.

    Returns:
        ``(image, geometry, label)``: the image (z, y, x) in its stored dtype (float32), its grid
        (origin 0, identity direction) and the label (z, y, x) as stored (uint8), or None
        when the file has no ``label`` dataset. The label is not validated here.

    Raises:
        VolumeError: not an HDF5 file, truncated, no ``image`` dataset, or ``image`` not 3-D.
    """
    try:
        with h5py.File(path, "r") as handle:
            if "image" not in handle:
                found = ", ".join(sorted(handle.keys())) or "nothing"
                raise VolumeError(path, f"has no 'image' dataset (found: {found})")
            image = _zyx(handle["image"], path, "image")
            label = _zyx(handle["label"], path, "label") if "label" in handle else None
    except OSError as error:
        raise VolumeError(path, f"cannot be read as HDF5 (truncated or corrupt?): "
                          f"{_h5_reason(error)}") from None
    spacing = spacing or (LA_SPACING_MM,) * 3
    return image, Geometry(image.shape, spacing), label


def holds_la_image(path: Path) -> bool:
    """True when ``path`` is an HDF5 file with a 3-D ``image`` dataset, as the LA benchmark's are.

    Only the header is read. Any other file named ``.h5`` (a Keras model, an AnnData or an
    Imaris file) is for other programs, so this says no instead of raising.
    """
    try:
        with h5py.File(path, "r") as handle:
            image = handle.get("image")
            return isinstance(image, h5py.Dataset) and image.ndim == 3
    except OSError:
        return False


def _zyx(dataset, path: Path, name: str) -> np.ndarray:
    if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 3:
        shape = getattr(dataset, "shape", "a group")
        raise VolumeError(path, f"dataset '{name}' is {shape}, not a 3-D (x, y, z) array")
    # A contiguous copy: callers hand the array to SimpleITK and torch, which want one.
    return np.ascontiguousarray(dataset[()].transpose(2, 1, 0))


def _h5_reason(error: OSError) -> str:
    text = str(error)
    return text[text.find("(") + 1:text.rfind(")")] if "(" in text else text
