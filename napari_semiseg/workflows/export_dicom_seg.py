"""A case's label as a DICOM-SEG that references the DICOM series the case was read from (highdicom).

What a PACS or a planning workstation reads beside the series itself. One binary segment per
label value (the LA label has one: ``segment_label``, "left atrium" by default), coded with
SNOMED CT when pydicom knows the name, else with a private code. Its algorithm type follows
the label version's provenance: MANUAL for gold and corrected labels, AUTOMATIC, with the model
version as algorithm identification, for predictions and pseudo-labels. Soft labels and
uncertainty have no DICOM-SEG form here: they stay NIfTI (``workflows.export``).

The source is the series' headers kept at import (``Project.load_dicom_headers``), else, for a
case imported before they were kept, the series where it lies. Each label slice is matched to
the source slice at its position: the grid of the label is checked against every source
slice's position, orientation, size and pixel spacing, never assumed from the file order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ProjectError, VolumeError

#: What the label's structure is called when the user does not say (the project's LA focus).
DEFAULT_SEGMENT_LABEL = "left atrium"
#: The file written: ``<case>_label.dcm``.
DICOM_SEG_SUFFIX = ".dcm"
#: Label kinds a person drew or vouched for; the others are a model's.
_MANUAL_KINDS = ("gold", "corrected")
#: How far (in voxels) a source slice may lie from the label's grid: text-rounded positions.
_GRID_TOLERANCE = 0.1
#: A coding scheme of our own for structures SNOMED CT (as pydicom knows it) does not name.
_PRIVATE_SCHEME = "99SEMISEG"


def is_from_dicom(project, case_id: str) -> bool:
    """Whether the case was read from a DICOM series (its headers kept, or its image a DICOM folder)."""
    if project.dicom_source(case_id) is not None:
        return True
    return _is_dicom_path(project.case(case_id).image_path)


def dicom_seg_path(folder: str | Path, case_id: str) -> Path:
    """Where a case's DICOM-SEG goes in ``folder``: ``<case>_label.dcm``."""
    return Path(folder) / f"{case_id}_label{DICOM_SEG_SUFFIX}"


def require_dicom_case(project, case_id: str) -> None:
    """Raise the user's error for a case that was not read from DICOM."""
    if not is_from_dicom(project, case_id):
        raise ProjectError(f"case {case_id}: not read from DICOM; export NIfTI instead")


@dataclass(frozen=True)
class _Provenance:
    """What the DICOM-SEG says about who made the label."""

    manual: bool
    model_name: str
    model_version: str


def build_dicom_seg(project, case_id: str, version, label: np.ndarray, segment_label: str | None = None):
    """The DICOM-SEG dataset of ``label`` (label version ``version`` of the case), not yet written.

    ``segment_label`` names the labelled structure (``DEFAULT_SEGMENT_LABEL`` when empty).

    Raises:
        ProjectError: the case was not read from DICOM, its series does not lie on the label's
            grid, or highdicom refuses the source (e.g. no Frame of Reference UID).
        VolumeError: the kept headers (or the series) cannot be read.
    """
    import highdicom as hd

    require_dicom_case(project, case_id)
    case = project.case(case_id)
    sources = _in_label_order(_source_headers(project, case), case.geometry, case_id)
    values = int(label.max(initial=0))
    name = (segment_label or "").strip() or DEFAULT_SEGMENT_LABEL
    descriptions = _segment_descriptions(max(values, 1), name, _provenance(project, version))
    pixels = np.ascontiguousarray(label, dtype=np.uint8 if values < 256 else np.uint16)
    try:
        return hd.seg.Segmentation(
            source_images=sources, pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
            series_instance_uid=hd.UID(), series_number=1, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="napari-semiseg", manufacturer_model_name="napari-semiseg",
            software_versions=_software_version(), device_serial_number="none",
            series_description=_clip(f"{name} ({version.kind}, label version {version.id})"),
            content_label="SEMISEG", content_description=_clip(f"label version {version.id} of case {case_id}"),
            # A SEG holds at least one frame: an empty label keeps them all (highdicom would warn, then do so).
            omit_empty_frames=values > 0)
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        raise ProjectError(f"case {case_id}: cannot write a DICOM-SEG of its series: {error}") from None


def write_dicom_seg(dataset, path: str | Path) -> Path:
    """Write a dataset ``build_dicom_seg`` made, atomically.

    Raises:
        VolumeError: the file cannot be written (the destination is then untouched).
    """
    from ..io import atomic_path

    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            dataset.save_as(tmp, enforce_file_format=True)
    except OSError as error:
        raise VolumeError(path, f"cannot be written: {error.strerror or error}") from None
    return path


def _source_headers(project, case) -> list:
    if project.dicom_source(case.id) is not None:
        return project.load_dicom_headers(case.id)
    from ..io import dicom_series_files, read_dicom_headers

    _series_uid, files = dicom_series_files(case.image_path)
    return read_dicom_headers(files)


def _is_dicom_path(path: Path) -> bool:
    """A DICOM folder or file; a folder that is gone counts (its export then says it is gone)."""
    from ..io import SUFFIX_FORMATS
    from ..io._formats import DICOM, compound_suffix

    return path.is_dir() or SUFFIX_FORMATS.get(compound_suffix(path), DICOM) == DICOM


