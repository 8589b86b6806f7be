"""Per-case metric tables: means, a CSV file and a text table for the CLI."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_semiseg.io._atomic import atomic_path

from ._case import CaseMetrics, ClassMetrics, evaluate_case, nanmean_or_nan

CSV_COLUMNS = ("case", "label", "dice", "jaccard", "hd95", "asd", "hd95_mm", "asd_mm",
               "empty_prediction", "empty_reference")
_METRIC_NAMES = ("dice", "jaccard", "hd95", "asd", "hd95_mm", "asd_mm")


@dataclass(frozen=True)
class MeanMetrics:
    """Means over the cases of a table, for one class or for the case-level values.

    Attributes:
        label: the class averaged, or None for the case-level values (equal to class 1's for a
            binary segmentation).
        n_cases: cases averaged.
        dice, jaccard: mean overlap in 0..1 (flagged cases included, as the papers do).
        hd95, asd: mean distances in voxels over the cases where they are defined (NaN
            distances of empty references are skipped).
        hd95_mm, asd_mm: the same in mm; None unless every case had a spacing.
        n_empty_prediction, n_empty_reference: how many cases carry each flag.
    """

    label: int | None
    n_cases: int
    dice: float
    jaccard: float
    hd95: float
    asd: float
    hd95_mm: float | None
    asd_mm: float | None
    n_empty_prediction: int
    n_empty_reference: int


def _mean_of(rows: Sequence[CaseMetrics | ClassMetrics], label: int | None) -> MeanMetrics:
    def mean(name: str) -> float | None:
        values = [getattr(row, name) for row in rows]
        if name.endswith("_mm") and (not values or any(v is None for v in values)):
            return None
        return nanmean_or_nan(values)

    return MeanMetrics(label=label, n_cases=len(rows),
                       **{name: mean(name) for name in _METRIC_NAMES},
                       n_empty_prediction=sum(row.empty_prediction for row in rows),
                       n_empty_reference=sum(row.empty_reference for row in rows))


@dataclass
class MetricsTable:
    """One CaseMetrics per case, in the order they were evaluated.

    Attributes:
        rows: the per-case metrics.
    """

    rows: list[CaseMetrics] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[CaseMetrics]:
        return iter(self.rows)

    def labels(self) -> tuple[int, ...]:
        """Every class scored in some case, sorted."""
        return tuple(sorted({m.label for row in self.rows for m in row.per_class}))

    def mean(self, label: int | None = None) -> MeanMetrics:
        """Means over the cases: of the case-level values, or of class ``label`` where scored."""
        if label is None:
            return _mean_of(self.rows, None)
        return _mean_of([m for row in self.rows for m in row.per_class if m.label == label], label)

    def to_csv(self, path: str | Path) -> Path:
        """Write the table as CSV, atomically; return the path.

        One row per case and class (columns :data:`CSV_COLUMNS`; fractions, not percent;
        distances in voxels, then mm, empty when no spacing; NaN as ``nan``; flags as 0/1),
        then one ``mean`` row per class, whose flag columns count the flagged cases.
        """
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for row in self.rows:
                for metrics in row.per_class:
                    writer.writerow(_csv_row(row.case_id, metrics.label, metrics,
                                             int(metrics.empty_prediction), int(metrics.empty_reference)))
            for label in self.labels():
                mean = self.mean(label)
                writer.writerow(_csv_row("mean", label, mean, mean.n_empty_prediction,
                                         mean.n_empty_reference))
        return path

    def format_table(self) -> str:
        """A fixed-width text table for the terminal: per-case rows, then the mean.

        Columns: case, Dice %, Jaccard %, 95HD, ASD (voxels) and, when any case had a spacing,
        95HD mm and ASD mm; a last column names the flags. With several classes each case has
        one row per class, ``case [label]``.
        """
        with_mm = any(row.spacing is not None for row in self.rows)
        multi_class = len(self.labels()) > 1
        header = ["case", "Dice %", "Jaccard %", "95HD", "ASD"] + (["95HD mm", "ASD mm"] if with_mm else [])
        lines = []
        for row in self.rows:
            for metrics in (row.per_class if multi_class else (row,)):
                name = f"{row.case_id} [{metrics.label}]" if multi_class else str(row.case_id)
                lines.append(_text_row(name, metrics, with_mm) + [_flags(metrics)])
        means = [(f"mean [{label}]", self.mean(label)) for label in self.labels()] if multi_class else []
        means.append(("mean", self.mean()))
        footer = [_text_row(name, mean, with_mm) + [_mean_flags(mean)] for name, mean in means]
        return _layout(header + ["flags"], lines, footer)


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _csv_row(case: str | None, label: int, metrics, flag_prediction: int, flag_reference: int) -> list:
    return [case, label, *(_csv_number(getattr(metrics, name)) for name in _METRIC_NAMES),
            flag_prediction, flag_reference]


def _text_number(value: float | None, scale: float = 1.0) -> str:
    if value is None:
        return ""
    return "n/a" if math.isnan(value) else f"{value * scale:.2f}"


def _text_row(name: str, metrics, with_mm: bool) -> list[str]:
    cells = [name, _text_number(metrics.dice, 100), _text_number(metrics.jaccard, 100),
             _text_number(metrics.hd95), _text_number(metrics.asd)]
    if with_mm:
        cells += [_text_number(metrics.hd95_mm), _text_number(metrics.asd_mm)]
    return cells


def _flags(metrics: CaseMetrics | ClassMetrics) -> str:
    flags = (["empty prediction (scored 0)"] if metrics.empty_prediction else []) + \
        (["empty reference"] if metrics.empty_reference else [])
    return ", ".join(flags)


def _mean_flags(mean: MeanMetrics) -> str:
    flags = ([f"{mean.n_empty_prediction} empty prediction(s)"] if mean.n_empty_prediction else []) + \
        ([f"{mean.n_empty_reference} empty reference(s)"] if mean.n_empty_reference else [])
    return f"n={mean.n_cases}" + "".join(f", {flag}" for flag in flags)


def _layout(header: list[str], lines: list[list[str]], footer: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *lines, *footer]) for i in range(len(header))]

    def render(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1])]
        return "  ".join(cells + [row[-1]]).rstrip()

    rule = "-" * len(render(header))
    return "\n".join([render(header), rule, *map(render, lines), rule, *map(render, footer)])


def evaluate_cases(cases: Iterable[tuple[str, np.ndarray, np.ndarray, Sequence[float] | None]],
                   classes: Sequence[int] | None = None) -> MetricsTable:
    """Score many cases; the iterable is consumed one case at a time (volumes can stream).

    Args:
        cases: (case_id, prediction, reference, spacing) per case; arrays (z, y, x) label
            maps, spacing (z, y, x) in mm or None.
        classes: foreground labels to score in every case; None = those present per case.

    Returns:
        MetricsTable with one CaseMetrics per case.
    """
    return MetricsTable([evaluate_case(prediction, reference, spacing, classes, case_id=case_id)
                         for case_id, prediction, reference, spacing in cases])


def write_csv(path: str | Path, table: MetricsTable) -> Path:
    """Write ``table`` to ``path`` as CSV, atomically (see :meth:`MetricsTable.to_csv`)."""
    return table.to_csv(path)
