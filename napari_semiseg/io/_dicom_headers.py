"""What a DICOM-SEG needs of its source series: the headers of the series' files, without pixels.

A DICOM-SEG references the instances it segments: their Study, Series and SOP Instance UIDs,
their frame of reference, each slice's position and orientation. ``dicom_series_files`` names
the files of the series ``read_volume`` reads (GDCM's choice, so both agree); ``read_dicom_headers``
reads them with pydicom, stopping before the pixel data (a few kB a slice where the file may
hold a MB); ``headers_to_json`` and ``headers_from_json`` keep them as one DICOM JSON document
(PS3.18 F), which a project stores so that an export outlives the series' own files.

pydicom is imported when first used: nothing else in the package needs it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import SimpleITK as sitk

from ..errors import VolumeError
from ._dicom import list_dicom_series
from ._sitk import quiet_itk_warnings


def dicom_series_files(path: str | Path, series_uid: str | None = None) -> tuple[str, tuple[Path, ...]]:
    """The series ``read_volume(path, series_uid=...)`` reads: its UID and its files, GDCM's order.

    Args:
        path: a DICOM series folder, or one .dcm file of it (then its own series).
        series_uid: which series of the folder; by default the one with the most files.

    Raises:
        VolumeError: no DICOM series there, or no series ``series_uid``.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    series = [uid for uid, _count in list_dicom_series(folder)]
    if not series:
        raise VolumeError(folder, "contains no DICOM series (subfolders are not searched)")
    if series_uid is not None and series_uid not in series:
        raise VolumeError(folder, f"has no DICOM series {series_uid!r}; it has {', '.join(series)}")
    candidates = [series_uid] if series_uid is not None else series
    for uid in candidates:
        with quiet_itk_warnings():
            files = tuple(Path(name) for name in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        if path.is_dir() or path.resolve() in {name.resolve() for name in files}:
            return uid, files
    raise VolumeError(path, "is not part of a readable DICOM series")


def read_dicom_headers(files: Sequence[str | Path]) -> list:
    """Each file's DICOM header (a ``pydicom.Dataset``), pixel data left unread.

    Raises:
        VolumeError: a file pydicom cannot parse, or one without a SOP Instance UID.
    """
    import pydicom

    headers = []
    for name in files:
        try:
            # force: GDCM took the file for part of the series, even without a preamble.
            header = pydicom.dcmread(name, stop_before_pixels=True, force=True)
        except Exception as error:  # noqa: BLE001 - pydicom raises a dozen kinds on a damaged file
            raise VolumeError(name, f"cannot be read as DICOM: {error}") from None
        if "SOPInstanceUID" not in header:
            raise VolumeError(name, "is not a DICOM image: it has no SOP Instance UID")
        headers.append(header)
    return headers


def headers_to_json(headers: Sequence) -> bytes:
    """The headers as one DICOM JSON document (a list of datasets), UTF-8.

    An element whose value DICOM JSON cannot carry (an invalid number string) is left out
    rather than refusing the series: an export that needs it says that it is missing.

    Raises:
        VolumeError: a header cannot be written at all.
    """
    try:
        # No bulk-data handler: binary values stay in the document (InlineBinary).
        document = [header.to_json_dict(suppress_invalid_tags=True) for header in headers]
    except (ValueError, TypeError, OverflowError) as error:
        source = getattr(headers[0], "filename", None) if headers else None
        raise VolumeError(source, f"DICOM header cannot be kept: {error}") from None
    return json.dumps(document).encode("utf-8")


def headers_from_json(data: bytes, path: str | Path) -> list:
    """The datasets ``headers_to_json`` wrote; ``path`` names the file in messages.

    Raises:
        VolumeError: not such a document (damaged, cut short, another program's).
    """
    from pydicom import Dataset

    try:
        document = json.loads(data.decode("utf-8"))
        if not isinstance(document, list) or not document:
            raise ValueError("expected a non-empty list of DICOM datasets")
        return [Dataset.from_json(item) for item in document]
    except Exception as error:  # noqa: BLE001 - json and pydicom raise many kinds on a damaged file
        raise VolumeError(path, f"is not a readable list of DICOM headers: {error}") from None


__all__ = ["dicom_series_files", "headers_from_json", "headers_to_json", "read_dicom_headers"]
