"""Which project cases an ATSO run uses, as what, and the references its diagnostic compares with.

- labelled set S: cases with a gold or corrected label version (outside validation and test),
  in catalogue order; their newest such version is trained on, pinned by its id.
- reference set R: the cases of split "unlabelled" without such a label; only their
  pseudo-labels are ever trained on.
- validation: the cases of split "validation" (never trained on); each model's validation
  Dice is the paper's test-set column, measured on a split that is not the test set.

The "lazy mimicking" diagnostic compares each pseudo-label with the case's reference: its
newest gold or corrected version if it has one, else the label its image file carries (the
LA benchmark's ``mri_norm2.h5`` keeps it for unlabelled cases too). That reference is read for
the Dice only; it never enters a training set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..training import CaseSpec, TRAINING_LABEL_KINDS, data_spec_from_project
from ._config import AtsoConfig, AtsoError


@dataclass(frozen=True)
class AtsoCases:
    """The cases of a run.

    Attributes:
        labelled: S, catalogue order.
        reference: R, catalogue order (after ``reference_limit``).
        validation: held-out cases with a reference (never trained on).
    """

    labelled: tuple[str, ...]
    reference: tuple[str, ...]
    validation: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"labelled": list(self.labelled), "reference": list(self.reference),
                "validation": list(self.validation)}


def _has_training_label(project, case_id: str) -> bool:
    return project.latest_label(case_id, kinds=TRAINING_LABEL_KINDS) is not None


def choose_cases(project, config: AtsoConfig) -> AtsoCases:
    """S, R and the validation cases of a run (see the module docstring).

    Cases named in ``config`` are taken as given (and checked); the others are chosen.

    Raises:
        AtsoError: no labelled case, a labelled case without a label, a reference case that
            has a training label, a case named twice or in the test split.
    """
    splits = {case.id: case.split for case in project.cases()}
    _check_known(project.root, splits, config)
    validation = list(config.validation) if config.validation is not None else \
        [c for c, split in splits.items() if split == "validation"]
    labelled = list(config.labelled) if config.labelled is not None else \
        [c for c, split in splits.items() if split not in ("test", "validation") and c not in validation
         and _has_training_label(project, c)]
    reference = list(config.reference) if config.reference is not None else \
        [c for c, split in splits.items() if split == "unlabelled" and c not in validation
         and c not in labelled and not _has_training_label(project, c)]
    if config.reference_limit is not None:
        reference = reference[:config.reference_limit]
    _check_choice(project, splits, labelled, reference, validation)
    return AtsoCases(tuple(labelled), tuple(reference), tuple(validation))


def _check_known(root, splits: dict, config: AtsoConfig) -> None:
    for part in ("labelled", "reference", "validation"):
        unknown = [c for c in getattr(config, part) or () if c not in splits]
        if unknown:
            raise AtsoError(f"{root}: no case {unknown[0]!r} (named as a {part} case)")


def _check_choice(project, splits: dict, labelled: list, reference: list, validation: list) -> None:
    root = project.root
    if not labelled:
        raise AtsoError(f"{root}: no case has a gold or corrected label: ATSO needs a labelled set to train M0")
    parts = {"labelled": labelled, "reference": reference, "validation": validation}
    seen: dict[str, str] = {}
    for part, ids in parts.items():
        for case_id in ids:
            if case_id in seen:
                raise AtsoError(f"{root}: case {case_id!r} is named both as a {seen[case_id]} and a {part} case")
            if splits[case_id] == "test":
                raise AtsoError(f"{root}: case {case_id!r} is in the test split, which no training touches")
            seen[case_id] = part
    missing = [c for c in labelled if not _has_training_label(project, c)]
    if missing:
        raise AtsoError(f"{root}: labelled case {missing[0]!r} has no gold or corrected label")
    leaking = [c for c in reference if _has_training_label(project, c)]
    if leaking:
        raise AtsoError(f"{root}: reference case {leaking[0]!r} has a gold or corrected label; put it in the "
                        "labelled set (ATSO trains on reference cases only through their pseudo-labels)")


def labelled_specs(project, case_ids: Sequence[str]) -> tuple[CaseSpec, ...]:
    """S by file: each case with its newest gold or corrected label, pinned by version."""
    return data_spec_from_project(project, list(case_ids), [], []).labeled


def pseudo_spec(project, case_id: str, label_version) -> CaseSpec:
    """A reference case with one of its pseudo-label versions as its training label."""
    return CaseSpec(case_id, str(project.case(case_id).image_path), str(label_version.path), label_version.id)


def validation_specs(project, case_ids: Sequence[str]) -> tuple[CaseSpec, ...]:
    """Validation cases by file: a gold or corrected version, else the image file's own label.

    Raises:
        AtsoError: a validation case has neither.
    """
    specs = []
    for case_id in case_ids:
        version = project.latest_label(case_id, kinds=TRAINING_LABEL_KINDS)
        image = str(project.case(case_id).image_path)
        if version is not None:
            specs.append(CaseSpec(case_id, image, str(version.path), version.id))
        elif project.load_image(case_id).label is not None:
            specs.append(CaseSpec(case_id, image, image))  # the file carries its label (LA h5)
        else:
            raise AtsoError(f"validation case {case_id!r} has no gold or corrected label, and its image file "
                            "carries none")
    return tuple(specs)


def reference_label(project, case_id: str) -> tuple[np.ndarray | None, str]:
    """(the case's reference label or None, where it comes from), for the Dice diagnostic only."""
    version = project.latest_label(case_id, kinds=TRAINING_LABEL_KINDS)
    if version is not None:
        return project.load_label(version.id), f"{version.kind} label version {version.id}"
    volume = project.load_image(case_id)
    if volume.label is not None:
        return np.asarray(volume.label), "held-out label of the image file"
    return None, "none"


__all__ = ["AtsoCases", "choose_cases", "labelled_specs", "pseudo_spec", "reference_label", "validation_specs"]
