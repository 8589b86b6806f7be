"""Import a folder of volumes, with an optional folder of labels matched by name.

Matching rules:

- a **case id** is the image's file name without its volume suffix (``.nii.gz``, ``.nii``,
  ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``, ``.h5``...) and without nnU-Net's channel tag
  ``_0000`` (``liver_7_0000.nii.gz`` is case ``liver_7``); a sub-folder holding a DICOM series
  is a case named like the folder;
- a **label** belongs to case ``X`` when its own id is ``X`` (the MSD/nnU-Net layout:
  ``imagesTr/X.nii.gz`` and ``labelsTr/X.nii.gz``) or ``X`` followed by one of
  ``LABEL_SUFFIXES`` (``X_seg.nii.gz``, ``X_label.nrrd``...). Two labels for one case is an
  error; labels that match no image are reported, not imported;
- labels may lie in the images' own folder (``labels_dir == images_dir``): the files that are
  some image's label are then not imported as images.

Imported labels become "gold" versions. Re-running an import adds only what is missing.

Every voxel of a new image and of its label is read and checked before the case is added
(complete, finite, real numbers; see ``io.read_volume``). A case whose file is refused is left
out whole, with the reason in the report, and the import goes on with the others.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ProjectError, VolumeError
from ..io import LA_CASE_FILE, LA_TRAINING_FOLDER, list_dicom_series, read_label, read_volume
from ..io._formats import compound_suffix
from ._headers import is_volume_file, read_geometry
from ._import_report import ImportProgress, ImportReport, RefusedFile

#: Name endings (before the file suffix) that mark a label file of the image named before them.
LABEL_SUFFIXES: tuple[str, ...] = ("_seg", "_label", "_labels", "_mask", "_gt")
_CHANNEL_TAG = "_0000"


def case_id_of(path: Path) -> str:
    """The case id a volume file or DICOM folder stands for (see the module's rules)."""
    name = path.name
    if path.is_file() or is_volume_file(path):
        name = name[:len(name) - len(compound_suffix(path))]
    return name[:-len(_CHANNEL_TAG)] if name.endswith(_CHANNEL_TAG) else name


def import_folder(project, images_dir: str | Path, labels_dir: str | Path | None = None, *,
                  modality: str = "MR", pattern: str = "*", split: str | None = None,
                  copy: bool = False, progress: ImportProgress | None = None) -> ImportReport:
    """Add every volume of ``images_dir`` to ``project``, with gold labels from ``labels_dir``.

    Args:
        project: the ``Project``.
        images_dir: folder of image files (and/or DICOM series sub-folders).
        labels_dir: folder of label files matched by name, or None.
        modality: recorded on every case ("MR", "CT").
        pattern: a glob selecting image names in ``images_dir`` (``"*.nii.gz"``).
        split: the split of every case; by default "labelled" for cases with a label and
            "unlabelled" for the others.
        copy: copy the images into the project instead of referencing them.
        progress: called after each case.

    Returns:
        What was added, what was already there, and what was refused: a case whose image or
        label cannot be read or holds bad voxels is left out (nothing of it added) and listed
        with its reason in ``refused``; the other cases are imported.

    Raises:
        ProjectError: a folder is missing or holds no volume, two labels claim one case, two
            images give one case id, or a label's grid differs from its image's (checked on
            the headers of all pairs before anything is added).
    """
    images_dir = _existing_folder(images_dir, "images")
    images = _find_images(images_dir, pattern)
    labels: dict[str, Path] = {}
    unmatched: list[Path] = []
    if labels_dir is not None:
        labels_dir = _existing_folder(labels_dir, "labels")
        labels, unmatched = _match_labels(labels_dir, images)
        if labels_dir == images_dir:
            images = {case_id: path for case_id, path in images.items()
                      if path not in labels.values()}
            unmatched = []  # in a shared folder, every unmatched file is simply an image
    if not images:
        hint = ("; for the LA benchmark layout use --la-h5 ROOT --list FILE --labelled N"
                if _looks_like_la(images_dir) else "")
        raise ProjectError(f"{images_dir}: no volumes found (pattern {pattern!r}){hint}")
    _check_label_grids(labels, _header_grids({case_id: images[case_id] for case_id in labels}))
    report = ImportReport(unmatched_labels=unmatched)
    for done, (case_id, image) in enumerate(images.items(), start=1):
        case_split = split or ("labelled" if case_id in labels else "unlabelled")
        try:
            _import_case(project, case_id, image, labels.get(case_id), modality, case_split,
                         copy, report)
        except VolumeError as error:
            report.refused.append(RefusedFile(case_id, error.path or image, str(error)))
        if progress is not None:
            progress(done, len(images), case_id)
    return report


def _import_case(project, case_id, image, label, modality, split, copy, report) -> None:
    existed = project.has_case(case_id)
    # Image and label are read whole and checked before anything of the case is added.
    volume = None if existed else read_volume(image)
    grid = project.case(case_id).geometry if existed else volume.geometry
    gold = read_label(label, like=grid) if label is not None else None
    case = project.add_case(case_id, image, modality=modality, split=split, copy=copy,
                            volume=volume)
    (report.already_present if existed else report.added).append(case.id)
    if gold is not None and project.latest_label(case_id, kinds="gold") is None:
        project.save_label(case_id, gold, "gold", note=f"imported from {label}")
        report.gold_added.append(case_id)


def _existing_folder(folder: str | Path, what: str) -> Path:
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise ProjectError(f"{folder}: {what} folder does not exist")
    return folder


def _find_images(folder: Path, pattern: str) -> dict[str, Path]:
    """Case id → image, in name order; DICOM series sub-folders included."""
    images: dict[str, Path] = {}
    for path in sorted(folder.glob(pattern)):
        if path.name.startswith("."):
            continue
        if not (path.is_file() and is_volume_file(path)) and not _is_dicom_folder(path):
            continue
        case_id = case_id_of(path)
        if case_id in images:
            raise ProjectError(f"{folder}: {images[case_id].name} and {path.name} both give "
                               f"case id {case_id!r}; keep one or import them separately")
        images[case_id] = path
    return images


def _looks_like_la(folder: Path) -> bool:
    return (folder / LA_TRAINING_FOLDER).is_dir() or any(folder.glob(f"*/{LA_CASE_FILE}"))


def _is_dicom_folder(path: Path) -> bool:
    if not path.is_dir():
        return False
    try:
        return bool(list_dicom_series(path))
    except VolumeError:
        return False


def _match_labels(folder: Path, images: dict[str, Path]) -> tuple[dict[str, Path], list[Path]]:
    """Case id → label file, and the label files that matched no image."""
    labels: dict[str, Path] = {}
    unmatched: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not (path.is_file() and is_volume_file(path)):
            continue
        case_id = _case_of_label(path, images)
        if case_id is None:
            unmatched.append(path)
            continue
        if case_id in labels:
            raise ProjectError(f"{folder}: {labels[case_id].name} and {path.name} are both "
                               f"labels of case {case_id!r}; keep one")
        labels[case_id] = path
    return labels, unmatched


def _case_of_label(path: Path, images: dict[str, Path]) -> str | None:
    """The case whose label ``path`` is, or None (an image is never its own label)."""
    label_id = case_id_of(path)
    candidates = [label_id] + [label_id[:-len(suffix)] for suffix in LABEL_SUFFIXES
                               if label_id.endswith(suffix)]
    for case_id in candidates:
        if case_id in images and images[case_id] != path:
            return case_id
    return None


def _header_grids(images: dict[str, Path]) -> dict:
    """Case id → image grid from the header, for the images whose header can be read."""
    grids = {}
    for case_id, path in images.items():
        try:
            grids[case_id] = read_geometry(path)
        except VolumeError:
            pass  # the case is refused, with this reason, when it is imported
    return grids


def _check_label_grids(labels: dict[str, Path], geometries: dict) -> None:
    """Refuse the import up front when a label's header puts it on another grid than its image.

    Pairs with an unreadable header are left to the full read, which refuses that case alone.
    """
    for case_id, label in labels.items():
        try:
            label_grid = read_geometry(label)
        except VolumeError:
            continue
        if case_id in geometries and not label_grid.matches(geometries[case_id]):
            raise ProjectError(f"{label}: label does not lie on the grid of its image "
                               f"(case {case_id!r}): "
                               f"{geometries[case_id].describe_difference(label_grid)} "
                               "(label vs image); nothing was imported")
