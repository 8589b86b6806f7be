"""Sliding-window inference over whole volumes (engine layer: torch and MONAI, no Qt).

``predict_volume(net, volume, card)`` → ``Prediction`` (hard label, class probabilities and
normalised entropy on the volume's own grid, MC-dropout variance on request);
``iter_predict_volume`` is the same as a generator of ``InferenceProgress`` reports, for GUI
workers. The pieces: ``_preprocess`` (card intensity and resampling, there and back),
``_windows`` (the papers' exact grid or an overlap), ``_uncertainty``, ``_postprocess``
(argmax, largest component), ``_device`` (auto device, out-of-memory fallbacks).
"""

from ._device import DeviceError, InferenceMemoryWarning, memory_fallbacks, resolve_device
from ._postprocess import hard_labels, keep_largest_component
from ._predict import (Cancelled, InferenceError, InferenceProgress, Prediction, iter_predict_volume,
                       predict_volume)
from ._preprocess import NetworkInput, PreprocessingError, check_finite_volume, prepare_input, to_input_grid
from ._uncertainty import McDropoutError, McStatistics, evaluation_mode, normalised_entropy
from ._windows import GridError, WindowGrid, grid_for_card, make_grid, overlap_for_stride, window_starts

__all__ = [
    "Cancelled", "DeviceError", "GridError", "InferenceError", "InferenceMemoryWarning", "InferenceProgress",
    "McDropoutError", "McStatistics", "NetworkInput", "Prediction", "PreprocessingError", "WindowGrid",
    "check_finite_volume", "evaluation_mode", "grid_for_card", "hard_labels", "iter_predict_volume",
    "keep_largest_component", "make_grid", "memory_fallbacks", "normalised_entropy", "overlap_for_stride",
    "predict_volume", "prepare_input", "resolve_device", "to_input_grid", "window_starts",
]
