"""Read any supported volume or label file into (z, y, x) arrays with their geometry.

Supported: NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), MetaImage (.mha, .mhd), a DICOM series
(a folder, or one .dcm file of it), and the LA benchmark's ``mri_norm2.h5`` (.h5, .hdf5).
Every failure is a ``VolumeError`` whose message is "PATH: problem"; library exceptions are
translated here and not chained, so a user sees one line, not a SimpleITK traceback.

NaN/inf intensities raise by default (``allow_nonfinite=False``): they would turn a network's
output into NaN. Callers that clean them up themselves pass ``allow_nonfinite=True`` and get
them as stored, NIfTI included (ITK would have replaced them with 0; see ``_nifti``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import VolumeError
from ._data_files import external_data_files
from ._dicom import list_dicom_series, read_dicom_series
from ._formats import DICOM, LA_H5, NIFTI, SITK_IMAGE_IO, detect_format
from ._h5 import read_la_h5
from ._nifti import restore_nonfinite, scan_nifti, unambiguous_nifti_name
from ._sitk import image_to_array, itk_reason, quiet_itk_warnings, require_scalar_3d
from ._validate import check_finite, check_real, validate_label
from ._volume import Geometry, Volume

Spacing = float | tuple[float, float, float]


def read_volume(path: str | Path, *, spacing: Spacing | None = None,
                allow_nonfinite: bool = False, series_uid: str | None = None) -> Volume:
    """Read a 3-D image (and the label an LA h5 file carries) with its geometry.

    Args:
        path: a NIfTI/NRRD/MetaImage/h5 file, a DICOM series folder, or one .dcm file of it.
        spacing: voxel size in mm, one number or (z, y, x), replacing the file's. LA h5 files
            store none, so for them it defaults to 0.625 mm isotropic.
        allow_nonfinite: keep NaN/inf intensities instead of raising. Only for callers that
            clean them up themselves: a network fed NaN produces NaN everywhere.
        series_uid: which DICOM series of the folder to read (default: the one with most files).

    Returns:
        A ``Volume`` whose ``array`` is (z, y, x) in the file's own dtype (napari's axis order),
        with spacing and origin in (z, y, x) mm, ``source`` = ``path``, and ``label`` (z, y, x,
        uint8) for an h5 file with a ``label`` dataset. A 4-D file with a single 4th-dimension
        element is squeezed to 3-D.

    Raises:
        VolumeError: missing path, unknown suffix, unreadable/truncated file, empty folder or no
            DICOM in it, an h5 without ``image``, not 3-D, a single slice, vector voxels,
            voxels that are not real numbers (text, complex), a MetaImage/NRRD header naming
            a data file outside its folder, NaN/inf intensities (unless
            ``allow_nonfinite``), or an h5 label that is not a
            valid label of its image (``GeometryMismatchError`` for a shape mismatch).
    """
    path = Path(path)
    fmt = detect_format(path)
    override = _spacing_tuple(spacing, path)
    label = None
    if fmt == LA_H5:
        array, geometry, label = read_la_h5(path, override)
    else:
        array, geometry = _read_with_sitk(path, fmt, series_uid)
        if override is not None:
            geometry = replace(geometry, spacing=override)
    _require_volume_shape(array.shape, path)
    check_real(array, path)
    if label is not None:
        label = validate_label(label, None, geometry, path)
    # UA-MT's preprocessing z-scored each whole scan, then cropped it around the atrium.
    volume = Volume(array, geometry, source=path, label=label, zscored=fmt == LA_H5)
    if not allow_nonfinite:
        check_finite(volume)
    return volume


def read_label(path: str | Path, like: Geometry, *, series_uid: str | None = None) -> np.ndarray:
    """Read a label map and check it fits the image on ``like``'s grid.

    Args:
        path: a label file in any readable format; for an LA h5 file its ``label`` dataset (it
            carries no geometry, so only its shape is compared).
        like: the grid of the image the label belongs to.
        series_uid: for a DICOM folder, which series.

    Returns:
        The label, (z, y, x), uint8 (uint16/uint32 when values exceed 255/65535).

    Raises:
        GeometryMismatchError: shape, spacing, origin or direction differ from ``like``'s.
        VolumeError: unreadable file, non-integer or negative values (see ``validate_label``).
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == LA_H5:
        _, _, label = read_la_h5(path)
        if label is None:
            raise VolumeError(path, "has no 'label' dataset")
        return validate_label(label, None, like, path)
    array, geometry = _read_with_sitk(path, fmt, series_uid)
    return validate_label(array, geometry, like, path)


def _read_with_sitk(path: Path, fmt: str, series_uid: str | None) -> tuple[np.ndarray, Geometry]:
    if fmt == DICOM:
        folder = path if path.is_dir() else path.parent
        if series_uid is None and not path.is_dir():
            series_uid = _series_of_file(path)
        return image_to_array(require_scalar_3d(read_dicom_series(folder, series_uid), path))
    if fmt == NIFTI:
        return _read_nifti(path)
    external_data_files(path, fmt)  # refuses a header pointing outside its folder
    return image_to_array(require_scalar_3d(_read_file(path, path, fmt), path))


def _read_nifti(path: Path) -> tuple[np.ndarray, Geometry]:
    """NIfTI through ITK, plus the checks ITK skips (see ``_nifti``); NaN/inf are kept."""
    with unambiguous_nifti_name(path) as name:
        try:
            scan = scan_nifti(name)
        except RuntimeError as error:
            raise _unreadable(path, NIFTI, error, name) from None
        except OSError as error:
            raise VolumeError(path, f"cannot be read: {error.strerror or error}") from None
        if scan.problem:
            raise VolumeError(path, scan.problem)
        array, geometry = image_to_array(require_scalar_3d(_read_file(name, path, NIFTI), path))
    if scan.nonfinite is not None and np.issubdtype(array.dtype, np.floating):
        restore_nonfinite(array, scan.nonfinite)
    return array, geometry


def _read_file(name: Path, path: Path, fmt: str) -> sitk.Image:
    """Read file ``name`` with ``fmt``'s ImageIO; errors name ``path`` (what the user gave)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(name))
    reader.SetImageIO(SITK_IMAGE_IO[fmt])
    try:
        with quiet_itk_warnings():
            return reader.Execute()
    except RuntimeError as error:
        raise _unreadable(path, fmt, error, name) from None


def _unreadable(path: Path, fmt: str, error: RuntimeError, name: Path) -> VolumeError:
    reason = itk_reason(error).replace(str(name), path.name)  # never show a private temp name
    return VolumeError(path, f"cannot be read as {fmt} (corrupt, truncated, or a data file it "
                       f"names is missing): {reason}")


def _series_of_file(path: Path) -> str:
    target = path.resolve()
    for uid, _ in list_dicom_series(path.parent):
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path.parent), uid)
        if any(Path(name).resolve() == target for name in files):
            return uid
    raise VolumeError(path, "is not part of a readable DICOM series")


def _require_volume_shape(shape: tuple[int, ...], path: Path) -> None:
    if min(shape) < 2:
        raise VolumeError(path, f"is a single slice, shape (z, y, x) = {tuple(shape)}; "
                          "a 3-D volume is needed")


def _spacing_tuple(spacing: Spacing | None, path: Path) -> tuple[float, float, float] | None:
    if spacing is None:
        return None
    values = tuple(float(s) for s in np.atleast_1d(np.asarray(spacing, dtype=float)))
    values = values * 3 if len(values) == 1 else values
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise VolumeError(path, f"spacing {spacing!r} is not one or three positive sizes in mm")
    return values
