"""Results as NIfTI files named after their case or input: a prediction's, and a project case's.

One naming rule (``ResultNames``) for every face, on the image's grid (spacing, origin and
direction written unchanged):

- ``<name>_label.nii.gz``: the hard label (for a case: its newest label version, a correction,
  a prediction, gold...);
- ``<name>_softlabel.nii.gz``: the foreground probability (0..1);
- ``<name>_uncertainty.nii.gz``: the normalised entropy (0 sure, 1 undecided);
- ``<name>_mcvariance.nii.gz``: with MC dropout, the variance of the foreground probability.

``write_prediction`` writes a ``Prediction`` (``semiseg infer --out``); ``export_case`` writes
what a project holds for a case (the Project panel's Export, ``semiseg export``); for a case read
from DICOM it can write the label as a DICOM-SEG instead, ``<name>_label.dcm``, referencing the
source series (``export_dicom_seg``); soft label and uncertainty stay NIfTI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ProjectError

#: What can be exported, in the order the files are written; each is also the file's name ending.
EXPORT_KINDS: tuple[str, ...] = ("label", "softlabel", "uncertainty")
#: The format written: what every viewer and planning tool reads.
EXPORT_SUFFIX = ".nii.gz"
#: How a label can be written: NIfTI, or (for a case read from DICOM) a DICOM-SEG.
LABEL_FORMATS: tuple[str, ...] = ("nifti", "dicom-seg")


@dataclass(frozen=True)
class ResultNames:
    """The file names of one case's or input's results: ``<stem>_<kind>.nii.gz``."""

    stem: str

    @classmethod
    def suffixed(cls, stem: str) -> "ResultNames":
        return cls(stem)

    def path(self, folder: str | Path, kind: str) -> Path:
        return Path(folder) / f"{self.stem}_{kind}{EXPORT_SUFFIX}"


def write_prediction(out: str | Path, names: ResultNames, prediction) -> tuple[Path, ...]:
    """A ``Prediction``'s label, soft label, uncertainty (and MC variance) on its input's grid."""
    arrays = {"label": prediction.labels, "softlabel": prediction.foreground_probability(),
              "uncertainty": prediction.uncertainty}
    if prediction.mc_variance is not None:
        arrays["mcvariance"] = prediction.mc_variance
    return tuple(_write(names.path(out, kind), kind, array, prediction.geometry) for kind, array in arrays.items())


@dataclass
class ExportReport:
    """What ``export_case`` wrote.

    Attributes:
        case_id: the case.
        written: kind → file written.
        missing: kinds asked for that the case does not have yet, each with the reason.
    """

    case_id: str
    written: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for a status bar or a terminal."""
        text = f"case {self.case_id}: wrote {', '.join(p.name for p in self.written.values()) or 'nothing'}"
        if self.missing:
            text += "; not exported: " + "; ".join(f"{kind} ({why})" for kind, why in self.missing.items())
        return text


def export_path(folder: str | Path, case_id: str, kind: str) -> Path:
    """Where ``export_case`` writes ``kind`` of ``case_id`` in ``folder``."""
    return ResultNames.suffixed(case_id).path(folder, kind)


