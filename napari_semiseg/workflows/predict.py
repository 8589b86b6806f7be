"""Predicting with a model version: resolve it, load it with its method's post-processing, predict, save.

``semiseg infer`` and the Predict panel both load a model version through ``load_model_version``,
so both apply what the method publishes for test time (SS-Net keeps the largest connected
component unless the run's ``largest_component`` hyperparameter, or the caller, says otherwise),
predict through ``iter_predict`` / ``predict`` and keep the result with ``save_prediction``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from ..errors import ProjectError, SemisegError


@dataclass(frozen=True)
class LoadedModel:
    """A model version ready to predict: its network, the card it predicts with, its record."""

    network: Any
    card: Any
    model: Any


def resolve_model(project, model_id: int | None):
    """The ``ModelVersion`` named (the active one for None).

    Raises:
        ProjectError: the project has no model yet, or no such version.
    """
    if model_id is not None:
        return project.model(model_id)
    active = project.active_model()
    if active is None:
        raise ProjectError(f"{project.root}: the project has no model yet; train one (Fine-tune panel or "
                           "semiseg train) before making predictions")
    return active


def load_model_version(project_or_model, model_id: int | None = None, *, device: str = "cpu") -> LoadedModel:
    """A model version's network in eval mode, with the card its method predicts with.

    Args:
        project_or_model: an open ``Project`` (then ``model_id``, default the active model),
            or a ``ModelVersion`` already resolved.
        device: where to put the network; inference moves it anyway.

    Raises:
        ProjectError: unknown model, or none active.
        TrainingError: the weights file is missing, unsafe, differs from the SHA-256 recorded
            when the version was registered, or does not fit its network.
    """
    from ..engine.methods import with_method_postprocessing
    from ..engine.training import load_model

    model = project_or_model if hasattr(project_or_model, "checkpoint_path") else resolve_model(project_or_model,
                                                                                                  model_id)
    trained = load_model(model.checkpoint_path, device=device, expected_sha256=model.sha256)
    return LoadedModel(trained.network, with_method_postprocessing(trained.card, model.method, model.config), model)


def load_model_file(path, *, device: str = "cpu") -> LoadedModel:
    """A trainer's model file (``model.pt``, ``best_model.pt``, a ``checkpoint.pt``) ready to
    predict, no project needed; ``LoadedModel.model`` is None.

    The method's post-processing applies as for a model version: the file records the method
    and the run's configuration (its ``method_params``). A file never names code to run:
    ``engine.training.load_model`` builds the network by the name its card gives.

    Raises:
        TrainingError: the file is missing, unsafe, or its weights do not fit its network.
        CardError: the card it records is malformed.
    """
    from ..engine.methods import with_method_postprocessing
    from ..engine.training import load_model

    trained = load_model(path, device=device)
    return LoadedModel(trained.network, with_method_postprocessing(trained.card, trained.method, trained.config),
                       None)


#: The LA papers' dense sliding window: a stride of 4/18/18 voxels in z/y/x, constant blending.
PAPER_STRIDE = (4, 18, 18)


def prediction_card(card, paper_grid: bool):
    """The card to predict with: as trained, or on the papers' dense grid (the card's own stride
    when it has one, else ``PAPER_STRIDE``, with constant blending as the papers average)."""
    import dataclasses
    if not paper_grid:
        return card
    inference = dataclasses.replace(card.inference, stride=card.inference.stride or PAPER_STRIDE,
                                    blending="constant")
    return card.replace(inference=inference)


def model_keeps_largest_component(model) -> bool:
    """``engine.methods.keeps_largest_component`` of a ``ModelVersion`` (what a form shows before predicting)."""
    from ..engine.methods import keeps_largest_component
    from .models import card_of
    try:
        card_default = card_of(model).inference.largest_component
    except SemisegError:  # an unreadable stored card: the method's rule alone
        card_default = False
    return keeps_largest_component(card_default, model.method, model.config)


@dataclass(frozen=True)
class PredictOptions:
    """How a volume is predicted.

    Attributes:
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
        mc_samples: Monte-Carlo dropout sweeps (0: one deterministic sweep).
        largest_component: keep each class's largest connected component; None: the card's
            (with the method's post-processing).
        stride: the window step (z, y, x); None: the card's.
        overlap: window overlap in 0..1; None: the card's.
    """

    device: str = "auto"
    mc_samples: int = 0
    largest_component: bool | None = None
    stride: tuple[int, int, int] | None = None
    overlap: float | None = None


def iter_predict(loaded: LoadedModel, volume, options: PredictOptions,
                 should_stop: Callable[[], bool] | None = None) -> Generator:
    """Predict ``volume``: ``InferenceProgress`` reports, then returns the ``Prediction``."""
    from ..engine.inference import Prediction, iter_predict_volume

    for item in iter_predict_volume(loaded.network, volume, loaded.card, device=options.device,
                                    mc_samples=options.mc_samples, largest_component=options.largest_component,
                                    stride=options.stride, overlap=options.overlap, should_stop=should_stop):
        if isinstance(item, Prediction):
            return item
        yield item
    raise RuntimeError("inference ended without a prediction")  # not reachable


def predict(loaded: LoadedModel, volume, options: PredictOptions, progress: Callable[[Any], None] | None = None):
    """``iter_predict`` run to its end, each report passed to ``progress``."""
    steps = iter_predict(loaded, volume, options)
    while True:
        try:
            report = next(steps)
        except StopIteration as done:
            return done.value
        if progress is not None:
            progress(report)


def save_prediction(project, case_id: str, prediction, model_id: int | None, *, note: str | None = None,
                    author: str | None = None, details: dict | None = None):
    """Keep a prediction as a "prediction" label version with its soft label.

    Returns:
        (the ``LabelVersion``, the ``SoftLabel``).
    """
    if note is None:
        note = f"model {model_id}; {prediction.grid}; {prediction.passes} pass(es) on {prediction.device}"
    extra = {} if details is None else {"details": details}
    return project.save_label_with_soft_label(case_id, prediction.labels, "prediction", prediction.probabilities,
                                              model_id=model_id, author=author, note=note, **extra)


__all__ = ["PAPER_STRIDE", "prediction_card", "LoadedModel", "PredictOptions", "iter_predict", "load_model_file", "load_model_version", "model_keeps_largest_component", "predict",
           "resolve_model", "save_prediction"]
