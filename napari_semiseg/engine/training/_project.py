"""The trainer's only contact with a project: picking its cases, registering the result.

Kept in this one module so that the rest of the trainer works without any project (scripts,
benchmarks, tests): ``data_spec_from_project`` turns project cases into file-based
``CaseSpec``s (the newest gold or corrected label of each labelled case, pinned by version),
and ``register_run_in_project`` keeps a finished or stopped run as a new model version
(its best validated weights by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ...errors import TrainingError
#: Label kinds a supervised loss may learn from: imported ground truth and clinicians' corrections.
from ...project import GOLD_KINDS as TRAINING_LABEL_KINDS
from ..data import CaseSpec, DataSpec
from ._checkpoint import BEST_MODEL_FILE, load_model_weights
from ._loop import TrainResult


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


#: Which weights of a run a model version keeps: the best validated ones, or the last step's.
KEPT_WEIGHTS = ("best", "last")
#: The metrics that describe one validation pass (those of the kept weights are recorded).
VALIDATION_METRICS = ("validation_dice", "validation_iteration", "validation_per_case", "validation_branch_dice")


def register_run_in_project(project, result: TrainResult, *, parent_id: int | None = None,
                            activate: bool = True, name: str | None = None, keep: str = "best"):
    """Keep a run's model file as a new model version of ``project``.

    Args:
        project: an open ``Project``.
        result: what ``train`` returned (or ``TrainResult.from_run_dir`` for a child's run).
        parent_id: the model version it was fine-tuned from; default ``config.parent_model_id``.
        activate: make it the active model.
        name: a human name (the card's by default).
        keep: ``"best"`` (default): the weights of the best validation Dice when the run
            validated (a run can end far below its best: selection on the validation split is
            the papers' protocol and what a clinician expects of the listed Dice); ``"last"``:
            the last step's. The metrics say which (``weights``, ``weights_iteration``), and
            ``validation_dice`` is that of the kept weights.

    Returns:
        The new ``ModelVersion`` (config, validation metrics and parent recorded).
    """
    if keep not in KEPT_WEIGHTS:
        raise TrainingError(f"keep must be one of {list(KEPT_WEIGHTS)}, got {keep!r}")
    if result.model is None or not result.model.is_file():
        raise TrainingError(f"{result.run_dir}: the run left no model file to register")
    config = result.config
    model_file, metrics = kept_weights(result, keep)
    return project.register_model(config.card.to_dict(), model_file,
                                  parent_id=config.parent_model_id if parent_id is None else parent_id,
                                  method=config.method, config=config.to_dict(),
                                  metrics={**metrics, "status": result.status}, activate=activate, name=name)


def kept_weights(result: TrainResult, keep: str = "best") -> tuple[Path, dict]:
    """The model file a version keeps and the metrics recorded with it (see ``register_run_in_project``)."""
    metrics = dict(result.metrics)
    best_file, best_iteration = result.run_dir / BEST_MODEL_FILE, metrics.get("best_iteration")
    if keep == "best" and best_file.is_file() and best_iteration is not None and best_iteration != result.iteration:
        at_best = load_model_weights(best_file)[1]["metrics"]  # the validation the best weights scored
        validated = {key: at_best.get(key) for key in VALIDATION_METRICS}
        return best_file, {**metrics, **validated, "weights": "best", "weights_iteration": best_iteration,
                           "last_validation_dice": metrics.get("validation_dice")}
    return result.model, {**metrics, "weights": "last", "weights_iteration": result.iteration}


__all__ = ["KEPT_WEIGHTS", "TRAINING_LABEL_KINDS", "data_spec_from_project", "kept_weights",
           "register_run_in_project"]
