"""Whole-volume prediction: preprocessing, sliding windows, uncertainty, the way back.

``iter_predict_volume`` is the generator a GUI worker drives: it yields an
``InferenceProgress`` after preprocessing and after every window batch, then the
``Prediction`` (which is also the generator's return value, for napari's ``returned``
signal). ``predict_volume`` consumes it, calling ``progress`` with each report.

Cancellation: ``should_stop()`` is asked after each report, i.e. between window batches;
when it answers True the sweep stops there and ``Cancelled`` (a ``SemisegError``) is raised.
We raise rather than return None so that a caller can never mistake a stopped run for a
result. Closing the generator (a napari worker's ``quit``) also stops it between batches.
"""

from __future__ import annotations

import math
import time
import warnings
from functools import partial
from dataclasses import dataclass
from typing import Callable, Generator

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from ...errors import SemisegError
from ...io._volume import Geometry, Volume
from .._compute import ComputeMode, network_memory_format
from ._device import (InferenceMemoryWarning, memory_fallbacks, release_cached_memory, resolve_device,
                      window_batch_for_memory)
from ...errors import Cancelled  # noqa: F401  (re-exported)
from ._postprocess import hard_labels, keep_largest_component
from ._preprocess import prepare_input, to_input_grid
from ._stepwise import run_stepwise
from ._uncertainty import McStatistics, evaluation_mode, normalised_entropy
from ._windows import WindowGrid, grid_for_card


class InferenceError(SemisegError):
    """The network's output cannot be used as class logits for these windows."""


@dataclass(frozen=True)
class InferenceProgress:
    """One report: how many window evaluations are done of how many.

    Attributes:
        windows_done: window evaluations finished (all MC passes counted). Restarts from 0
            after an out-of-memory retry, whose report says so in ``message``.
        windows_total: window evaluations planned (windows × passes).
        message: what is happening, for a status line.
    """

    windows_done: int
    windows_total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.windows_done / self.windows_total if self.windows_total else 1.0


