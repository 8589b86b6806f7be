"""Which volumes a file or folder given to predict stands for.

A file is one volume (NIfTI, NRRD, MetaImage, an LA ``mri_norm2.h5``). A folder holds, in name
order: its volume files, its sub-folders holding a DICOM series, and its sub-folders holding an
LA ``mri_norm2.h5`` (the LA layout ``ROOT/<ID>/mri_norm2.h5``). A folder with none of these
but a DICOM series of its own is that one volume. Files with other suffixes, hidden files and
loose ``.dcm`` files (slices of a series, not volumes) are left out. Nothing is read here:
a file that turns out to be damaged is reported when it is read, and the others go on.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SemisegError, VolumeError
from ..io import LA_CASE_FILE, SUFFIX_FORMATS
from ..io._formats import compound_suffix

_SLICE_SUFFIXES = (".dcm",)


def volume_inputs(path: str | Path) -> list[Path]:
    """The volumes ``path`` stands for (see the module's rules).

    Raises:
        SemisegError: the path does not exist, or is a folder holding no volume.
    """
    path = Path(path)
    if not path.exists():
        raise SemisegError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    found = [volume for volume in map(_volume_of, sorted(path.iterdir())) if volume is not None]
    if not found and _holds_dicom_series(path):
        return [path]
    if not found:
        raise SemisegError(f"{path}: holds no volume (NIfTI, NRRD, MetaImage, LA .h5 files, or "
                           "folders of DICOM series)")
    return found


def _volume_of(entry: Path) -> Path | None:
    if entry.name.startswith("."):
        return None
    if entry.is_file():
        suffix = compound_suffix(entry)
        return entry if suffix in SUFFIX_FORMATS and suffix not in _SLICE_SUFFIXES else None
    if not entry.is_dir():
        return None
    if (entry / LA_CASE_FILE).is_file():
        return entry / LA_CASE_FILE
    return entry if _holds_dicom_series(entry) else None


def _holds_dicom_series(folder: Path) -> bool:
    from ..io import list_dicom_series  # SimpleITK, loaded when first needed

    try:
        return bool(list_dicom_series(folder))
    except VolumeError:
        return False


__all__ = ["volume_inputs"]
