"""Moving cases between splits, in the words a user has: train, validation, test.

The project keeps four splits (``project.SPLITS``): "labelled", "unlabelled", "validation",
"test". Training takes its cases from the first two, and which of them a case belongs to follows
its labels (``workflows.cases``: labelled = a gold or corrected label version). So "train" is no
split of its own: a case sent to train goes to "labelled" when it has a gold or corrected label,
else to "unlabelled". The project's own names are accepted too.

A case sent to "validation" without a reference (a gold or corrected label, or the label an LA
h5 file carries) is moved, with a note: no run can measure it until it has one.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ProjectError
from ..project import GOLD_KINDS, SPLITS
from .cases import VALIDATION_SPLIT, has_reference

TRAIN = "train"

#: What a user may ask for: "train" and the project's own split names.
SPLIT_CHOICES: tuple[str, ...] = (TRAIN, *SPLITS)


@dataclass(frozen=True)
class SplitChange:
    """One case moved: from which split to which, and a note when the move needs more."""

    case_id: str
    before: str
    after: str
    note: str = ""


def split_for(project, case_id: str, wanted: str) -> str:
    """The project split that ``wanted`` (one of ``SPLIT_CHOICES``) means for this case."""
    if wanted not in SPLIT_CHOICES:
        raise ProjectError(f"unknown split {wanted!r}; use one of {', '.join(SPLIT_CHOICES)}")
    if wanted != TRAIN:
        return wanted
    return "labelled" if project.latest_label(case_id, kinds=GOLD_KINDS) is not None else "unlabelled"


def move_cases(project, case_ids, wanted: str) -> list[SplitChange]:
    """Put every case into the split ``wanted`` stands for; all ids are checked before any moves.

    Raises:
        ProjectError: an unknown case (named) or split; nothing is moved then.
    """
    before = {case_id: project.case(case_id).split for case_id in case_ids}
    targets = {case_id: split_for(project, case_id, wanted) for case_id in case_ids}
    changes = []
    for case_id, split in targets.items():
        project.set_split(case_id, split)
        changes.append(SplitChange(case_id, before[case_id], split, _note(project, case_id, split)))
    return changes


def _note(project, case_id: str, split: str) -> str:
    if split == VALIDATION_SPLIT and not has_reference(project, case_id):
        return "no gold or corrected label yet: no run can validate on it until it has one"
    return ""


__all__ = ["SPLIT_CHOICES", "TRAIN", "SplitChange", "move_cases", "split_for"]