@dataclass(frozen=True)
class Prediction:
    """A prediction on the input volume's grid.

    Attributes:
        labels: uint8 (z, y, x) hard label (argmax; largest component if asked).
        probabilities: float32 (K, z, y, x) class probabilities, summing to 1 per voxel.
        uncertainty: float32 (z, y, x) normalised predictive entropy, 0 (certain) .. 1.
        geometry: the input volume's geometry (shape, spacing, origin, direction).
        mc_variance: float32 (z, y, x) variance of the foreground probability over the MC
            dropout samples, or None without MC dropout.
        seconds: wall time of the whole call.
        windows: windows per pass over the (resampled, padded) volume.
        passes: sweeps made (1, or the MC samples).
        window_batch: windows per network call in the sweep that succeeded.
        device: where the windows ran.
        grid: the window grid, in words.
        precision: ``"bf16"`` (autocast windows, float32 blending) or ``"fp32"``.
        channels_last: whether the network ran in ``channels_last_3d``.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    uncertainty: np.ndarray
    geometry: Geometry
    mc_variance: np.ndarray | None = None
    seconds: float = 0.0
    windows: int = 0
    passes: int = 1
    window_batch: int = 1
    device: str = "cpu"
    grid: str = ""
    precision: str = "fp32"
    channels_last: bool = False

    def foreground_probability(self) -> np.ndarray:
        """float32 (z, y, x): probability of any foreground class, 1 − p(background)."""
        if self.probabilities.shape[0] == 2:
            return self.probabilities[1]
        return 1.0 - self.probabilities[0]


@dataclass(frozen=True)
class _Sweep:
    """What one attempt needs; the device and window batch vary between attempts."""

    net: nn.Module
    image: torch.Tensor          # (1, 1, z, y, x) float32, CPU
    grid: WindowGrid
    blending: str
    passes: int
    mc_dropout: bool
    windows: int                 # per pass
    precision: str = "auto"
    channels_last: bool | None = None

    def mode(self, device: torch.device) -> ComputeMode:
        return ComputeMode.resolve(device, precision=self.precision, channels_last=self.channels_last)


class _WindowPredictor:
    """The callable MONAI calls per window batch: logits → softmax, then report the step.

    Softmax is applied here so that MONAI averages probabilities, not logits, as the papers do.
    With ``passes`` > 1 (MC dropout on CUDA) each window batch runs all passes in one network
    call and comes back as (B, passes·K, ...): MONAI blends every pass's channels exactly as
    separate sweeps would.
    """

    def __init__(self, net: nn.Module, step: Callable, done: int, total: int,
                 mode: ComputeMode = ComputeMode(), passes: int = 1):
        self.net, self.step, self.done, self.total = net, step, done, total
        self.mode, self.passes = mode, passes

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        batch = windows.shape[0]
        inputs = windows.repeat(self.passes, 1, 1, 1, 1) if self.passes > 1 else windows
        with self.mode.autocast():
            logits = self.net(self.mode.prepare_input(inputs))
        if isinstance(logits, (tuple, list)):  # tolerate (logits, features) networks
            logits = logits[0]
        _check_logits(logits, inputs)
        probabilities = torch.softmax(logits.float(), dim=1)
        if self.passes > 1:  # (T·B, K, ...) → (B, T·K, ...), pass-major channels
            probabilities = probabilities.unflatten(0, (self.passes, batch)).transpose(0, 1).flatten(1, 2)
        self.done += inputs.shape[0]
        self.step(InferenceProgress(self.done, self.total))
        return probabilities


def _check_logits(logits, windows: torch.Tensor) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 5:
        raise InferenceError(f"the network must return (B, K, Z, Y, X) logits; got "
                             f"{getattr(logits, 'shape', type(logits).__name__)}")
    if logits.shape[0] != windows.shape[0] or logits.shape[2:] != windows.shape[2:]:
        raise InferenceError(f"the network returned logits of shape {tuple(logits.shape)} for windows of "
                             f"shape {tuple(windows.shape)}: batch and (Z, Y, X) must match")
    if logits.shape[1] < 2:
        raise InferenceError(f"the network returned {logits.shape[1]} channel(s); inference expects "
                             "K ≥ 2 class logits (background included)")


def _run_sweep(sweep: _Sweep, device: torch.device, window_batch: int, step: Callable[[InferenceProgress], None]):
    """All passes of the sliding window on ``device``; returns (mean probabilities, fg variance|None).

    Runs in the stepwise thread: inference mode and the network's modes are set here.
    """
    if device.type == "cuda":
        return _run_sweep_on_device(sweep, device, window_batch, step)
    total = sweep.windows * sweep.passes
    stats = McStatistics()
    with torch.inference_mode(), evaluation_mode(sweep.net, mc_dropout=sweep.mc_dropout):
        sweep.net.to(device)
        for index in range(sweep.passes):
            predictor = _WindowPredictor(sweep.net, step, index * sweep.windows, total)
            probabilities = sliding_window_inference(
                sweep.image, sweep.grid.patch, window_batch, predictor, overlap=sweep.grid.overlap,
                mode=sweep.blending, padding_mode="constant", cval=0.0, sw_device=device,
                device=torch.device("cpu"))[0]
            if sweep.passes == 1:
                return probabilities, None
            stats.add(probabilities)
            del probabilities
    return stats.mean(), stats.foreground_variance()


def _run_sweep_on_device(sweep: _Sweep, device: torch.device, window_batch: int,
                         step: Callable[[InferenceProgress], None]):
    """``_run_sweep`` on CUDA: the image goes over once; windows, blending and the MC statistics
    stay on the device (all passes of a window batch in one call); results stay there too."""
    mode = sweep.mode(device)
    # Moved and reformatted outside inference mode: a caller that trains the network afterwards
    # (the trainer's validation) must not get inference tensors back as its parameters.
    sweep.net.to(device)
    with network_memory_format(sweep.net, mode), torch.inference_mode(), \
            evaluation_mode(sweep.net, mc_dropout=sweep.mc_dropout):
        predictor = _WindowPredictor(sweep.net, step, 0, sweep.windows * sweep.passes, mode, sweep.passes)
        blended = sliding_window_inference(
            sweep.image.to(device), sweep.grid.patch, window_batch, predictor, overlap=sweep.grid.overlap,
            mode=sweep.blending, padding_mode="constant", cval=0.0, sw_device=device, device=device)[0]
    if sweep.passes == 1:
        return blended, None
    samples = blended.unflatten(0, (sweep.passes, -1))  # (T, K, z, y, x)
    foreground = 1.0 - samples[:, 0]
    return samples.mean(dim=0), foreground.var(dim=0, unbiased=False).clamp_(min=0.0)


def _module_device(net: nn.Module) -> torch.device | None:
    for tensor in (*net.parameters(), *net.buffers()):
        return tensor.device
    return None


def _sweep_with_fallbacks(sweep: _Sweep, device: torch.device, window_batch: int,
                          should_stop: Callable[[], bool] | None) -> Generator:
    """Yield progress; return (probabilities, variance, device, window batch) of the attempt that fit."""
    total = sweep.windows * sweep.passes
    failed: tuple[torch.device, int] | None = None
    for attempt_device, batch in memory_fallbacks(device, window_batch):
        if failed is not None:
            note = (f"out of memory on {failed[0]} with {failed[1]} window(s) per batch; "
                    f"retrying on {attempt_device} with {batch}")
            warnings.warn(f"inference ran {note}", InferenceMemoryWarning, stacklevel=2)
            yield InferenceProgress(0, total, f"Out of memory: {note}")
        stepwise = run_stepwise(partial(_run_sweep, sweep, attempt_device, batch), name="semiseg-inference")
        try:
            probabilities, variance = yield from _until_stopped(stepwise, should_stop)
        except torch.cuda.OutOfMemoryError:
            failed = (attempt_device, batch)
            release_cached_memory()
            continue
        finally:
            stepwise.close()  # a no-op once finished; stops the thread otherwise
        return probabilities, variance, attempt_device, batch
    raise SemisegError(f"inference ran out of memory even with one window per batch on the CPU "
                       f"(patch {sweep.grid.patch}); choose a card with a smaller patch")


def _until_stopped(reports: Generator, should_stop: Callable[[], bool] | None) -> Generator:
    """Re-yield ``reports``, asking ``should_stop`` after each; return the generator's value."""
    while True:
        try:
            report = next(reports)
        except StopIteration as finished:
            return finished.value
        yield report
        if should_stop is not None and should_stop():
            raise Cancelled(f"inference cancelled after {report.windows_done} of "
                            f"{report.windows_total} windows")


