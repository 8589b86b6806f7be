"""The Predict panel's logic, free of napari and Qt: which model, which options, what to show.

The panel builds a ``PredictRequest``; ``predict_steps`` is the generator its worker runs
(load the model version or model file, then ``iter_predict_volume``'s reports, then the
``Prediction``), on the open case's image or on any image layer (``layer_volume``);
``prediction_layers`` turns the result into napari layer tuples on the case's grid, and
``save_in_project`` keeps it as a "prediction" label version with its soft label. Model loading,
inference and saving are ``workflows.predict``'s, the same as ``semiseg infer``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator

from ..workflows.predict import resolve_model, save_prediction  # noqa: F401 (the panels' names for them)
from ._layers import labels_layer_data, layer_metadata, placement

#: The layers a prediction adds, by suffix after the case id.
PREDICTION_SUFFIX, SOFT_LABEL_SUFFIX, UNCERTAINTY_SUFFIX = " prediction", " soft label", " uncertainty"
MC_VARIANCE_SUFFIX = " MC variance"
#: The hard label is drawn as its outline (this many pixels thick), so that the soft label under it shows.
PREDICTION_CONTOUR = 2
#: The variance of a probability is at most 1/4 (half the samples 0, half 1).
MC_VARIANCE_RANGE = (0.0, 0.25)


@dataclass(frozen=True)
class ColourRamp:
    """A colormap that is transparent at 0 and grows opaque towards 1 (napari control points).

    Over the image, a soft label drawn this way hides nothing where the model is sure of the
    background and colours only where it sees foreground (likewise for the uncertainty).

    Attributes:
        name: the colormap's name in napari's menu.
        colours: RGBA control points, evenly spaced over 0..1.
    """

    name: str
    colours: tuple[tuple[float, float, float, float], ...]


#: magma's hues (purple → orange → pale yellow) with an alpha ramp.
SOFT_LABEL_COLORMAP = ColourRamp("semiseg soft label", ((0.0, 0.0, 0.02, 0.0), (0.55, 0.16, 0.51, 0.45),
                                                        (0.98, 0.42, 0.29, 0.75), (0.99, 0.99, 0.75, 0.9)))
#: Transparent → cyan, distinct from the soft label's warm hues and from the labels' colours;
#: it stays faint below 0.5 so that the image shows through where the model is fairly sure.
UNCERTAINTY_COLORMAP = ColourRamp("semiseg uncertainty", ((0.0, 0.6, 1.0, 0.0), (0.0, 0.8, 1.0, 0.1),
                                                          (0.0, 1.0, 1.0, 0.65)))


@dataclass(frozen=True)
class PredictRequest:
    """What the Predict panel asks for (the worker consumes exactly this).

    Attributes:
        model_id: the project's model version; None means the active one (or ``model_file``).
        model_file: a trainer's model file (``model.pt``), no project needed; wins over ``model_id``.
        mc_samples: Monte-Carlo dropout sweeps (0: a single deterministic sweep). Each one
            costs a whole sweep; the uncertainty then also gets the MC variance.
        largest_component: keep each class's largest connected component; None: the card's.
        paper_grid: the card's exact window stride (the papers' dense grid) when it has one;
            False uses ``overlap`` instead (faster).
        overlap: window overlap fraction (0..1) when not on the papers' grid; None: the card's.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        save_version: keep the hard label as a "prediction" label version (and its soft label).
    """

    model_id: int | None = None
    model_file: Path | None = None
    mc_samples: int = 0
    largest_component: bool | None = None
    paper_grid: bool = True
    overlap: float | None = None
    device: str = "auto"
    save_version: bool = False


def grid_arguments(request: PredictRequest, card) -> dict:
    """``stride``/``overlap`` keyword arguments for ``iter_predict_volume``."""
    if request.paper_grid and card.inference.stride is not None:
        return {"stride": None, "overlap": None}  # the card's stride
    overlap = card.inference.overlap if request.overlap is None else float(request.overlap)
    return {"stride": None, "overlap": overlap}


def predict_steps(model, volume, request: PredictRequest,
                  should_stop: Callable[[], bool] | None = None,
                  keep: Callable[[object], object] | None = None) -> Generator:
    """Load a model file and predict ``volume``: the generator a GUI worker runs.

    Args:
        model: the project's ``ModelVersion`` (its weights are checked against the SHA-256
            recorded when it was registered) or the ``Path`` of a model file (loaded safely: tensors
            and plain data only); the method's post-processing applies either way.
        volume: the case's (z, y, x) ``Volume``.
        request: the options.
        should_stop: asked between window batches; True raises ``Cancelled``.
        keep: called with the prediction in the worker (``save_in_project``), so that the
            GUI thread does not wait for the files and the catalogue.

    Yields:
        ``InferenceProgress`` reports (the first says the model is loading).

    Returns:
        ``(the Prediction on the volume's grid, what keep returned or None)``.
    """
    from ..engine.inference import InferenceProgress
    from ..workflows.predict import PredictOptions, iter_predict, load_model_file, load_model_version

    yield InferenceProgress(0, 0, f"Loading {describe_model_source(model)}")
    # With its method's post-processing, as semiseg infer / predict load it.
    loaded = load_model_file(model) if isinstance(model, Path) else load_model_version(model)
    options = PredictOptions(device=request.device, mc_samples=request.mc_samples,
                             largest_component=request.largest_component, **grid_arguments(request, loaded.card))
    prediction = yield from iter_predict(loaded, volume, options, should_stop)
    if keep is None:
        return prediction, None
    done = prediction.windows * prediction.passes
    yield InferenceProgress(done, done, "Saving the prediction")
    return prediction, keep(prediction)


def describe_model_source(model) -> str:
    """"model version 3" or "model file model.pt"."""
    return f"model file {model.name}" if isinstance(model, Path) else f"model version {model.id}"


def layer_volume(array, geometry, source: str | Path | None = None):
    """The ``Volume`` an image layer shows: its (z, y, x) data on its grid.

    Raises:
        VolumeError: the layer is not a 3-D single-channel image.
    """
    import numpy as np

    from ..errors import VolumeError
    from ..io import Volume

    array = np.asarray(array)
    if array.ndim != 3 or array.dtype.kind not in "uif":
        raise VolumeError(source or "layer", f"needs a 3-D single-channel image to predict on, got shape "
                          f"{array.shape} of {array.dtype}")
    return Volume(array, geometry, source=None if source is None else Path(source))


def prediction_layers(prediction, case_id: str, model_id: int | None = None) -> list[tuple]:
    """napari layer tuples for a prediction: hard labels, soft label, uncertainty.

    The hard label is shown; the soft label and the uncertainty are added hidden (all three at
    once cover the anatomy): the layer list's eye, or the results shortcut, shows them.

    All three lie on the prediction's grid (``scale`` = spacing, ``translate`` = origin) and
    carry its geometry in their metadata, so the writer saves them where they belong.

    Returns:
        ``[(foreground probability, kwargs, "image"), (uncertainty, kwargs, "image"), (labels,
        kwargs, "labels")]``, bottom to top; the images are float32 in 0..1 with a
        ``ColourRamp`` colormap (the widget turns it into a napari colormap); the widget draws
        the hard label as its contour (``PREDICTION_CONTOUR``), over the soft label. With MC dropout a fourth, hidden layer holds
        the variance of the foreground probability (0..0.25).
    """
    geometry = prediction.geometry
    extra = {"case": case_id, "model": model_id}
    labels = labels_layer_data(prediction.labels, geometry, f"{case_id}{PREDICTION_SUFFIX}", **extra)
    labels[1]["opacity"] = 1.0
    soft = _unit_image(prediction.foreground_probability(), geometry, f"{case_id}{SOFT_LABEL_SUFFIX}",
                       SOFT_LABEL_COLORMAP, extra)
    uncertainty = _unit_image(prediction.uncertainty, geometry, f"{case_id}{UNCERTAINTY_SUFFIX}",
                              UNCERTAINTY_COLORMAP, extra)
    soft[1]["visible"] = uncertainty[1]["visible"] = False
    layers = [soft, uncertainty, labels]
    if prediction.mc_variance is not None:
        variance = _unit_image(prediction.mc_variance, geometry, f"{case_id}{MC_VARIANCE_SUFFIX}",
                               UNCERTAINTY_COLORMAP, extra, MC_VARIANCE_RANGE)
        variance[1]["visible"] = False
        layers.append(variance)
    return layers


def _unit_image(array, geometry, name: str, colormap: ColourRamp, extra: dict, limits=(0.0, 1.0)) -> tuple:
    kwargs = {"name": name, "metadata": layer_metadata(geometry, **extra), "contrast_limits": limits,
              "colormap": colormap, "blending": "translucent", "opacity": 1.0, **placement(geometry)}
    return (array, kwargs, "image")


def save_in_project(root: str | Path, case_id: str, prediction, model_id: int | None, author: str | None = None,
                    note: str | None = None):
    """``save_prediction`` through a connection of its own (a worker thread's; SQLite needs one per thread)."""
    from ..project import Project
    with Project.open(root) as project:
        return save_prediction(project, case_id, prediction, model_id, author=author, note=note)


def describe_prediction(prediction, case_id: str) -> str:
    """One status line: what was predicted, how, how long it took."""
    voxels = int((prediction.labels > 0).sum())
    return (f"Predicted {case_id}: {voxels} foreground voxels, {prediction.windows} windows × "
            f"{prediction.passes} pass(es) on {prediction.device} in {prediction.seconds:.1f} s.")


__all__ = ["ColourRamp", "MC_VARIANCE_SUFFIX", "describe_model_source", "layer_volume", "PREDICTION_SUFFIX", "PredictRequest", "SOFT_LABEL_SUFFIX", "UNCERTAINTY_SUFFIX", "describe_prediction",
           "grid_arguments", "predict_steps", "prediction_layers", "resolve_model", "save_in_project", "save_prediction"]
