"""Paper-comparable segmentation metrics: Dice, Jaccard, 95HD, ASD with medpy's semantics.

numpy + scipy only (medpy itself is a test-only reference). Arrays are (z, y, x); distances
are in voxels unless a (z, y, x) spacing in mm is given. See ``_surface`` for the exact
definitions and ``_case`` for the empty-mask conventions (an empty prediction scores 0 on all
four metrics, as the papers do, and is flagged).

Example:
    >>> table = evaluate_cases((cid, pred, ref, spacing) for cid, pred, ref, spacing in cases)
    >>> print(table.format_table()); table.to_csv("metrics.csv")
"""

from ._case import CaseMetrics, ClassMetrics, evaluate_case
from ._inputs import MetricsInputError
from ._overlap import dice, jaccard
from ._surface import SurfaceDistances, asd, assd, hd95, surface_distances, surface_mask
from ._table import CSV_COLUMNS, MeanMetrics, MetricsTable, evaluate_cases, write_csv

__all__ = [
    "CSV_COLUMNS", "CaseMetrics", "ClassMetrics", "MeanMetrics", "MetricsInputError", "MetricsTable",
    "SurfaceDistances", "asd", "assd", "dice", "evaluate_case", "evaluate_cases", "hd95", "jaccard",
    "surface_distances", "surface_mask", "write_csv",
]
