"""Small synthetic volumes, and writers that store them in every format the io layer reads.

The writers here call SimpleITK and h5py directly, never ``napari_semiseg.io``, so that reader
tests do not depend on the project's own writers. Arrays are (z, y, x); spacing and origin are
(z, y, x) in mm; direction is SimpleITK's (x, y, z) row-major matrix, as in ``Geometry``.

Usage from any test (``tests/conftest.py`` puts ``tests/support`` on ``sys.path``)::

    from data_factory import make_volume, write_case
    path = write_case(tmp_path, "nii.gz", make_volume())
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import h5py
import numpy as np
import SimpleITK as sitk

from napari_semiseg.io import Volume

#: Every format name ``write_case`` accepts (the suffix, or "dicom" for a series folder).
FORMATS = ("nii", "nii.gz", "nrrd", "nhdr", "mha", "mhd", "dicom", "h5")


def rotation_direction(axis=(1.0, 2.0, 2.0), angle_deg: float = 30.0) -> tuple[float, ...]:
    """A proper rotation (det +1) about ``axis`` (x, y, z) as a row-major 3×3 direction."""
    u = np.asarray(axis, float) / np.linalg.norm(axis)
    a = math.radians(angle_deg)
    cross = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
    matrix = math.cos(a) * np.eye(3) + math.sin(a) * cross + (1 - math.cos(a)) * np.outer(u, u)
    return tuple(float(v) for v in matrix.ravel())


#: An oblique direction that exercises every entry of the matrix.
OBLIQUE_DIRECTION = rotation_direction()
#: Non-trivial spacing (z, y, x) and origin (z, y, x): exact in float32, so NIfTI keeps them.
ODD_SPACING = (2.5, 0.75, 0.625)
ODD_ORIGIN = (7.75, 30.25, -12.5)


def make_volume(shape=(6, 10, 12), spacing=ODD_SPACING, origin=ODD_ORIGIN,
                direction=OBLIQUE_DIRECTION, dtype=np.float32, seed: int = 0,
                label: np.ndarray | None = None) -> Volume:
    """A random volume (z, y, x) of ``dtype`` on the given grid (integers span 0..999)."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        array = rng.integers(0, 1000, size=shape).astype(dtype)
    else:
        array = rng.normal(100.0, 30.0, size=shape).astype(dtype)
    return Volume.from_array(array, spacing, origin, direction, label=label)


def make_label(shape=(6, 10, 12), n_classes: int = 3, seed: int = 0,
               dtype=np.uint8) -> np.ndarray:
    """A (z, y, x) label map: nested boxes with values 0 .. n_classes-1, plus random speckle."""
    label = np.zeros(shape, dtype=dtype)
    for value in range(1, n_classes):
        margin = [max(1, s * value // (2 * n_classes)) for s in shape]
        label[tuple(slice(m, s - m) for m, s in zip(margin, shape))] = value
    rng = np.random.default_rng(seed)
    speckle = rng.random(shape) < 0.02
    label[speckle] = rng.integers(0, n_classes, size=int(speckle.sum()))
    return label


def to_sitk(array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
            direction=None) -> sitk.Image:
    """A SimpleITK image from a (z, y, x) array and (z, y, x) spacing/origin."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    image.SetOrigin(tuple(float(o) for o in reversed(origin)))
    if direction is not None:
        image.SetDirection(tuple(direction))
    return image


def volume_to_sitk(volume: Volume) -> sitk.Image:
    return to_sitk(volume.array, volume.spacing, volume.origin, volume.direction)


def write_case(folder: str | Path, fmt: str, volume: Volume | None = None,
               name: str = "case") -> Path:
    """Store ``volume`` (default ``make_volume()``) in ``fmt`` under ``folder``; return its path.

    ``fmt`` is one of ``FORMATS``: a file suffix, "dicom" (a series folder ``folder/name``,
    voxels cast to int16) or "h5" (an LA-style file: ``image`` and, if the volume has one,
    ``label``, stored (x, y, z); the geometry is not stored, as in the benchmark).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume = volume if volume is not None else make_volume()
    if fmt == "dicom":
        return write_dicom_series(folder / name, volume)
    path = folder / f"{name}.{fmt}"
    if fmt == "h5":
        return write_la_h5(path, volume.array, volume.label)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")
    compress = fmt in ("nrrd", "nhdr", "mha")
    sitk.WriteImage(volume_to_sitk(volume), str(path), useCompression=compress)
    return path


def write_la_h5(path: str | Path, image_zyx: np.ndarray, label_zyx: np.ndarray | None = None,
                **extra_datasets) -> Path:
    """An LA-benchmark-style h5: datasets stored (x, y, z), gzip-compressed like the originals."""
    path = Path(path)
    with h5py.File(path, "w") as handle:
        if image_zyx is not None:
            handle.create_dataset("image", data=np.asarray(image_zyx).transpose(2, 1, 0),
                                  compression="gzip")
        if label_zyx is not None:
            handle.create_dataset("label", data=np.asarray(label_zyx).transpose(2, 1, 0),
                                  compression="gzip")
        for key, value in extra_datasets.items():
            handle.create_dataset(key, data=value)
    return path


def write_dicom_series(folder: str | Path, volume: Volume, series_uid: str | None = None,
                       study_uid: str = "1.2.826.0.1.3680043.2.1125.7") -> Path:
    """One DICOM file per z-slice of ``volume`` (as int16) in ``folder``, as a scanner writes them.

    Each slice carries what a reader needs to rebuild the volume: SeriesInstanceUID,
    FrameOfReferenceUID, ImagePositionPatient (its voxel (0, 0, k) in mm), ImageOrientationPatient (the first two
    columns of the direction), InstanceNumber and PixelSpacing (from the slice's spacing).
    The z spacing is implied by the positions, as in real series.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or f"{study_uid}.{zlib.crc32(str(folder).encode())}"
    image = to_sitk(volume.array.astype(np.int16), volume.spacing, volume.origin, volume.direction)
    d = image.GetDirection()
    orientation = (d[0], d[3], d[6], d[1], d[4], d[7])
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        slice_k = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "MR",
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0052": f"{study_uid}.0",  # FrameOfReferenceUID: scanners write one; a DICOM-SEG needs it
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.10g}" for v in position),
            "0020|0037": "\\".join(f"{v:.10g}" for v in orientation),
            "0018|0050": f"{volume.spacing[0]:.10g}",
        }
        for key, value in tags.items():
            slice_k.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(slice_k)
    return folder


def truncate(path: str | Path, keep_fraction: float = 0.5) -> Path:
    """Cut ``path`` to the first ``keep_fraction`` of its bytes, as an interrupted copy would."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep_fraction)])
    return path


def folder_snapshot(folder: str | Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes), to prove nothing changed."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}
