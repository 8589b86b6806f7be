"""Import volumes a user picks (files, folders, DICOM series folders) case by case, cancellable.

``project.import_folder`` owns the rules (case ids, labels matched by name, every voxel checked,
a refused file leaves its case out); this module turns a user's picks into one import per case,
so that a face can show progress after each case and stop between two:

- a **file** is a case; its label is the file beside it named like it plus a label suffix
  (``case.nii.gz`` + ``case_label.nii.gz``, ``_seg``, ``_mask``... ``project.LABEL_SUFFIXES``);
  a picked file that is such a label of another picked or neighbouring volume is not a case;
- a **folder** holds cases: its volume files and DICOM series sub-folders, labels beside them
  (as for files) or, when it has one, in its ``labels/`` sub-folder, matched by name
  (``labels/case.nii.gz`` or ``labels/case_label.nii.gz``);
- a folder that is itself a **DICOM series** is one case named like the folder.

Cases already in the project are left as they are; cancelling keeps the cases imported so far.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import Cancelled, ProjectError, VolumeError

#: Sub-folders of a picked folder that hold its labels.
LABEL_FOLDERS: tuple[str, ...] = ("labels", "labelsTr")


@dataclass(frozen=True)
class ImportItem:
    """One case to import: its image, and where its label may lie."""

    case_id: str
    image: Path
    labels_dir: Path | None


@dataclass(frozen=True)
class ImportStep:
    """Progress: ``done`` of ``total`` cases handled, the last one ``case_id``."""

    done: int
    total: int
    case_id: str


def plan_import(paths: Sequence[str | Path]) -> list[ImportItem]:
    """The cases the picked files and folders stand for, in the order picked (names sorted).

    Raises:
        ProjectError: nothing picked, a path that does not exist, or no volume found at all.
    """
    if not paths:
        raise ProjectError("nothing to import: choose volume files or a folder")
    items: dict[Path, ImportItem] = {}
    for path in (Path(p).expanduser().resolve() for p in paths):
        if not path.exists():
            raise ProjectError(f"{path}: no such file or folder")
        for item in _items_of(path):
            items.setdefault(item.image, item)
    if not items:
        shown = ", ".join(str(Path(p)) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        raise ProjectError(f"{shown}: no volumes found (NIfTI, NRRD, MetaImage, LA .h5 files or DICOM series folders)")
    return list(items.values())


def iter_import(project, items: Sequence[ImportItem], *, modality: str = "MR", copy: bool = True,
                should_stop: Callable[[], bool] | None = None) -> Generator:
    """Import ``items`` one case at a time: yields an ``ImportStep`` after each, returns the ``ImportReport``.

    A case whose files are refused (unreadable, NaN voxels, a label on another grid) is listed
    in ``report.refused`` and the others go on.

    Raises:
        Cancelled: ``should_stop()`` said so between two cases (the cases before it stay imported).
    """
    from ..project import ImportReport, RefusedFile, import_folder

    report = ImportReport()
    for done, item in enumerate(items, start=1):
        if should_stop is not None and should_stop():
            raise Cancelled(f"import cancelled after {done - 1} of {len(items)} cases; those stay in the project")
        try:
            part = import_folder(project, item.image.parent, item.labels_dir, modality=modality, copy=copy,
                                 pattern=glob.escape(item.image.name))
        except (ProjectError, VolumeError) as error:
            report.refused.append(RefusedFile(item.case_id, item.image, str(error)))
        else:
            _merge(report, part)
        yield ImportStep(done, len(items), item.case_id)
    return report


def _merge(report, part) -> None:
    # Not "unmatched_labels": a one-case import calls every other case's label unmatched.
    for name in ("added", "already_present", "gold_added", "refused"):
        getattr(report, name).extend(getattr(part, name))


def _items_of(path: Path) -> list[ImportItem]:
    if path.is_file():
        if not _is_volume_file(path) or _is_label_beside_its_image(path):
            return []
        return [_item(path, path.parent)]
    if not any(_is_volume_file(child) for child in path.iterdir()) and _is_dicom_series(path):
        return [_item(path, None)]
    labels_dir = next((path / name for name in LABEL_FOLDERS if (path / name).is_dir()), path)
    items = []
    for child in sorted(path.iterdir()):
        if child.name.startswith(".") or child == labels_dir:
            continue
        if child.is_file() and _is_volume_file(child) and not _is_label_beside_its_image(child):
            items.append(_item(child, labels_dir))
        elif child.is_dir() and _is_dicom_series(child):
            items.append(_item(child, labels_dir))
    return items


def _item(image: Path, labels_dir: Path | None) -> ImportItem:
    from ..project import case_id_of
    return ImportItem(case_id_of(image), image, labels_dir)


def _is_volume_file(path: Path) -> bool:
    from ..io import SUFFIX_FORMATS
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in SUFFIX_FORMATS if suffix != ".dcm")


def _is_label_beside_its_image(path: Path) -> bool:
    """``case_label.nii.gz`` when a volume of case ``case`` lies in the same folder."""
    from ..project import LABEL_SUFFIXES, case_id_of

    own_id = case_id_of(path)
    image_ids = [own_id[:-len(suffix)] for suffix in LABEL_SUFFIXES if own_id.endswith(suffix)]
    if not image_ids:
        return False
    return any(case_id_of(other) in image_ids for other in path.parent.iterdir()
               if other != path and other.is_file() and _is_volume_file(other))


def _is_dicom_series(path: Path) -> bool:
    from ..io import list_dicom_series
    try:
        return bool(list_dicom_series(path))
    except VolumeError:
        return False


__all__ = ["LABEL_FOLDERS", "ImportItem", "ImportStep", "iter_import", "plan_import"]
