"""Which reader or writer a path calls for, decided from its name (folders are DICOM series).

The suffix decides, not the content, so that a file is read by the library meant for it and a
corrupt file gets a message in that format's words instead of "no reader found".
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VolumeError

NIFTI = "NIfTI"
NRRD = "NRRD"
METAIMAGE = "MetaImage"
DICOM = "DICOM"
LA_H5 = "HDF5 (LA mri_norm2.h5)"

#: File suffixes (lower case, compound ones included) and the format each names.
SUFFIX_FORMATS: dict[str, str] = {
    ".nii": NIFTI, ".nii.gz": NIFTI,
    ".nrrd": NRRD, ".nhdr": NRRD,
    ".mha": METAIMAGE, ".mhd": METAIMAGE,
    ".dcm": DICOM,
    ".h5": LA_H5, ".hdf5": LA_H5,
}

#: SimpleITK ImageIO class for each single-file format it reads.
SITK_IMAGE_IO: dict[str, str] = {NIFTI: "NiftiImageIO", NRRD: "NrrdImageIO",
                                  METAIMAGE: "MetaImageIO"}

#: Suffixes ``write_volume``/``write_label`` accept: single-file formats only, so that a write
#: is one atomic rename (a .nhdr/.mhd header would leave its data file unprotected).
WRITABLE_SUFFIXES: dict[str, str] = {".nii": NIFTI, ".nii.gz": NIFTI, ".nrrd": NRRD,
                                     ".mha": METAIMAGE}


def compound_suffix(path: str | Path) -> str:
    """The lower-case suffix that names the format: ``.nii.gz`` rather than ``.gz``."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def detect_format(path: str | Path) -> str:
    """The format to read ``path`` as: a folder is a DICOM series, a file goes by its suffix.

    Raises:
        VolumeError: the path does not exist or its suffix names no format we read.
    """
    path = Path(path)
    if not path.exists():
        raise VolumeError(path, "does not exist")
    if path.is_dir():
        return DICOM
    suffix = compound_suffix(path)
    if suffix not in SUFFIX_FORMATS:
        raise VolumeError(path, f"unknown volume format {suffix or '(no suffix)'!r}; expected "
                          f"one of {', '.join(SUFFIX_FORMATS)} or a DICOM folder")
    return SUFFIX_FORMATS[suffix]


def writable_format(path: str | Path) -> str:
    """The format ``path``'s suffix asks a writer for.

    Raises:
        VolumeError: the suffix is not one we write.
    """
    suffix = compound_suffix(path)
    if suffix not in WRITABLE_SUFFIXES:
        raise VolumeError(path, f"cannot write {suffix or '(no suffix)'!r} files; use one of "
                          f"{', '.join(WRITABLE_SUFFIXES)}")
    return WRITABLE_SUFFIXES[suffix]