def export_case(project, case_id: str, folder: str | Path, kinds=EXPORT_KINDS,
                version_id: int | None = None, label_format: str = "nifti",
                segment_label: str | None = None) -> ExportReport:
    """Write ``kinds`` of a case into ``folder`` (created when missing), replacing earlier exports.

    Args:
        project: the open ``Project``.
        case_id: the case.
        folder: the destination folder.
        kinds: a subset of ``EXPORT_KINDS``.
        version_id: the label version to export (one of this case's); None: the newest. Its
            soft label is the one saved with it, else the case's newest.
        label_format: one of ``LABEL_FORMATS``; "dicom-seg" writes the label as
            ``<case>_label.dcm`` referencing the series the case was read from.
        segment_label: the DICOM-SEG's name for the labelled structure
            (``export_dicom_seg.DEFAULT_SEGMENT_LABEL`` when None).

    Returns:
        The ``ExportReport``: the files written, and the kinds the case has nothing for yet
        (no label version, or no soft label: predict or pseudo-label the case first).

    Raises:
        ProjectError: an unknown kind, case or label format, the case has none of the kinds asked
            for, or a DICOM-SEG of a case not read from DICOM ("case C: not read from DICOM;
            export NIfTI instead") or of a series that does not lie on the case's grid.
        VolumeError: a file could not be written (the destination is then untouched).
    """
    kinds = _checked_kinds(kinds)
    dicom_seg = _checked_label_format(label_format) == "dicom-seg"
    if dicom_seg:
        from .export_dicom_seg import require_dicom_case
        require_dicom_case(project, case_id)
    geometry = project.case(case_id).geometry
    report = ExportReport(case_id)
    version = _chosen_version(project, case_id, version_id)
    arrays = _case_arrays(project, case_id, kinds, report, version)
    if not arrays:
        raise ProjectError(f"case {case_id}: nothing to export ({'; '.join(report.missing.values())})")
    seg = None
    if dicom_seg and "label" in arrays:
        # Built before anything is written: a series that does not fit leaves the folder as it was.
        from .export_dicom_seg import build_dicom_seg
        seg = build_dicom_seg(project, case_id, version, arrays.pop("label"), segment_label)
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    if seg is not None:
        from .export_dicom_seg import dicom_seg_path, write_dicom_seg
        report.written["label"] = write_dicom_seg(seg, dicom_seg_path(folder, case_id))
    for kind, array in arrays.items():
        report.written[kind] = _write(export_path(folder, case_id, kind), kind, array, geometry)
    return report


def _checked_label_format(label_format: str) -> str:
    if label_format not in LABEL_FORMATS:
        raise ProjectError(f"cannot write a label as {label_format!r}: choose among {', '.join(LABEL_FORMATS)}")
    return label_format


def _checked_kinds(kinds) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(kinds))
    unknown = [kind for kind in kinds if kind not in EXPORT_KINDS]
    if unknown or not kinds:
        raise ProjectError(f"cannot export {', '.join(unknown) or 'nothing'}: choose among {', '.join(EXPORT_KINDS)}")
    return kinds


def _chosen_version(project, case_id: str, version_id: int | None):
    """The label version named (checked to be this case's), else the newest, else None."""
    if version_id is None:
        return project.latest_label(case_id)
    version = project.label_version(version_id)
    if version.case_id != case_id:
        raise ProjectError(f"label version {version_id} belongs to case {version.case_id!r}, not {case_id!r}")
    return version


def _case_arrays(project, case_id: str, kinds: tuple[str, ...], report: ExportReport,
                 version) -> dict[str, np.ndarray]:
    """Kind → (z, y, x) array of what the case has; what it lacks goes to ``report.missing``."""
    arrays: dict[str, np.ndarray] = {}
    if "label" in kinds:
        if version is None:
            report.missing["label"] = "the case has no label version yet"
        else:
            arrays["label"] = project.load_label(version.id)
    wanted_soft = [kind for kind in kinds if kind != "label"]
    if wanted_soft:
        linked = None if version is None else project.soft_label_for(version.id)
        soft_labels = [linked] if linked is not None else project.soft_labels(case_id)
        if not soft_labels:
            for kind in wanted_soft:
                report.missing[kind] = "the case has no soft label yet: predict it first"
        else:
            probabilities = project.load_soft_label(soft_labels[-1])
            if "softlabel" in kinds:
                arrays["softlabel"] = (1.0 - probabilities[0]).astype(np.float32)
            if "uncertainty" in kinds:
                arrays["uncertainty"] = _normalised_entropy(probabilities)
    return {kind: arrays[kind] for kind in kinds if kind in arrays}


def _normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """The uncertainty the Predict panel shows, from stored probabilities (engine's definition)."""
    import torch

    from ..engine.inference import normalised_entropy
    return normalised_entropy(torch.from_numpy(np.ascontiguousarray(probabilities, dtype=np.float32)))


def _write(path: Path, kind: str, array: np.ndarray, geometry) -> Path:
    from ..io import Volume, write_label, write_volume

    if kind == "label":
        return write_label(path, array, geometry)
    return write_volume(path, Volume(np.asarray(array, dtype=np.float32), geometry))


__all__ = ["EXPORT_KINDS", "EXPORT_SUFFIX", "LABEL_FORMATS", "ExportReport", "ResultNames", "export_case", "export_path", "write_prediction"]