def iter_predict_volume(net: nn.Module, volume: Volume, card, *, device="auto", stride=None, overlap=None,
                        mc_samples: int = 0, largest_component: bool | None = None,
                        window_batch: int | None = None,
                        should_stop: Callable[[], bool] | None = None, precision: str = "auto",
                        channels_last: bool | None = None
                        ) -> Generator[InferenceProgress | Prediction, None, Prediction]:
    """Predict a whole volume, yielding progress; the last item yielded is the ``Prediction``.

    Args:
        net: any module mapping (B, C, Z, Y, X) float32 to (B, K, Z, Y, X) logits. It is run in
            eval mode under ``torch.inference_mode`` and its modes are restored afterwards; it
            is moved to the device (and back to where it was).
        volume: the (z, y, x) input; its grid is the output's grid.
        card: a ``ModelCard``: preprocessing, patch, grid, blending, window batch, LCC.
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda[:N]" or a torch.device.
            On the CPU the accumulated outputs are built window batch by window batch; on
            CUDA the preprocessed volume goes to the device once and everything (blending,
            MC statistics, resampling back, softmax, entropy, argmax) stays there until one
            copy back.
        stride: an exact integer window step (int or (z, y, x)): the papers' grid.
        overlap: a window overlap fraction instead. Neither: the card's stride, else its overlap.
        mc_samples: T > 0 runs T sweeps with dropout sampling and reports the variance.
        largest_component: keep each class's largest component; None: the card's choice.
        window_batch: windows per network call (device memory grows with it); None: the
            card's on the CPU, sized from the free memory on CUDA.
        should_stop: asked between window batches; True raises ``Cancelled``.
        precision: "auto" (bf16 autocast windows on CUDA, fp32 on the CPU), "bf16" or "fp32";
            probabilities are blended in float32 either way.
        channels_last: run the network in ``channels_last_3d``; None: on CUDA only.

    Yields:
        ``InferenceProgress`` reports (0 done first, then after every window batch), then
        the ``Prediction``.

    Raises:
        Cancelled, VolumeError (NaN/inf, not 3-D), DeviceError, GridError, McDropoutError,
        InferenceError (unusable network output), PreprocessingError.
    """
    started = time.perf_counter()
    if should_stop is not None and should_stop():
        raise Cancelled("inference cancelled before it started")
    target = resolve_device(device)
    grid = grid_for_card(card, stride=stride, overlap=overlap)
    passes = max(1, int(mc_samples))
    sweep = _prepare_sweep(net, volume, card, grid, passes, mc_samples > 0, precision, channels_last)
    if window_batch is None:
        window_batch = window_batch_for_memory(target, card, passes) or card.inference.window_batch
    yield InferenceProgress(0, sweep.windows * passes, f"{grid.describe()}; {sweep.windows} windows"
                            + (f" × {passes} MC samples" if passes > 1 else ""))
    home = _module_device(net)
    try:
        probabilities, variance, used_device, used_batch = yield from _sweep_with_fallbacks(
            sweep, target, window_batch, should_stop)
    finally:
        if home is not None:
            net.to(home)
    windows, mode = sweep.windows, sweep.mode(used_device)
    del sweep  # frees the network image before the full-size outputs are built
    lcc = card.inference.largest_component if largest_component is None else largest_component
    finish = _finish_on_device if probabilities.device.type == "cuda" else _finish
    labels, probabilities, uncertainty, variance = finish(probabilities, variance, volume.shape, lcc)
    prediction = Prediction(labels, probabilities, uncertainty, volume.geometry, variance,
                            seconds=time.perf_counter() - started, windows=windows, passes=passes,
                            window_batch=used_batch, device=str(used_device), grid=grid.describe(),
                            precision=mode.precision, channels_last=mode.channels_last)
    yield prediction
    return prediction


