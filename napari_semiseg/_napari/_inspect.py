"""The soft-label inspection panel's logic, free of napari and Qt.

For the case open in the Project panel, a ``SoftLabelInspection`` holds what the panel shows:
the teacher's soft label (before correction), the corrected one (after) with the label
version it was corrected against, the voxels whose soft value crossed 0.5, and the
distribution of soft values per gold class before and after (the PLC-KD supplement's Fig. 2).
``load_inspection`` reads it from the project (nothing is recomputed); ``correct_steps`` is the
generator the panel's worker runs to correct the soft label (``engine.pseudo``'s
``correct_case_soft_label``, the reconstructed teacher team) and read the result back.

Values shown are the stored 8-bit ones. 255 is odd, so no stored value is exactly 0.5: a
voxel "crossed 0.5" exactly when before and after lie on different sides of it, which for
the teacher team is exactly the labelled voxels the teacher had on the wrong side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator

import numpy as np

from ._layers import labels_layer_data, layer_metadata, placement

BEFORE_SUFFIX = " soft label before correction"
AFTER_SUFFIX = " soft label after correction"
CROSSED_SUFFIX = " crossed 0.5"
#: Values of the crossed layer: raised above 0.5 (gold foreground) or lowered below it.
RAISED, LOWERED = 1, 2
CROSSED_COLOURS = {None: "transparent", 0: "transparent", RAISED: "#ffd030", LOWERED: "#30c0ff"}
#: Colormap of both soft labels (the Predict panel's): black at 0, so additive blending
#: leaves the image alone where the model is sure of background.
SOFT_LABEL_COLORMAP = "magma"
#: Equal bins over 0..1; an even count puts 0.5 on a bin edge.
HISTOGRAM_BINS = 20
CLASSES = ("foreground", "background")
#: What each step of the teacher team did, in a clinician's words (``CorrectionStep.name`` → words).
STEP_WORDS = {"false-pixel assistant": "pulled towards your label",
              "boundary assistant": "smoothed along its border",
              "similarity correction": "matched to similar-looking voxels",
              "final forcing": "set to your label's side"}


@dataclass(frozen=True)
class SoftLabelInspection:
    """A case's soft label before and (when corrected) after the teacher team.

    Attributes:
        case_id: the case.
        teacher: the teacher ``SoftLabel`` (what pseudo-labelling or a prediction stored).
        before: float32 (z, y, x) teacher foreground probability, 0..1.
        corrected: the corrected ``SoftLabel``, or None when the case has none yet.
        after: float32 (z, y, x) corrected foreground probability, or None.
        gold_version: the corrected (or gold) ``LabelVersion`` the correction used, or None.
        gold: bool (z, y, x) foreground of that version, or None.
        histograms: ``SoftLabelHistograms`` of before/after per gold class, or None.
    """

    case_id: str
    teacher: object
    before: np.ndarray
    corrected: object | None = None
    after: np.ndarray | None = None
    gold_version: object | None = None
    gold: np.ndarray | None = None
    histograms: object | None = None

    @property
    def has_correction(self) -> bool:
        return self.corrected is not None

    @property
    def crossed(self) -> np.ndarray | None:
        """uint8 (z, y, x): ``RAISED``/``LOWERED`` where the soft value crossed 0.5, else 0."""
        return None if self.after is None else crossed_labels(self.before, self.after)

    def class_rows(self) -> list[tuple[str, int, int, int, int]]:
        """Per gold class: (class, labelled voxels, wrong before, wrong after, crossed 0.5)."""
        if self.histograms is None:
            return []
        crossed = (self.before > 0.5) != (self.after > 0.5)
        rows = []
        for name in CLASSES:
            in_class = self.gold if name == "foreground" else ~self.gold
            rows.append((name, int(np.count_nonzero(in_class)), self.histograms.wrong_before[name],
                         self.histograms.wrong_after[name], int(np.count_nonzero(crossed & in_class))))
        return rows

    def step_summary(self) -> str:
        """"12 pulled towards your label (false-pixel assistant) · …" from the stored correction's
        record: how many voxels each step fixed, in plain words with the step's name; or ""."""
        steps = (self.corrected.details or {}).get("steps", []) if self.corrected is not None else []
        return " · ".join(f"{step['fixed']} {STEP_WORDS.get(step['name'], 'fixed')} ({step['name']})"
                          for step in steps)


