"""Scoring one case: every foreground class of a label map against its reference.

Conventions, the same as the plain metric functions:

- **empty prediction, non-empty reference** (the object was missed): Dice = Jaccard = 95HD =
  ASD = 0, as the LA/pancreas papers' test scripts score it, and ``empty_prediction`` is set.
  The zero distances are optimistic; mirror them for comparable tables, read the flag.
- **empty reference, non-empty prediction** (a false detection of an absent class): Dice =
  Jaccard = 0 (what medpy gives), 95HD = ASD = NaN (no reference surface to measure to) and
  ``empty_reference`` is set. Means over cases skip the NaN distances and count the flags.
- **both empty** (nothing to find, nothing found): Dice = Jaccard = 1 (what medpy means to return),
  95HD = ASD = 0, both flags set. This happens only when a class is asked for explicitly, or
  for a case whose reference and prediction are both all background.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ._inputs import as_label_map, check_same_shape, normalise_spacing
from ._overlap import dice, jaccard
from ._surface import directed_distances, surfaces


@dataclass(frozen=True)
class ClassMetrics:
    """The metrics of one foreground class of one case.

    Attributes:
        label: the class index in the label maps (1 for a binary segmentation).
        dice, jaccard: overlap in 0..1.
        hd95, asd: 95th-percentile pooled Hausdorff distance and average surface distance
            (prediction → reference), in voxels; NaN when the reference is empty and the
            prediction is not.
        hd95_mm, asd_mm: the same in mm; None when no spacing was given.
        empty_prediction: the prediction holds no voxel of this class.
        empty_reference: the reference holds no voxel of this class.
    """

    label: int
    dice: float
    jaccard: float
    hd95: float
    asd: float
    hd95_mm: float | None = None
    asd_mm: float | None = None
    empty_prediction: bool = False
    empty_reference: bool = False


@dataclass(frozen=True)
class CaseMetrics:
    """The metrics of one case, over its foreground classes.

    For a binary segmentation (LA, pancreas) the case values are those of class 1. With several
    classes they are means over the classes (distances skip NaN), and ``per_class`` keeps each.

    Attributes:
        case_id: the case's name, or None.
        dice, jaccard: overlap in 0..1.
        hd95, asd: in voxels (NaN only when no class has a defined distance).
        hd95_mm, asd_mm: in mm; None when no spacing was given.
        empty_prediction: some class is absent from the prediction (scored by the convention).
        empty_reference: some class is absent from the reference.
        per_class: one ClassMetrics per scored class, in label order.
        spacing: the (z, y, x) voxel size in mm used for the mm values, or None.
    """

    case_id: str | None
    dice: float
    jaccard: float
    hd95: float
    asd: float
    hd95_mm: float | None
    asd_mm: float | None
    empty_prediction: bool
    empty_reference: bool
    per_class: tuple[ClassMetrics, ...]
    spacing: tuple[float, ...] | None = None

    def for_label(self, label: int) -> ClassMetrics:
        """The metrics of class ``label``; KeyError if it was not scored."""
        for metrics in self.per_class:
            if metrics.label == label:
                return metrics
        raise KeyError(f"class {label} was not scored for case {self.case_id!r}")


def nanmean_or_nan(values: Iterable[float]) -> float:
    """Mean of the non-NaN values; NaN (without numpy's warning) when there are none."""
    values = np.asarray(list(values), dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if values.size else float("nan")


def _empty_class_metrics(label: int, empty_prediction: bool, empty_reference: bool,
                         with_mm: bool) -> ClassMetrics:
    if empty_prediction:  # missed object scores 0 (papers); nothing-vs-nothing is perfect
        overlap, distance = (1.0, 0.0) if empty_reference else (0.0, 0.0)
    else:
        overlap, distance = 0.0, float("nan")
    mm = distance if with_mm else None
    return ClassMetrics(label, overlap, overlap, distance, distance, mm, mm,
                        empty_prediction, empty_reference)


def score_class(prediction: np.ndarray, reference: np.ndarray, label: int = 1,
                spacing: tuple[float, ...] | None = None) -> ClassMetrics:
    """All metrics of one binary pair, in voxels and (with ``spacing``) in mm.

    Args:
        prediction, reference: bool masks of one shape, (z, y, x).
        label: the class the masks stand for (recorded, not used).
        spacing: normalised (z, y, x) voxel size in mm, or None.
    """
    empty_prediction, empty_reference = not prediction.any(), not reference.any()
    if empty_prediction or empty_reference:
        return _empty_class_metrics(label, empty_prediction, empty_reference, spacing is not None)
    prediction_surface, reference_surface = surfaces(prediction, reference)
    in_voxels = directed_distances(prediction_surface, reference_surface, None)
    in_mm = None if spacing is None else directed_distances(prediction_surface, reference_surface,
                                                            spacing)
    return ClassMetrics(
        label=label, dice=dice(prediction, reference), jaccard=jaccard(prediction, reference),
        hd95=in_voxels.hd95(), asd=in_voxels.asd(),
        hd95_mm=None if in_mm is None else in_mm.hd95(), asd_mm=None if in_mm is None else in_mm.asd())


def _classes_to_score(prediction: np.ndarray, reference: np.ndarray,
                      classes: Sequence[int] | None) -> tuple[int, ...]:
    if classes is not None:
        return tuple(int(c) for c in classes)
    present = np.union1d(np.unique(prediction), np.unique(reference))
    return tuple(int(c) for c in present if c > 0) or (1,)


def _combine(case_id: str | None, per_class: tuple[ClassMetrics, ...],
             spacing: tuple[float, ...] | None) -> CaseMetrics:
    def mean_of(name: str) -> float | None:
        values = [getattr(m, name) for m in per_class]
        return None if any(v is None for v in values) else nanmean_or_nan(values)

    return CaseMetrics(
        case_id=case_id, dice=mean_of("dice"), jaccard=mean_of("jaccard"), hd95=mean_of("hd95"),
        asd=mean_of("asd"), hd95_mm=mean_of("hd95_mm"), asd_mm=mean_of("asd_mm"),
        empty_prediction=any(m.empty_prediction for m in per_class),
        empty_reference=any(m.empty_reference for m in per_class),
        per_class=per_class, spacing=spacing)


def evaluate_case(prediction: np.ndarray, reference: np.ndarray,
                  spacing: Sequence[float] | None = None, classes: Sequence[int] | None = None,
                  *, case_id: str | None = None) -> CaseMetrics:
    """Dice, Jaccard, 95HD and ASD of a predicted label map against its reference.

    Args:
        prediction, reference: integer label maps (z, y, x) of one shape, 0 = background
            (bool masks count as label 1).
        spacing: voxel size (z, y, x) in mm; when given, ``hd95_mm``/``asd_mm`` are filled too.
            The voxel-unit values are always computed (the papers' tables use them).
        classes: foreground labels to score; None scores every label > 0 present in either map
            (label 1 when both are all background).
        case_id: recorded in the result and named in error messages.

    Returns:
        CaseMetrics (see the module docstring for the empty-mask conventions).

    Raises:
        MetricsInputError: shapes differ, labels are not non-negative integers, bad spacing.
    """
    prediction = as_label_map(prediction, "prediction", case_id)
    reference = as_label_map(reference, "reference", case_id)
    check_same_shape(prediction, reference, case_id)
    spacing = normalise_spacing(spacing, prediction.ndim, case_id)
    per_class = tuple(score_class(prediction == label, reference == label, label, spacing)
                      for label in _classes_to_score(prediction, reference, classes))
    return _combine(case_id, per_class, spacing)
