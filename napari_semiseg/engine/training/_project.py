"""The trainer's only contact with a project: picking its cases, registering the result.

Kept in this one module so that the rest of the trainer works without any project (scripts,
benchmarks, tests): ``data_spec_from_project`` turns project cases into file-based
``CaseSpec``s (the newest gold or corrected label of each labelled case, pinned by version),
and ``register_run_in_project`` keeps a finished or stopped run as a new model version.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._config import CaseSpec, DataSpec, TrainingError
from ._loop import TrainResult

#: Label kinds a supervised loss may learn from: imported ground truth and clinicians' corrections.
TRAINING_LABEL_KINDS = ("gold", "corrected")


def _labelled_spec(project, case_id: str, kinds: Sequence[str]) -> CaseSpec:
    version = project.latest_label(case_id, kinds=tuple(kinds))
    if version is None:
        raise TrainingError(f"case {case_id} has no {' or '.join(kinds)} label to train or validate on")
    return CaseSpec(case_id, str(project.case(case_id).image_path), str(version.path), version.id)


def data_spec_from_project(project, labeled: Sequence[str] | None = None, unlabeled: Sequence[str] | None = None,
                           validation: Sequence[str] | None = None, *,
                           label_kinds: Sequence[str] = TRAINING_LABEL_KINDS) -> DataSpec:
    """The cases of a run, by file, from a project.

    Args:
        project: an open ``napari_semiseg.project.Project``.
        labeled, unlabeled, validation: case ids; None takes the project's cases of split
            "labelled", "unlabelled" and "validation" respectively ("test" is never used).
        label_kinds: which label versions count as training labels (the newest one is taken
            and pinned by its version id, so later edits do not change a running training).

    Raises:
        TrainingError: a labelled or validation case has no such label.
    """
    def ids(given, split):
        return list(given) if given is not None else project.case_ids(split)

    return DataSpec(
        labeled=tuple(_labelled_spec(project, c, label_kinds) for c in ids(labeled, "labelled")),
        unlabeled=tuple(CaseSpec(c, str(project.case(c).image_path)) for c in ids(unlabeled, "unlabelled")),
        validation=tuple(_labelled_spec(project, c, label_kinds) for c in ids(validation, "validation")))


def register_run_in_project(project, result: TrainResult, *, parent_id: int | None = None,
                            activate: bool = True, name: str | None = None):
    """Keep a run's model file as a new model version of ``project``.

    Args:
        project: an open ``Project``.
        result: what ``train`` returned (or ``TrainResult.from_run_dir`` for a child's run).
        parent_id: the model version it was fine-tuned from; default ``config.parent_model_id``.
        activate: make it the active model.
        name: a human name (the card's by default).

    Returns:
        The new ``ModelVersion`` (config, validation metrics and parent recorded).
    """
    if result.model is None or not result.model.is_file():
        raise TrainingError(f"{result.run_dir}: the run left no model file to register")
    config = result.config
    metrics = {**result.metrics, "status": result.status}
    return project.register_model(config.card.to_dict(), result.model,
                                  parent_id=config.parent_model_id if parent_id is None else parent_id,
                                  method=config.method, config=config.to_dict(), metrics=metrics,
                                  activate=activate, name=name)


__all__ = ["TRAINING_LABEL_KINDS", "data_spec_from_project", "register_run_in_project"]
