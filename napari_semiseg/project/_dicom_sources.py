"""The source series of cases read from DICOM, kept for DICOM-SEG export.

A DICOM-SEG must reference the instances it segments (UIDs, frame of reference, each slice's
position). When a case is added from a DICOM series, the headers of the series' files, without
their pixel data (a few kB a slice), are kept in the project as one DICOM JSON file
(``images/<case>/<unique>-dicom-headers.json``, with its SHA-256), so that an export works
whether the image was copied in or referenced, and after the series has moved or been deleted.
Copying the whole series in for that alone would cost the pixels again.

A series whose headers pydicom cannot read is added all the same (its volume read fine); its
export then reads the headers from the series where it lies, and names what is wrong there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ProjectError, VolumeError
from ..io import atomic_write_bytes
from ..io._formats import DICOM, detect_format
from ._files import sha256_of, unique_stem


@dataclass(frozen=True)
class DicomSource:
    """The DICOM series a case was read from.

    Attributes:
        case_id: the case.
        series_uid: the Series Instance UID of the series read.
        instances: how many files (slices) it has.
        headers_path: the kept headers, inside the project.
        sha256: hash of that file, to detect damage.
    """

    case_id: str
    series_uid: str
    instances: int
    headers_path: Path
    sha256: str


@dataclass(frozen=True)
class SeriesHeaders:
    """The headers of a series read before a case is added: what ``keep_dicom_headers`` stores."""

    series_uid: str
    document: bytes
    instances: int


def series_headers(source: Path) -> SeriesHeaders | None:
    """The headers of the DICOM series ``read_volume(source)`` reads; None when ``source`` is no
    DICOM series or pydicom cannot read its headers (see the module docstring)."""
    from ..io import dicom_series_files, headers_to_json, read_dicom_headers

    try:
        if detect_format(source) != DICOM:
            return None
        series_uid, files = dicom_series_files(source)
        headers = read_dicom_headers(files)
        return SeriesHeaders(series_uid, headers_to_json(headers), len(headers))
    except VolumeError:
        return None


class DicomSourceStore:
    """The DICOM half of ``Project`` (uses ``self._db``, ``self.path_for``)."""

    def _keep_dicom_headers(self, conn, case_id: str, headers: SeriesHeaders) -> None:
        """Write the headers file and its row, inside the caller's write transaction."""
        destination = self.path_for("images", f"{case_id}/{unique_stem()}-dicom-headers.json")
        self._db.undo_on_rollback(lambda: destination.unlink(missing_ok=True))
        try:
            atomic_write_bytes(destination, headers.document)
        except OSError as error:
            raise ProjectError(f"{destination}: cannot keep the DICOM headers of case {case_id!r}, nothing "
                               f"was added: {error.strerror or error}") from None
        conn.execute("INSERT INTO dicom_sources (case_id, series_uid, instances, headers_path, sha256) "
                     "VALUES (?, ?, ?, ?, ?)",
                     (case_id, headers.series_uid, headers.instances, self._relative(destination),
                      sha256_of(destination)))

    def dicom_source(self, case_id: str) -> DicomSource | None:
        """The DICOM series the case was read from, when its headers were kept at import."""
        row = self._db.query_one("SELECT * FROM dicom_sources WHERE case_id = ?", (case_id,))
        if row is None:
            return None
        return DicomSource(row["case_id"], row["series_uid"], row["instances"],
                           self._absolute(row["headers_path"]), row["sha256"])

    def load_dicom_headers(self, case_id: str) -> list:
        """The kept headers of the case's DICOM series (``pydicom.Dataset``s, no pixel data).

        Raises:
            ProjectError: the case has no kept headers.
            VolumeError: the file is missing, damaged, or differs from its recorded SHA-256.
        """
        from ..io import headers_from_json

        source = self.dicom_source(case_id)
        if source is None:
            raise ProjectError(f"case {case_id}: no DICOM headers were kept for it")
        path = source.headers_path
        if not path.is_file():
            raise VolumeError(path, f"the DICOM headers of case {case_id!r} are missing")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != source.sha256:
            raise VolumeError(path, f"the DICOM headers of case {case_id!r} differ from the recorded SHA-256 "
                              "(damaged or replaced)")
        return headers_from_json(data, path)


__all__ = ["DicomSource", "DicomSourceStore", "SeriesHeaders", "series_headers"]
