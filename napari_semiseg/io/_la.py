"""The LA benchmark's folder layout: a root of case folders and a list file of case ids.

The layout of the UA-MT/SS-Net repositories is ``ROOT/2018LA_Seg_Training Set/<ID>/mri_norm2.h5``
with ``ROOT/train.list`` naming one ID per line, in the order the benchmark uses (labelled
cases = the first N lines). ``ROOT`` may also be the ``2018LA_Seg_Training Set`` folder itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ..errors import VolumeError

LA_CASE_FILE = "mri_norm2.h5"
LA_TRAINING_FOLDER = "2018LA_Seg_Training Set"


class LACase(NamedTuple):
    """One listed case: its id and the ``mri_norm2.h5`` file that holds it."""

    case_id: str
    path: Path


def read_case_list(list_file: str | Path) -> list[str]:
    """The case ids of a list file, in file order (blank lines and ``#`` comments skipped).

    Raises:
        VolumeError: the file is missing or unreadable, lists nothing, or lists an id twice.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise VolumeError(list_file, "case list file does not exist")
    try:
        lines = list_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise VolumeError(list_file, f"cannot be read as a list of case ids: {error}") from None
    ids = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not ids:
        raise VolumeError(list_file, "lists no case ids")
    duplicates = sorted({case_id for case_id in ids if ids.count(case_id) > 1})
    if duplicates:
        raise VolumeError(list_file, f"lists these ids more than once: {', '.join(duplicates)}")
    return ids


def la_case_paths(root: str | Path, list_file: str | Path) -> list[LACase]:
    """The ``mri_norm2.h5`` of every case in ``list_file``, in list order.

    Args:
        root: the LA folder (holding ``2018LA_Seg_Training Set``) or that folder itself.
        list_file: text file with one case id per line, e.g. ``train.list``.

    Returns:
        ``LACase(case_id, path)`` tuples in the order of the list.

    Raises:
        VolumeError: the root is missing, the list is unusable, or listed cases have no
            ``mri_norm2.h5`` (all missing ids are named, up to ten).
    """
    root = Path(root)
    if not root.is_dir():
        raise VolumeError(root, "LA root folder does not exist")
    case_root = root / LA_TRAINING_FOLDER if (root / LA_TRAINING_FOLDER).is_dir() else root
    cases = [LACase(case_id, case_root / case_id / LA_CASE_FILE)
             for case_id in read_case_list(list_file)]
    missing = [case.case_id for case in cases if not case.path.is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise VolumeError(case_root, f"{len(missing)} of the {len(cases)} cases listed in "
                          f"{list_file} have no <ID>/{LA_CASE_FILE} here: {shown}")
    return cases
