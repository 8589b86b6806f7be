"""The interactive loop: a clinician corrected a case, so its stored soft label is corrected too.

When a clinician saves a "corrected" label for a case whose pseudo-label (or prediction) came
with a soft label, ``correct_case_soft_label`` runs the teacher team (RECONSTRUCTED, see
``engine.correction``) with the corrected label as gold on every voxel, and keeps the result as a
new "corrected" soft label linked to the corrected label version; the teacher's soft label is
kept as it was. A student distilling from the case then learns from soft labels that agree
with the clinician everywhere, while keeping the teacher's confidence where it was right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...project import LabelVersion, SoftLabel
from ..correction import CorrectionError, CorrectionParams, CorrectionResult, correct_soft_labels

#: Label kinds a soft label is corrected against, newest first.
from ...project import GOLD_KINDS  # noqa: E402 (the one definition of the label kinds)


@dataclass(frozen=True)
class CaseCorrection:
    """A case's soft label before and after the teacher team.

    Attributes:
        case_id: the case.
        label_version: the corrected (or gold) label version used as gold.
        original: the teacher's soft label that was corrected.
        corrected: the stored corrected soft label (an existing identical one is reused).
        before: float32 (z, y, x) teacher foreground probability (as stored).
        after: float32 (z, y, x) corrected foreground probability (before 8-bit storage;
            the stored one is within 1/510 and on the same side of 0.5).
        gold: bool (z, y, x) foreground of the label version.
        result: the correction's steps, crossed voxels and counts.
        reused: True when the corrected soft label was already stored.
    """

    case_id: str
    label_version: LabelVersion
    original: SoftLabel
    corrected: SoftLabel
    before: np.ndarray
    after: np.ndarray
    gold: np.ndarray
    result: CorrectionResult
    reused: bool

    @property
    def crossed(self) -> np.ndarray:
        """Bool (z, y, x): voxels whose soft label crossed 0.5."""
        return self.result.crossed


def _gold_version(project, case_id: str, label_version_id: int | None) -> LabelVersion:
    if label_version_id is not None:
        version = project.label_version(label_version_id)
        if version.case_id != case_id or version.kind not in GOLD_KINDS:
            raise CorrectionError(f"label version {label_version_id} is not a corrected or gold "
                                  f"label of case {case_id!r}")
        return version
    version = project.latest_label(case_id, kinds=GOLD_KINDS)
    if version is None:
        raise CorrectionError(f"case {case_id!r} has no corrected or gold label to correct its "
                              "soft label against; save a correction first")
    return version


def teacher_soft_label(project, case_id: str, version: LabelVersion) -> SoftLabel:
    """The teacher soft label a correction starts from.

    The one linked to the label the clinician corrected (following ``parent_id`` back from
    ``version``), else the case's newest teacher soft label.

    Raises:
        CorrectionError: the case has no teacher soft label.
    """
    parent_id = version.parent_id
    while parent_id is not None:
        parent = project.label_version(parent_id)
        linked = [s for s in project.soft_labels(case_id, kind="teacher")
                  if s.label_version_id == parent.id]
        if linked:
            return linked[-1]
        parent_id = parent.parent_id
    teachers = project.soft_labels(case_id, kind="teacher")
    if not teachers:
        raise CorrectionError(f"case {case_id!r} has no soft label to correct; run "
                              "pseudo-labelling (or a prediction) on it first")
    return teachers[-1]


def _existing(project, case_id: str, version: LabelVersion, original: SoftLabel,
              details: dict) -> SoftLabel | None:
    for soft in project.soft_labels(case_id, kind="corrected"):
        if (soft.label_version_id == version.id and soft.parent_id == original.id
                and soft.details.get("params") == details["params"]):
            return soft
    return None


def correct_case_soft_label(project, case_id: str, *, label_version_id: int | None = None,
                            params: CorrectionParams | None = None) -> CaseCorrection:
    """Correct a case's stored soft label against its corrected label, and keep the result.

    RECONSTRUCTED PLC-KD-style teacher team. The label version is gold on every voxel; the
    case's image feeds the similarity step.

    Args:
        project: an open ``Project``.
        case_id: the case.
        label_version_id: the corrected or gold label version; default the newest one.
        params: teacher-team parameters (defaults otherwise).

    Returns:
        A ``CaseCorrection`` with before/after soft labels and the crossed voxels. A new
        "corrected" soft label is stored (linked to the label version, ``parent_id`` the
        teacher's) unless the same correction is already stored.

    Raises:
        CorrectionError: no corrected/gold label, no teacher soft label, or a soft label with
            more than two classes (the reconstruction handles foreground vs background).
    """
    params = params or CorrectionParams()
    version = _gold_version(project, case_id, label_version_id)
    original = teacher_soft_label(project, case_id, version)
    if original.num_classes != 2:
        raise CorrectionError(f"soft label {original.id} of case {case_id!r} has "
                              f"{original.num_classes} classes; the teacher team corrects binary "
                              "(foreground/background) soft labels only")
    before = project.load_soft_label(original)[1]
    gold = project.load_label(version.id) > 0
    image = project.load_image(case_id).array
    result = correct_soft_labels(before, gold_mask=np.ones(gold.shape, bool), gold_label=gold,
                                 image=image, params=params)
    details = result.describe()
    stored = _existing(project, case_id, version, original, details)
    reused = stored is not None
    if not reused:
        stored = project.save_soft_label(case_id, result.corrected, label_version_id=version.id,
                                         model_id=original.model_id, kind="corrected",
                                         parent_id=original.id, details=details)
    return CaseCorrection(case_id, version, original, stored, before, result.corrected, gold,
                          result, reused)