def _in_label_order(headers: list, geometry, case_id: str) -> list:
    """The source slices, slice ``k`` of the label's grid first ... raising when one does not fit it."""
    if len(headers) == 1 and int(getattr(headers[0], "NumberOfFrames", 1) or 1) > 1:
        raise ProjectError(f"case {case_id}: its DICOM image is one multi-frame file; DICOM-SEG export takes "
                           "a series of single-frame slices")
    depth, rows, columns = geometry.shape
    if len(headers) != depth:
        raise ProjectError(f"case {case_id}: its DICOM series has {len(headers)} slices, its image {depth}")
    to_index = _physical_to_index(geometry)
    by_slice: dict[int, object] = {}
    for header in headers:
        where = f"case {case_id}: DICOM slice {getattr(header, 'SOPInstanceUID', '?')}"
        _check_plane(header, geometry, rows, columns, where)
        index = to_index(_floats(header, "ImagePositionPatient", 3, where))
        k = int(round(index[2]))
        if np.abs(index - (0.0, 0.0, k)).max() > _GRID_TOLERANCE or not 0 <= k < depth:
            raise ProjectError(f"{where}: lies at voxel (x, y, z) {tuple(np.round(index, 2))} of the image's "
                               "grid, not on one of its slices")
        if k in by_slice:
            raise ProjectError(f"{where}: a second slice at z = {k}")
        by_slice[k] = header
    return [by_slice[k] for k in range(depth)]


def _physical_to_index(geometry):
    """Patient (x, y, z) mm → continuous voxel index (x, y, z) on ``geometry``'s grid."""
    axes = np.reshape(np.asarray(geometry.direction, dtype=float), (3, 3)) * np.asarray(geometry.spacing[::-1])
    inverse = np.linalg.inv(axes)
    origin = np.asarray(geometry.origin[::-1], dtype=float)
    return lambda point: inverse @ (np.asarray(point, dtype=float) - origin)


def _check_plane(header, geometry, rows: int, columns: int, where: str) -> None:
    """A slice's size, orientation and pixel spacing against the label's grid."""
    size = (int(getattr(header, "Rows", -1)), int(getattr(header, "Columns", -1)))
    if size != (rows, columns):
        raise ProjectError(f"{where}: {size[0]}×{size[1]} pixels, the image's slices {rows}×{columns}")
    direction = np.reshape(np.asarray(geometry.direction, dtype=float), (3, 3))
    orientation = _floats(header, "ImageOrientationPatient", 6, where)
    if not np.allclose(orientation, np.concatenate([direction[:, 0], direction[:, 1]]), atol=1e-3):
        raise ProjectError(f"{where}: oriented {tuple(np.round(orientation, 4))}, not as the image's grid")
    spacing = _floats(header, "PixelSpacing", 2, where)  # between rows (y), between columns (x)
    if not np.allclose(spacing, geometry.spacing[1:], rtol=1e-3):
        raise ProjectError(f"{where}: pixel spacing {tuple(spacing)} mm, the image's {geometry.spacing[1:]}")


def _floats(header, keyword: str, count: int, where: str) -> np.ndarray:
    try:
        values = np.asarray([float(v) for v in header.get(keyword) or ()], dtype=float)
    except (TypeError, ValueError):
        values = np.empty(0)
    if values.shape != (count,) or not np.isfinite(values).all():
        raise ProjectError(f"{where}: no valid {keyword} ({count} numbers)")
    return values


def _provenance(project, version) -> _Provenance:
    if version.kind in _MANUAL_KINDS:
        return _Provenance(True, "", "")
    if version.model_id is None:
        return _Provenance(False, "napari-semiseg model", "unknown model version")
    model = project.model(version.model_id)
    return _Provenance(False, f"napari-semiseg {model.name}", f"model version {model.id} ({model.method})")


def _segment_descriptions(count: int, name: str, provenance: _Provenance) -> list:
    """One description per label value 1..count: ``name``, or ``name 2``... when there are several."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = None
    if not provenance.manual:
        algorithm = hd.AlgorithmIdentificationSequence(
            name=provenance.model_name, family=codes.cid7162.ArtificialIntelligence,
            version=provenance.model_version)
    kind = (hd.seg.SegmentAlgorithmTypeValues.MANUAL if provenance.manual
            else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC)
    descriptions = []
    for value in range(1, count + 1):
        label = name if count == 1 else f"{name} {value}"
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=value, segment_label=_clip(label),
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=_structure_code(label), algorithm_type=kind,
            algorithm_identification=algorithm))
    return descriptions


def _structure_code(name: str):
    """SNOMED CT's code for ``name`` when pydicom knows it ("left atrium"), else a private one."""
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    keyword = "".join(word[:1].upper() + word[1:] for word in name.replace("-", " ").split())
    try:
        return getattr(codes.SCT, keyword)
    except AttributeError:
        return Code(value=_clip(keyword or "Structure", 16), scheme_designator=_PRIVATE_SCHEME, meaning=_clip(name))


def _software_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"napari-semiseg {version('napari-semiseg')}"
    except PackageNotFoundError:
        return "napari-semiseg"


def _clip(text: str, limit: int = 64) -> str:
    """DICOM's LO and SH values hold at most 64 (16) characters."""
    return text[:limit]


__all__ = ["DEFAULT_SEGMENT_LABEL", "DICOM_SEG_SUFFIX", "build_dicom_seg", "dicom_seg_path", "is_from_dicom",
           "require_dicom_case", "write_dicom_seg"]
