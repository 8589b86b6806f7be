"""DICOM series: find the series in a folder and read one as a 3-D image.

GDCM (through SimpleITK's ImageSeriesReader) sorts the slices by their ImagePositionPatient and
derives the slice spacing from the positions, so the z spacing comes from the geometry of the
slices, not from SliceThickness. Only the folder itself is searched, not its subfolders.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import VolumeError
from ._sitk import itk_reason, quiet_itk_warnings


def list_dicom_series(folder: str | Path) -> list[tuple[str, int]]:
    """The DICOM series in ``folder``: (SeriesInstanceUID, number of files), most files first.

    Raises:
        VolumeError: ``folder`` is not a folder, or is empty.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise VolumeError(folder, "is not a folder")
    if not any(folder.iterdir()):
        raise VolumeError(folder, "is an empty folder; expected the files of a DICOM series")
    with quiet_itk_warnings():
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
        counts = [(uid, len(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)))
                  for uid in uids]
    return sorted(counts, key=lambda item: (-item[1], item[0]))


def read_dicom_series(folder: str | Path, series_uid: str | None = None) -> sitk.Image:
    """Read one DICOM series of ``folder`` as a SimpleITK image.

    Args:
        folder: the folder holding the series' files (subfolders are not searched).
        series_uid: which series to read; by default the one with the most files (a folder
            often holds a localiser or a derived series beside the volume).

    Raises:
        VolumeError: no DICOM series in the folder, an unknown ``series_uid``, or unreadable
            slices.
    """
    folder = Path(folder)
    series = list_dicom_series(folder)
    if not series:
        raise VolumeError(folder, "contains no DICOM series (subfolders are not searched)")
    uids = [uid for uid, _ in series]
    if series_uid is None:
        series_uid = uids[0]
    elif series_uid not in uids:
        raise VolumeError(folder, f"has no DICOM series {series_uid!r}; it has {', '.join(uids)}")
    with quiet_itk_warnings():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid)
    try:
        if len(files) == 1:
            # One file: a single slice, or one multi-frame file that is a volume by itself.
            return sitk.ReadImage(files[0])
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        with quiet_itk_warnings():
            image = reader.Execute()
        if image.HasMetaDataKey("ITK_non_uniform_sampling_deviation"):
            _require_even_spacing(files, image, folder)
        return image
    except RuntimeError as error:
        raise VolumeError(folder, f"cannot read DICOM series {series_uid}: "
                          f"{itk_reason(error)}") from None


#: Largest tolerated difference between neighbouring slice gaps, relative to the mean gap.
#: ITK flags any unevenness beyond text-rounding noise; a missing slice makes a gap 100 % off.
_SPACING_TOLERANCE = 0.01


def _require_even_spacing(files: tuple[str, ...], image: sitk.Image, folder: Path) -> None:
    """Raise when the slices are unevenly spaced: one z spacing would misplace some of them.

    ITK then averages the gaps into the spacing it reports, silently, which puts labels and
    measurements at the wrong positions.
    """
    normal = np.reshape(image.GetDirection(), (3, 3))[:, 2]
    positions = []
    for name in files:
        header = sitk.ImageFileReader()
        header.SetFileName(name)
        header.ReadImageInformation()
        positions.append(float(np.dot(header.GetOrigin(), normal)))
    gaps = np.diff(np.sort(positions))
    if gaps.size and np.ptp(gaps) > _SPACING_TOLERANCE * abs(gaps.mean()):
        raise VolumeError(folder, f"DICOM slices are unevenly spaced ({gaps.min():.4g} to "
                          f"{gaps.max():.4g} mm apart): missing slices, or two series in one? "
                          "A single z spacing would misplace them")
