"""The Project panel's import and export, as generators its workers run (no napari, no Qt).

Each opens the project through a connection of its own (SQLite wants one per thread); the
panel refreshes its table when they are done.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from pathlib import Path


def import_steps(root: str | Path, paths: Sequence[str | Path], *, modality: str, copy: bool,
                 should_stop: Callable[[], bool]) -> Generator:
    """``workflows.imports``: the picked paths planned (DICOM folders scanned) and imported case by case.

    Yields ``ImportStep``s (the first one with 0 done, once the cases are known); returns the ``ImportReport``.
    """
    from ..project import Project
    from ..workflows.imports import ImportStep, iter_import, plan_import

    items = plan_import(paths)
    yield ImportStep(0, len(items), "")
    with Project.open(root) as project:
        return (yield from iter_import(project, items, modality=modality, copy=copy, should_stop=should_stop))


def export_steps(root: str | Path, case_id: str, folder: str | Path, *, label_format: str = "nifti",
                 segment_label: str | None = None) -> Generator:
    """``workflows.export.export_case`` of every kind, the label as ``label_format``; returns its ``ExportReport``."""
    from ..project import Project
    from ..workflows.export import export_case

    yield f"Exporting {case_id}"
    with Project.open(root) as project:
        return export_case(project, case_id, folder, label_format=label_format, segment_label=segment_label)


def describe_export(report) -> str:
    """"Exported case X into FOLDER: X_label.nii.gz, ..." and what the case had nothing for."""
    folder = next(iter(report.written.values())).parent
    text = f"Exported case {report.case_id} into {folder}: {', '.join(p.name for p in report.written.values())}."
    if report.missing:
        text += " Not exported: " + "; ".join(f"{kind} ({why})" for kind, why in report.missing.items()) + "."
    return text


def describe_import(report) -> str:
    """One status line for a finished import, refused files named."""
    text = f"Import: {report.summary()}."
    if report.refused:
        text += " Refused: " + "; ".join(refused.message for refused in report.refused[:3])
        text += " ..." if len(report.refused) > 3 else ""
    return text


__all__ = ["describe_export", "describe_import", "export_steps", "import_steps"]