def crossed_labels(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """uint8 (z, y, x): ``RAISED`` where ``before ≤ 0.5 < after``, ``LOWERED`` where ``after ≤ 0.5 < before``."""
    was_foreground, is_foreground = np.asarray(before) > 0.5, np.asarray(after) > 0.5
    crossed = np.zeros(was_foreground.shape, np.uint8)
    crossed[is_foreground & ~was_foreground] = RAISED
    crossed[was_foreground & ~is_foreground] = LOWERED
    return crossed


def foreground_probability(probabilities: np.ndarray) -> np.ndarray:
    """float32 (z, y, x) from a (K, z, y, x) soft label: channel 1 when binary, else 1 − background."""
    if probabilities.shape[0] == 2:
        return np.asarray(probabilities[1], np.float32)
    return (1.0 - probabilities[0]).astype(np.float32)


def _teacher_for(project, case_id: str, label_version_id: int | None):
    """The teacher soft label linked to ``label_version_id``, else the case's newest one."""
    if label_version_id is not None:
        linked = project.soft_label_for(label_version_id)
        if linked is not None and linked.kind == "teacher":
            return linked
    teachers = project.soft_labels(case_id, kind="teacher")
    return teachers[-1] if teachers else None


def load_inspection(project, case_id: str, label_version_id: int | None = None
                    ) -> SoftLabelInspection | None:
    """What the panel shows for a case, read from the project.

    The newest corrected soft label with its teacher and gold label when the case has one;
    otherwise the teacher soft label of ``label_version_id`` (the version open in the viewer),
    else the case's newest teacher soft label, alone.

    Returns:
        None when the case has no soft label at all.

    Raises:
        ProjectError: unknown case, or a soft-label or label file is missing or damaged.
    """
    corrected = project.soft_labels(case_id, kind="corrected")
    if corrected:
        return inspection_of_correction(project, corrected[-1])
    teacher = _teacher_for(project, case_id, label_version_id)
    if teacher is None:
        return None
    return SoftLabelInspection(case_id, teacher, foreground_probability(project.load_soft_label(teacher)))


def inspection_key(project, case_id: str, label_version_id: int | None = None) -> tuple | None:
    """(teacher id, corrected id or None) of what ``load_inspection`` would show; None for nothing.

    Read from the catalogue alone, without loading a volume: cheap enough to ask at every
    project change (a pseudo-labelling run makes one per case).
    """
    corrected = project.soft_labels(case_id, kind="corrected")
    if corrected:
        return (corrected[-1].parent_id, corrected[-1].id)
    teacher = _teacher_for(project, case_id, label_version_id)
    return None if teacher is None else (teacher.id, None)


def inspection_of_correction(project, corrected) -> SoftLabelInspection:
    """The inspection of a stored corrected ``SoftLabel`` (its parent is the teacher's)."""
    from ..engine.pseudo import soft_label_histograms

    teacher = project.soft_label(corrected.parent_id)
    before = foreground_probability(project.load_soft_label(teacher))
    after = foreground_probability(project.load_soft_label(corrected))
    gold_version = project.label_version(corrected.label_version_id)
    gold = project.load_label(gold_version.id) > 0
    histograms = soft_label_histograms(before, after, gold, bins=HISTOGRAM_BINS)
    return SoftLabelInspection(corrected.case_id, teacher, before, corrected, after, gold_version, gold,
                               histograms)


def correct_steps(project_root: str | Path, case_id: str,
                  should_stop: Callable[[], bool] | None = None) -> Generator:
    """Correct a case's soft label against its newest corrected label: the panel worker's generator.

    Args:
        project_root: the project folder (opened here, in the worker's thread).
        case_id: the case.
        should_stop: unused (one step); the worker's cancel switch.

    Yields:
        One status string.

    Returns:
        (``SoftLabelInspection`` of the stored correction, ``reused``: True when the same
        correction was already stored).

    Raises:
        CorrectionError: no corrected label, no teacher soft label, more than two classes.
    """
    from ..engine.pseudo import correct_case_soft_label
    from ..project import Project

    yield f"Correcting the soft label of {case_id}"
    with Project.open(project_root) as project:
        correction = correct_case_soft_label(project, case_id)
        return inspection_of_correction(project, correction.corrected), correction.reused


def inspection_layers(inspection: SoftLabelInspection, geometry) -> list[tuple]:
    """napari layer tuples on the case's grid: before, after and crossed (when corrected).

    Returns:
        ``[(before, kwargs, "image")]`` for a case without correction; otherwise also
        ``(after, kwargs, "image")`` and ``(crossed, kwargs, "labels")``. Soft labels are
        float32 0..1 (contrast limits 0..1). The teacher's is added hidden, as the Predict
        panel adds its soft label: it would tint the whole image the clinician corrects; the
        corrected one, which the clinician asked for, is shown, the two compared by toggling.
    """
    case_id = inspection.case_id
    teacher_extra = {"case": case_id, "soft_label": inspection.teacher.id, "model": inspection.teacher.model_id}
    before = _unit_image(inspection.before, geometry, f"{case_id}{BEFORE_SUFFIX}", teacher_extra, visible=False)
    if not inspection.has_correction:
        return [before]
    corrected_extra = {"case": case_id, "soft_label": inspection.corrected.id,
                       "label_version": inspection.gold_version.id}
    after = _unit_image(inspection.after, geometry, f"{case_id}{AFTER_SUFFIX}", corrected_extra)
    crossed = labels_layer_data(inspection.crossed, geometry, f"{case_id}{CROSSED_SUFFIX}", **corrected_extra)
    crossed[1].update(opacity=0.9, colormap=dict(CROSSED_COLOURS))
    return [before, after, crossed]


def _unit_image(array, geometry, name: str, extra: dict, visible: bool = True) -> tuple:
    kwargs = {"name": name, "metadata": layer_metadata(geometry, **extra), "contrast_limits": (0.0, 1.0),
              "colormap": SOFT_LABEL_COLORMAP, "blending": "additive", "opacity": 0.7, "visible": visible,
              **placement(geometry)}
    return (array, kwargs, "image")


__all__ = ["AFTER_SUFFIX", "BEFORE_SUFFIX", "CROSSED_SUFFIX", "HISTOGRAM_BINS", "LOWERED", "RAISED",
           "SoftLabelInspection", "correct_steps", "crossed_labels", "foreground_probability",
           "inspection_key", "inspection_layers", "inspection_of_correction", "load_inspection"]
