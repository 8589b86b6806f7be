"""A volume's grid from its header alone, for checks that need no voxels.

A folder import compares every label's grid with its image's before it adds anything; the
headers suffice for that. For the well-formed common case (a 3-D scalar NIfTI/NRRD/MetaImage,
an LA h5 file) the grid is read from the header; for anything else (DICOM folders, 4-D files,
damaged headers) the whole volume is read with ``io.read_volume``, which also raises the
user-facing error when there is one. Adding a case reads and checks every voxel anyway
(``Project.add_case``): a header says nothing about truncated data or NaN.

The result must equal ``read_volume(path).geometry``; the tests compare both on every format.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import SimpleITK as sitk

from ..io import LA_SPACING_MM, SUFFIX_FORMATS, Geometry, read_volume
from ..io._data_files import external_data_files
from ..io._formats import compound_suffix, detect_format

_SITK_IO = {".nii": "NiftiImageIO", ".nii.gz": "NiftiImageIO", ".nrrd": "NrrdImageIO",
            ".nhdr": "NrrdImageIO", ".mha": "MetaImageIO", ".mhd": "MetaImageIO"}
_H5 = (".h5", ".hdf5")


def read_geometry(path: str | Path) -> Geometry:
    """The (z, y, x) grid of a volume file, from its header when that suffices.

    Raises:
        VolumeError: the path cannot be read as a 3-D volume.
    """
    path = Path(path)
    suffix = compound_suffix(path) if path.is_file() else ""
    geometry = None
    if suffix in _SITK_IO:
        geometry = _sitk_header(path, _SITK_IO[suffix])
    elif suffix in _H5:
        geometry = _h5_header(path)
    return geometry if geometry is not None else read_volume(path).geometry


def is_volume_file(path: Path) -> bool:
    """Whether ``path``'s suffix names a volume format ``io.read_volume`` reads."""
    return compound_suffix(path) in SUFFIX_FORMATS


def _sitk_header(path: Path, image_io: str) -> Geometry | None:
    external_data_files(path, detect_format(path))  # a header pointing elsewhere is refused
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(image_io)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    size = reader.GetSize()
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1 or min(size) < 2:
        return None
    return Geometry(tuple(reversed(size)), tuple(reversed(reader.GetSpacing())),
                    tuple(reversed(reader.GetOrigin())), reader.GetDirection())


def _h5_header(path: Path) -> Geometry | None:
    try:
        with h5py.File(path, "r") as handle:
            dataset = handle.get("image")
            if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 3:
                return None
            shape_xyz = dataset.shape
    except OSError:
        return None
    if min(shape_xyz) < 2:
        return None
    # Stored (x, y, z); the grid is (z, y, x), 0.625 mm, origin 0, identity direction.
    return Geometry(tuple(reversed(shape_xyz)), (LA_SPACING_MM,) * 3)
