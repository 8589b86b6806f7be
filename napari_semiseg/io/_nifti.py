"""What ITK's NIfTI support gets silently wrong, checked on the raw file.

ITK 5.4's NIfTI reader (niftilib) has three silent failure modes this module guards against:

* a truncated .nii/.nii.gz is read without error, the missing voxels filled with zeros, and
  the writer returns normally when the disk takes only part of the data (disk full, file size
  limit). We compare the bytes the header promises (``vox_offset`` + voxels × ``bitpix``/8,
  parsed by ITK) with the bytes stored; for .nii.gz that means reading the gzip stream to its
  end, which also checks its CRC.
* NaN and ±inf float voxels are replaced by 0 on read. We find them in the raw data so that
  ``read_volume`` can report them (or put them back when asked to keep them).
* reading ``X.nii.gz`` while ``X.nii`` (or ``X.hdr``/``X.img``) lies beside it reads the other
  file's voxels. ``unambiguous_nifti_name`` gives a name without such neighbours.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import SimpleITK as sitk

_CHUNK = 1 << 22
#: NIfTI datatype codes of the float types whose non-finite values niftilib zeroes.
_FLOAT_TYPES = {16: "f4", 64: "f8"}
_NIFTI_FAMILY = (".nii", ".nii.gz", ".hdr", ".hdr.gz", ".img", ".img.gz")

NAN, POS_INF, NEG_INF = 1, 2, 3


@dataclass
class NiftiScan:
    """What the raw bytes of a NIfTI file hold.

    Attributes:
        problem: why the file is incomplete (truncated data, broken gzip stream), or None.
        nonfinite: per voxel in file order (= C order of the (z, y, x) array), 0 for a finite
            value, else ``NAN``/``POS_INF``/``NEG_INF``; None when every voxel is finite (or
            values were not scanned).
    """

    problem: str | None
    nonfinite: np.ndarray | None = None


def scan_nifti(path: Path, scan_values: bool = True) -> NiftiScan:
    """Check that ``path`` is complete and, if ``scan_values``, find its NaN/inf float voxels.

    Raises:
        RuntimeError: ITK cannot parse the header (the caller translates it).
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("NiftiImageIO")
    reader.ReadImageInformation()
    meta = reader.GetMetaData
    n_voxels = math.prod(int(meta(f"dim[{i}]")) for i in range(1, int(meta("dim[0]")) + 1))
    offset = int(float(meta("vox_offset")))
    expected = offset + n_voxels * int(meta("bitpix")) // 8
    value_type = _FLOAT_TYPES.get(int(meta("datatype"))) if scan_values else None
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            stored, nonfinite = _read_payload(stream, offset, value_type, n_voxels)
    except EOFError:
        return NiftiScan("compressed data is truncated (the gzip stream ends early)")
    except (gzip.BadGzipFile, zlib.error) as error:
        return NiftiScan(f"compressed data is corrupt ({error})")
    if stored < expected:
        return NiftiScan(f"file is truncated: the header promises {expected} bytes, "
                         f"{stored} are stored")
    return NiftiScan(None, nonfinite)


def _read_payload(stream: BinaryIO, offset: int, value_type: str | None, n_voxels: int
                  ) -> tuple[int, np.ndarray | None]:
    """Bytes in the stream, and the non-finite codes of its float voxels (None if all finite)."""
    header = stream.read(offset)
    stored = len(header)
    if value_type is None or stored < 4:
        while chunk := stream.read(_CHUNK):
            stored += len(chunk)
        return stored, None
    little = int.from_bytes(header[:4], "little") in (348, 540)
    dtype = np.dtype(("<" if little else ">") + value_type)
    codes, voxel = None, 0
    chunk_size = _CHUNK - _CHUNK % dtype.itemsize
    while chunk := stream.read(chunk_size):
        stored += len(chunk)
        values = np.frombuffer(chunk[:len(chunk) - len(chunk) % dtype.itemsize], dtype)
        values = values[:max(0, n_voxels - voxel)]
        bad = ~np.isfinite(values)
        if bad.any():
            codes = np.zeros(n_voxels, np.int8) if codes is None else codes
            part = codes[voxel:voxel + len(values)]
            part[np.isnan(values)] = NAN
            part[values == np.inf] = POS_INF
            part[values == -np.inf] = NEG_INF
        voxel += len(values)
    return stored, codes


def restore_nonfinite(array: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Put back into ``array`` (float, file voxel order) the NaN/inf that niftilib zeroed."""
    flat = array.reshape(-1)
    flat[codes == NAN] = np.nan
    flat[codes == POS_INF] = np.inf
    flat[codes == NEG_INF] = -np.inf
    return array


@contextlib.contextmanager
def unambiguous_nifti_name(path: Path) -> Iterator[Path]:
    """A name ITK reads ``path`` by without picking up a same-named neighbour's voxels.

    ``path`` itself when it has no neighbour; otherwise a symbolic link to it alone in a
    private temporary folder, removed on exit.
    """
    name = path.name.lower()
    stem = name[:-len(".nii.gz")] if name.endswith(".nii.gz") else name.rsplit(".", 1)[0]
    neighbours = [path.with_name(path.name[:len(stem)] + suffix) for suffix in _NIFTI_FAMILY]
    if not any(n.exists() and n.name.lower() != name for n in neighbours):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="semiseg-nifti-") as folder:
        link = Path(folder) / ("volume.nii.gz" if name.endswith(".gz") else "volume.nii")
        os.symlink(path.resolve(), link)
        yield link