def _prepare_sweep(net, volume: Volume, card, grid: WindowGrid, passes: int, mc_dropout: bool,
                   precision: str = "auto", channels_last: bool | None = None) -> _Sweep:
    network_input = prepare_input(volume, card.preprocessing)
    image = torch.from_numpy(network_input.image)[None, None]
    return _Sweep(net, image, grid, card.inference.blending, passes, mc_dropout,
                  grid.count(network_input.image.shape), precision, channels_last)


def _finish(probabilities: torch.Tensor, variance: torch.Tensor | None, shape, largest_component: bool):
    """Network-grid maps → input-grid arrays: (labels, probabilities, uncertainty, variance)."""
    probabilities = to_input_grid(probabilities, shape)
    labels = hard_labels(probabilities)
    if largest_component:
        keep_largest_component(labels)
    uncertainty = normalised_entropy(probabilities)
    if variance is not None:
        variance = to_input_grid(variance[None], shape)[0].clamp(min=0.0).numpy()
    return labels, probabilities.numpy(), uncertainty, variance


def _finish_on_device(probabilities: torch.Tensor, variance: torch.Tensor | None, shape, largest_component: bool):
    """``_finish`` for CUDA maps: resampling, argmax and entropy on the device, then one copy back
    of probabilities, entropy, labels (exact as floats) and variance stacked together."""
    probabilities = to_input_grid(probabilities, shape)
    k = probabilities.shape[0]
    entropy = (-torch.special.xlogy(probabilities, probabilities).sum(dim=0) / math.log(k)).clamp_(0.0, 1.0)
    maps = [probabilities, entropy[None], probabilities.argmax(dim=0)[None].float()]
    if variance is not None:
        maps.append(to_input_grid(variance[None], shape).clamp(min=0.0))
    host = torch.cat(maps).cpu().numpy()
    labels = host[k + 1].astype(np.uint8)
    if largest_component:
        keep_largest_component(labels)
    return labels, host[:k], host[k], (host[k + 2] if variance is not None else None)


def predict_volume(net: nn.Module, volume: Volume, card, *, device="auto", stride=None, overlap=None,
                   mc_samples: int = 0, largest_component: bool | None = None, window_batch: int | None = None,
                   progress: Callable[[InferenceProgress], None] | None = None,
                   should_stop: Callable[[], bool] | None = None, precision: str = "auto",
                   channels_last: bool | None = None) -> Prediction:
    """Predict a whole volume; see ``iter_predict_volume`` for the arguments.

    Args:
        progress: called with every ``InferenceProgress`` (after preprocessing, then after
            each window batch), in the caller's thread.

    Returns:
        The ``Prediction`` on the volume's grid.
    """
    for item in iter_predict_volume(net, volume, card, device=device, stride=stride, overlap=overlap,
                                    mc_samples=mc_samples, largest_component=largest_component,
                                    window_batch=window_batch, should_stop=should_stop, precision=precision,
                                    channels_last=channels_last):
        if isinstance(item, Prediction):
            return item
        if progress is not None:
            progress(item)
    raise RuntimeError("inference ended without a prediction")  # not reachable
