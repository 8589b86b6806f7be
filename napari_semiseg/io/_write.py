"""Write volumes and labels back in their source geometry, atomically.

The suffix picks the format: .nii, .nii.gz (NIfTI), .nrrd or .mha (gzip-compressed). The file
appears complete or not at all: it is written to a temporary file beside the destination,
checked, fsynced and renamed over it (``_atomic.atomic_path``). When anything fails, the
destination keeps its previous content and no temporary file remains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import VolumeError
from ._atomic import atomic_path
from ._formats import NIFTI, compound_suffix, writable_format
from ._nifti import scan_nifti
from ._sitk import array_to_image, itk_reason, quiet_itk_warnings
from ._validate import validate_label
from ._volume import Geometry, Volume


def write_volume(path: str | Path, volume: Volume) -> Path:
    """Write ``volume.array`` on ``volume.geometry``'s grid to ``path`` (its dtype kept).

    Bool arrays are stored as uint8 and float16 as float32 (the formats have no such types).
    ``volume.label`` is not written: use ``write_label``.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        VolumeError: unsupported suffix or dtype, array not on the grid, or the write failed
            (the destination is then untouched).
    """
    path = Path(path)
    fmt = writable_format(path)
    array = np.asarray(volume.array)
    if tuple(array.shape) != volume.geometry.shape:
        raise VolumeError(path, f"array shape {array.shape} differs from its geometry's "
                          f"{volume.geometry.shape}")
    _write_array(path, fmt, _storable(array, path), volume.geometry)
    return path


def write_label(path: str | Path, array: np.ndarray, geometry: Geometry) -> Path:
    """Write a label map on ``geometry``'s grid (its image's) to ``path``.

    Args:
        path: destination, .nii/.nii.gz/.nrrd/.mha.
        array: (z, y, x) label map with non-negative whole-number values, shape
            ``geometry.shape``.
        geometry: the image's grid; spacing, origin and direction are written unchanged.

    Returns:
        ``path`` as a ``Path``. The file stores uint8 (uint16/uint32 when a value exceeds
        255/65535).

    Raises:
        VolumeError, GeometryMismatchError: an invalid label (nothing is written) or a failed
            write (the destination is untouched).
    """
    path = Path(path)
    fmt = writable_format(path)
    label = validate_label(array, None, geometry, path)
    _write_array(path, fmt, label, geometry)
    return path


def _storable(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise VolumeError(path, f"cannot store voxels of dtype {array.dtype}")
    return array


def _write_array(path: Path, fmt: str, array: np.ndarray, geometry: Geometry) -> None:
    try:
        image = array_to_image(array, geometry)
        with atomic_path(path) as tmp, quiet_itk_warnings():
            # .nii.gz compresses by its name; NRRD and MetaImage need the flag.
            sitk.WriteImage(image, str(tmp), useCompression=compound_suffix(path) != ".nii")
            # ITK's NIfTI writer returns normally when the disk takes only part of the data.
            if fmt == NIFTI and (problem := scan_nifti(tmp, scan_values=False).problem):
                raise VolumeError(path, f"write failed, nothing was saved: {problem}")
    except RuntimeError as error:
        raise VolumeError(path, f"cannot be written as {fmt}, nothing was saved: "
                          f"{itk_reason(error)}") from None
    except OSError as error:
        raise VolumeError(path, f"cannot be written, nothing was saved: "
                          f"{error.strerror or error}") from None
