"""Import the LA benchmark layout: ``ROOT/<ID>/mri_norm2.h5`` and a list file of ids.

The first ``labeled`` ids of the list are the labelled cases: their h5 ``label`` becomes a
"gold" version and their split "labelled". The others are "unlabelled" and get **no** label
version: the benchmark's protocol forbids training on their labels, and a version in the
catalogue would be one query away from a training set. Evaluation does not need one either:
the h5 file still carries the reference, and ``project.load_image(case).label`` returns it.

Every new file is read whole and checked (complete, finite, real numbers) before its case is
added; a refused file leaves its case out, with the reason in the report, and the import goes
on with the others.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ProjectError, VolumeError
from ..io import la_case_paths, read_volume
from ._import_report import ImportProgress, ImportReport, RefusedFile


def import_la(project, root: str | Path, list_file: str | Path, labeled: int, *,
              modality: str = "MR", progress: ImportProgress | None = None) -> ImportReport:
    """Add the cases of an LA list file, the first ``labeled`` with their gold label.

    Args:
        project: the ``Project``.
        root: the LA folder (holding ``2018LA_Seg_Training Set``) or that folder itself.
        list_file: one case id per line, in the benchmark's order (e.g. ``train.list``).
        labeled: how many of the first ids are labelled (4, 8, 16 for 5 %, 10 %, 20 %).
        modality: recorded on every case.
        progress: called after each case.

    Returns:
        What was added, what was already there, and the refused files (a case whose file
        cannot be read or holds bad voxels is left out). Re-running with a larger ``labeled``
        adds the gold labels of the newly labelled cases.

    Raises:
        ProjectError: ``labeled`` is out of range, or a case beyond the first ``labeled``
            already has a gold label (the protocol would be broken).
        VolumeError: the root or the list is missing or unreadable, or a listed file is missing.
    """
    cases = la_case_paths(root, list_file)
    if not 0 <= labeled <= len(cases):
        raise ProjectError(f"{list_file}: --labelled {labeled} is outside 0..{len(cases)} "
                           f"(the list names {len(cases)} cases)")
    _refuse_gold_beyond(project, [case.case_id for case in cases[labeled:]], labeled)
    report = ImportReport()
    for index, case in enumerate(cases):
        try:
            if index < labeled:
                _import_labelled(project, case.case_id, case.path, modality, report)
            else:
                _import_unlabelled(project, case.case_id, case.path, modality, report)
        except VolumeError as error:
            report.refused.append(RefusedFile(case.case_id, error.path or case.path, str(error)))
        if progress is not None:
            progress(index + 1, len(cases), case.case_id)
    return report


def _import_labelled(project, case_id: str, path: Path, modality: str,
                     report: ImportReport) -> None:
    existed = project.has_case(case_id)
    if existed and project.latest_label(case_id, kinds="gold") is not None:
        report.already_present.append(case_id)
        return
    volume = read_volume(path)
    if volume.label is None:
        raise ProjectError(f"{path}: has no 'label' dataset, but case {case_id!r} is among "
                           "the labelled cases")
    project.add_case(case_id, path, modality=modality, split="labelled", volume=volume)
    if existed:
        project.set_split(case_id, "labelled")
    project.save_label(case_id, volume.label, "gold", note=f"imported from {path}")
    (report.already_present if existed else report.added).append(case_id)
    report.gold_added.append(case_id)


def _import_unlabelled(project, case_id: str, path: Path, modality: str,
                       report: ImportReport) -> None:
    if project.has_case(case_id):
        report.already_present.append(case_id)
        return
    project.add_case(case_id, path, modality=modality, split="unlabelled")
    report.added.append(case_id)


def _refuse_gold_beyond(project, unlabelled_ids: list[str], labeled: int) -> None:
    golden = [case_id for case_id in unlabelled_ids if project.has_case(case_id)
              and project.latest_label(case_id, kinds="gold") is not None]
    if golden:
        shown = ", ".join(golden[:5]) + (" ..." if len(golden) > 5 else "")
        raise ProjectError(f"{project.root}: {len(golden)} cases after the first {labeled} already "
                           f"have gold labels ({shown}); import with the --labelled used before, "
                           "or into a new project")
