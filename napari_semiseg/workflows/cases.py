"""Which cases a training run uses, and what a case is measured against.

One rule for both faces (``semiseg train`` and the Fine-tune panel):

- labelled: the cases named, else every case with a gold or corrected label version
  (``project.GOLD_KINDS``; the newest one is trained on) outside splits "validation" and "test";
  ``labelled_count`` keeps the first N (the LA protocol), the others then count as unlabelled.
- validation (never trained on, not even as unlabelled): the cases named; else, when asked,
  the last ``validation_count`` labelled cases; else the cases of split "validation" that have
  a reference. Nothing is carved out silently: a clinician says which cases validate (their
  split), and a model's validation Dice then measures the same cases from one version to the next.
- unlabelled: the cases named, else every other case outside splits "validation" and "test"
  (none for a method that does not learn from unlabelled volumes).

A validation case's reference is its newest gold or corrected label, or the label its image
file carries (an LA ``mri_norm2.h5``), so held-out LA cases validate without becoming labelled.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ProjectError
from ..project import GOLD_KINDS

VALIDATION_SPLIT, TEST_SPLIT = "validation", "test"


@dataclass(frozen=True)
class CaseChoice:
    """The cases of a run and why the validation cases are those (recorded with the run)."""

    labeled: list[str]
    unlabeled: list[str]
    validation: list[str]
    validation_rule: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def choose_cases(project, request, uses_unlabeled: bool = True) -> CaseChoice:
    """Labelled, unlabelled and validation cases of ``request`` (a ``TrainRequest``; see above).

    Raises:
        ProjectError: an unknown case, a test case named, too few labelled cases, or a
            semi-supervised method with no unlabelled case.
    """
    splits = {case.id: case.split for case in project.cases()}
    validation, rule = _named_validation(project, splits, request)
    labelled = _labelled(project, splits, request, set(validation))
    if request.validation_count is not None and request.validation is None:
        count = request.validation_count
        _require(count < len(labelled), f"validation count {count} leaves no labelled case to train on "
                                        f"({len(labelled)} labelled)")
        validation, labelled = labelled[len(labelled) - count:] if count else [], labelled[:len(labelled) - count]
        rule = f"carved: the last {count} of the labelled cases" if count else "none: validation count 0"
    elif rule is None:
        validation = [c for c, split in splits.items() if split == VALIDATION_SPLIT and has_reference(project, c)]
        rule = ('the cases of split "validation"' if validation else
                'none: no case of split "validation" has a gold or corrected label')
    _require(bool(labelled), f"{project.root}: no labelled case to train on: fine-tuning needs at least one case "
                             "with a gold or corrected label (import labels, or save corrections first)")
    unlabelled = _unlabelled(project, splits, request, set(labelled) | set(validation)) if uses_unlabeled else []
    return CaseChoice(labelled, unlabelled, validation, rule)


def _named_validation(project, splits, request):
    if request.validation is None:
        return [], None
    _require(request.validation_count is None, "give the validation cases or a validation count, not both")
    names = _known(project, request.validation)
    test = [c for c in names if splits[c] == TEST_SPLIT]
    _require(not test, f"case {test[0]!r} is in the test split: it cannot validate" if test else "")
    for case_id in names:
        _require(has_reference(project, case_id), f"validation case {case_id!r} has no gold or corrected label, "
                                                  "and its image file carries none")
    return names, "named" if names else "none (no validation case named)"


def _labelled(project, splits, request, validation: set[str]) -> list[str]:
    if request.labelled is not None:
        names = _known(project, request.labelled)
        for case_id in names:
            _require(splits[case_id] != TEST_SPLIT, f"case {case_id!r} is in the test split: no training uses it")
            _require(case_id not in validation, f"case {case_id!r} validates this run: it cannot also train it")
            _require(project.latest_label(case_id, kinds=GOLD_KINDS) is not None,
                     f"case {case_id!r} has no gold or corrected label to train on")
    else:
        names = [c for c, split in splits.items() if split not in (TEST_SPLIT, VALIDATION_SPLIT)
                 and c not in validation and project.latest_label(c, kinds=GOLD_KINDS) is not None]
    if request.labelled_count is not None:
        _require(request.labelled_count <= len(names), f"labelled count {request.labelled_count}: the project has "
                                                       f"only {len(names)} cases with a gold or corrected label "
                                                       "(outside validation/test)")
        names = names[:request.labelled_count]
    return names


def _unlabelled(project, splits, request, taken: set[str]) -> list[str]:
    if request.unlabelled is not None:
        names = _known(project, request.unlabelled)
        for case_id in names:
            _require(splits[case_id] not in (TEST_SPLIT, VALIDATION_SPLIT) and case_id not in taken,
                     f"case {case_id!r} is labelled, validation or test: it cannot be an unlabelled case")
        return names
    return [c for c, split in splits.items() if split not in (TEST_SPLIT, VALIDATION_SPLIT) and c not in taken]


def _known(project, case_ids) -> list[str]:
    for case_id in case_ids:
        project.case(case_id)  # ProjectError names an unknown case
    return list(case_ids)


def has_reference(project, case_id: str) -> bool:
    """Whether a case can be measured: a gold or corrected label, or one its image file carries."""
    return project.latest_label(case_id, kinds=GOLD_KINDS) is not None or has_file_reference(project, case_id)


def has_file_reference(project, case_id: str) -> bool:
    """Whether the case's image file carries its own label (LA h5), read from the header only."""
    path = project.case(case_id).image_path
    if path.suffix.lower() not in (".h5", ".hdf5"):
        return False
    import h5py
    try:
        with h5py.File(path, "r") as handle:
            return "label" in handle
    except OSError:
        return False


def reference_of(project, case_id: str, volume=None) -> tuple[np.ndarray | None, str]:
    """A case's reference label and where it comes from, or (None, why there is none).

    The newest gold or corrected label version; else the label carried by the image file
    itself (the LA benchmark's ``mri_norm2.h5``: the held-out reference of an unlabelled
    case, which the project never stores as a version so that no training can use it).

    Args:
        volume: the case's image if already read (saves reading it again).
    """
    version = project.latest_label(case_id, kinds=GOLD_KINDS)
    if version is not None:
        return project.load_label(version.id), f"{version.kind} label version {version.id}"
    if volume is None:
        volume = project.load_image(case_id)
    if volume.label is not None:
        return np.asarray(volume.label), f"the label stored in {Path(project.case(case_id).image_path).name}"
    return None, "no gold or corrected label, and the image file carries none"


def data_spec(project, choice: CaseChoice):
    """The run's cases by file (what the trainer, or a child process, reads), label versions pinned."""
    from ..engine.training import data_spec_from_project

    spec = data_spec_from_project(project, choice.labeled, choice.unlabeled, [])
    return dataclasses.replace(spec, validation=tuple(_validation_spec(project, c) for c in choice.validation))


def _validation_spec(project, case_id: str):
    from ..engine.training import CaseSpec

    version = project.latest_label(case_id, kinds=GOLD_KINDS)
    image = str(project.case(case_id).image_path)
    if version is not None:
        return CaseSpec(case_id, image, str(version.path), version.id)
    return CaseSpec(case_id, image, image)  # the h5 file carries the label (checked by choose_cases)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ProjectError(message)
