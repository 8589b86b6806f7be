"""Volumes with their geometry: read, validate and write them (numpy, SimpleITK, h5py only).

Every array is indexed (z, y, x), napari's order; spacing and origin are (z, y, x) in mm;
direction is SimpleITK's (x, y, z) row-major 3×3 matrix. Every failure a user can cause is a
``napari_semiseg.errors.VolumeError`` reading "PATH: problem".
"""

import importlib

from ..errors import GeometryMismatchError, VolumeError
from ._atomic import atomic_path, atomic_write_bytes, fsync_directory
from ._formats import SUFFIX_FORMATS, WRITABLE_SUFFIXES, detect_format
from ._h5 import LA_SPACING_MM, holds_la_image
from ._la import LA_CASE_FILE, LA_TRAINING_FOLDER, LACase, la_case_paths, read_case_list
from ._validate import check_finite, label_storage_dtype, validate_label
from ._volume import IDENTITY_DIRECTION, Geometry, Volume

#: The readers and writers built on SimpleITK, imported when first used: the engine needs only
#: ``Volume`` and atomic writes from here, and a machine that only trains and predicts on
#: arrays (a GPU box without SimpleITK, ``benchmarks/gpu_check.py``) can then do without it.
_SIMPLEITK_BACKED = {"list_dicom_series": "._dicom", "read_label": "._read", "read_volume": "._read",
                     "write_label": "._write", "write_volume": "._write",
                     "dicom_series_files": "._dicom_headers", "read_dicom_headers": "._dicom_headers",
                     "headers_to_json": "._dicom_headers", "headers_from_json": "._dicom_headers"}


def __getattr__(name: str):
    if name in _SIMPLEITK_BACKED:
        return getattr(importlib.import_module(_SIMPLEITK_BACKED[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "IDENTITY_DIRECTION", "LA_CASE_FILE", "LA_SPACING_MM", "LA_TRAINING_FOLDER",
    "SUFFIX_FORMATS", "WRITABLE_SUFFIXES", "Geometry", "GeometryMismatchError",
    "VolumeError", "LACase", "Volume", "atomic_path",
    "atomic_write_bytes", "check_finite", "detect_format", "dicom_series_files",
    "fsync_directory", "headers_from_json", "headers_to_json", "holds_la_image", "la_case_paths",
    "label_storage_dtype", "list_dicom_series",
    "read_case_list", "read_dicom_headers", "read_label", "read_volume", "validate_label", "write_label",
    "write_volume",
]
