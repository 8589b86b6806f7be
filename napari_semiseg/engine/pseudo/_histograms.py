"""Distributions of soft labels per class, before and after correction (PLC-KD supp. Fig. 2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SoftLabelHistograms:
    """Counts of labelled voxels per soft-label bin, per gold class, before and after.

    Attributes:
        edges: (bins + 1,) bin edges over 0..1 (the last bin includes 1).
        before: {"foreground": counts, "background": counts} of the teacher's soft label.
        after: the same for the corrected soft label.
        wrong_before / wrong_after: labelled voxels on the wrong side of 0.5, per class.
    """

    edges: np.ndarray
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    wrong_before: dict[str, int]
    wrong_after: dict[str, int]


def _per_class(values: np.ndarray, gold: np.ndarray, mask: np.ndarray, edges: np.ndarray):
    counts, wrong = {}, {}
    for name, cls in (("foreground", True), ("background", False)):
        selected = values[mask & (gold == cls)]
        counts[name] = np.histogram(selected, bins=edges)[0]
        wrong[name] = int(np.count_nonzero(selected <= 0.5 if cls else selected >= 0.5))
    return counts, wrong


def soft_label_histograms(before: np.ndarray, after: np.ndarray, gold_label: np.ndarray,
                          gold_mask: np.ndarray | None = None, bins: int = 20
                          ) -> SoftLabelHistograms:
    """Histogram the foreground soft labels of the labelled voxels, per gold class.

    Args:
        before, after: (z, y, x) foreground probabilities before and after correction.
        gold_label: (z, y, x), > 0 = foreground.
        gold_mask: bool (z, y, x) labelled voxels; None: all.
        bins: equal bins over 0..1 (an even number puts 0.5 on an edge).
    """
    gold = np.asarray(gold_label) > 0
    mask = np.ones(gold.shape, bool) if gold_mask is None else np.asarray(gold_mask, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts_before, wrong_before = _per_class(np.asarray(before), gold, mask, edges)
    counts_after, wrong_after = _per_class(np.asarray(after), gold, mask, edges)
    return SoftLabelHistograms(edges, counts_before, counts_after, wrong_before, wrong_after)
