"""The reference set's two fixed folds R1 and R2 (Algorithm 1, line 2).

The split is a pure function of the set of case ids and the seed: the ids are sorted first,
so neither the catalogue order nor the order they were given in changes which fold a case
is in, and a run can be repeated (or its record checked) from the seed alone. The folds
differ in size by at most one case, and they stay fixed for every generation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ._config import AtsoError

#: The names of the folds in the report (the paper's R^(1), R^(2)), and of the whole set.
FOLD_1, FOLD_2, ALL_FOLDS = "R1", "R2", "R"


@dataclass(frozen=True)
class Folds:
    """A split of the reference set.

    Attributes:
        first: R1, sorted case ids.
        second: R2, sorted case ids.
        seed: the seed that made it.
    """

    first: tuple[str, ...]
    second: tuple[str, ...]
    seed: int

    def cases(self, fold: str) -> tuple[str, ...]:
        """The case ids of ``"R1"``, ``"R2"`` or ``"R"`` (both, R1 first)."""
        if fold == FOLD_1:
            return self.first
        if fold == FOLD_2:
            return self.second
        if fold == ALL_FOLDS:
            return self.first + self.second
        raise AtsoError(f"unknown fold {fold!r}; use {FOLD_1}, {FOLD_2} or {ALL_FOLDS}")

    def fold_of(self, case_id: str) -> str:
        """``"R1"`` or ``"R2"``."""
        if case_id in self.first:
            return FOLD_1
        if case_id in self.second:
            return FOLD_2
        raise AtsoError(f"case {case_id!r} is in neither fold of the reference set")

    def to_dict(self) -> dict:
        return {"seed": self.seed, FOLD_1: list(self.first), FOLD_2: list(self.second)}


def split_folds(case_ids: Iterable[str], seed: int = 0) -> Folds:
    """Split the reference cases into two disjoint folds of (almost) equal size.

    Args:
        case_ids: the reference (unlabelled) cases; at least two, no repeats.
        seed: any integer; the same ids and seed always give the same folds.

    Raises:
        AtsoError: fewer than two cases, or a case named twice.
    """
    ids = sorted(str(c) for c in case_ids)
    if len(set(ids)) != len(ids):
        repeated = sorted({c for c in ids if ids.count(c) > 1})
        raise AtsoError(f"the reference set names case(s) {', '.join(repeated)} more than once")
    if len(ids) < 2:
        raise AtsoError(f"ATSO splits the reference (unlabelled) set into two folds, so it needs at least "
                        f"two unlabelled cases; the run has {len(ids)}")
    order = np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, 0xA750])).permutation(len(ids))
    half = (len(ids) + 1) // 2
    first = tuple(sorted(ids[i] for i in order[:half]))
    second = tuple(sorted(ids[i] for i in order[half:]))
    return Folds(first, second, int(seed))


__all__ = ["ALL_FOLDS", "FOLD_1", "FOLD_2", "Folds", "split_folds"]
