"""Whole-volume inference: grid, geometry, resampling, progress, cancel, MC dropout, OOM fallback.

The networks here are tiny real modules (a pointwise rule, a 3×3×3 convolution, dropout) so
that the expected output is known voxel by voxel; sizes stay at a few tens of voxels.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import torch
from torch import nn

from napari_semiseg.engine.cards import InferenceSpec, ModelCard, NetworkSpec, Preprocessing
from napari_semiseg.engine.inference import (Cancelled, DeviceError, GridError, InferenceError,
                                             InferenceMemoryWarning, McDropoutError, Prediction,
                                             iter_predict_volume, keep_largest_component, make_grid,
                                             memory_fallbacks, normalised_entropy, overlap_for_stride,
                                             predict_volume, prepare_input, resolve_device, window_starts)
from napari_semiseg.errors import SemisegError, VolumeError
from napari_semiseg.io._volume import Geometry, Volume

OBLIQUE = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def make_card(patch=(16, 16, 16), *, target_spacing=None, intensity="none", window=None, stride=None,
              overlap=0.5, window_batch=2, largest_component=False, blending="constant") -> ModelCard:
    return ModelCard("test", "inference test card", "MR", NetworkSpec(num_classes=2), tuple(patch),
                     Preprocessing(target_spacing, intensity, window),
                     InferenceSpec(stride, overlap, blending, window_batch, largest_component))


class Threshold(nn.Module):
    """Logits (0, gain·(x − 0.5)): foreground exactly where the input exceeds 0.5."""

    def __init__(self, gain: float = 20.0):
        super().__init__()
        self.gain = gain
        self.batches: list[int] = []

    def forward(self, x):
        self.batches.append(x.shape[0])
        return torch.cat([torch.zeros_like(x), self.gain * (x - 0.5)], dim=1)


class WindowRecorder(nn.Module):
    """Remembers where each window lay, read from voxel values that encode 1 + linear index."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape
        self.origins: list[tuple[int, int, int]] = []

    def forward(self, x):
        for window in x[:, 0]:
            offset = torch.nonzero(window)[0].tolist()          # first non-padding voxel
            where = np.unravel_index(int(window[tuple(offset)].item()) - 1, self.shape)
            self.origins.append(tuple(int(w) - o for w, o in zip(where, offset)))
        return torch.zeros((x.shape[0], 2, *x.shape[2:]))


class OutOfMemoryFirst(Threshold):
    """Raises CUDA's out-of-memory error on its first ``failures`` calls."""

    def __init__(self, failures: int):
        super().__init__()
        self.failures = failures

    def forward(self, x):
        if self.failures:
            self.failures -= 1
            self.batches.append(x.shape[0])
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (test)")
        return super().forward(x)


def ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float32)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def dice(a, b) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


# -- the grid ------------------------------------------------------------------------------

def test_paper_window_starts_by_hand():
    assert window_starts(130, 112, 18) == [0, 18]
    assert window_starts(131, 112, 18) == [0, 18, 19]
    assert window_starts(88, 80, 4) == [0, 4, 8]
    assert window_starts(100, 96, 16) == [0, 4]
    assert window_starts(96, 96, 16) == [0]
    assert window_starts(60, 96, 16) == [0]          # padded up to the patch: one window
    assert window_starts(150, 96, 16) == [0, 16, 32, 48, 54]


@pytest.mark.parametrize("patch, stride", [(112, 18), (80, 4), (96, 16)])
def test_grid_handed_to_monai_is_the_papers_exact_stride(patch, stride):
    # MONAI's own rounding loses a voxel for the pancreas stride; our overlap does not.
    if (patch, stride) == (96, 16):
        assert int(patch * (1 - (1 - stride / patch))) == 15
    grid = make_grid((patch,) * 3, stride=stride)
    for size in [patch - 5, patch - 1, patch, patch + 1, patch + stride - 1, patch + stride,
                 patch + stride + 1, 2 * patch + 7, 3 * patch]:
        expected = [min(k * stride, max(size, patch) - patch)
                    for k in range(math.ceil((max(size, patch) - patch) / stride) + 1)]
        assert grid.axis_starts((size,) * 3)[0] == expected == window_starts(size, patch, stride)


def test_sliding_window_visits_exactly_the_la_paper_grid():
    # LA: patch 112×112×80 (x, y, z) = (80, 112, 112) here, stride 4 in z and 18 in y, x.
    shape = (88, 130, 131)
    image = (np.arange(math.prod(shape), dtype=np.float32) + 1).reshape(shape)
    recorder = WindowRecorder(shape)
    card = make_card((80, 112, 112), stride=(4, 18, 18), window_batch=4)
    prediction = predict_volume(recorder, Volume.from_array(image), card, device="cpu")
    expected = {(z, y, x) for z in [0, 4, 8] for y in [0, 18] for x in [0, 18, 19]}
    assert sorted(recorder.origins) == sorted(expected)
    assert prediction.windows == 18 and prediction.grid.startswith("paper")


def test_sliding_window_pads_and_visits_the_pancreas_grid():
    # Pancreas: patch 96³, stride 16; x (90) is smaller than the patch: padded 3 + 3, one window.
    shape = (100, 96, 90)
    image = (np.arange(math.prod(shape), dtype=np.float32) + 1).reshape(shape)
    recorder = WindowRecorder(shape)
    prediction = predict_volume(recorder, Volume.from_array(image), make_card((96, 96, 96), stride=16),
                                device="cpu")
    assert sorted(recorder.origins) == [(0, 0, -3), (4, 0, -3)]
    assert prediction.labels.shape == shape


def test_grid_refuses_what_cannot_tile():
    with pytest.raises(GridError, match="stride 20"):
        overlap_for_stride(16, 20)
    with pytest.raises(GridError, match="not both"):
        predict_volume(Threshold(), Volume.from_array(np.zeros((8, 8, 8), np.float32)), make_card(),
                       device="cpu", stride=4, overlap=0.5)


# -- geometry, shapes, resampling, padding ----------------------------------------------------

def test_prediction_keeps_an_anisotropic_grid_through_resampling():
    shape, spacing = (14, 40, 36), (2.5, 0.7, 0.8)
    image = np.zeros(shape, np.float32)
    physical = np.indices(shape, dtype=np.float32) * np.array(spacing, np.float32)[:, None, None, None]
    centre = np.array([17.0, 14.0, 13.0])
    image[np.sqrt(((physical - centre[:, None, None, None]) ** 2).sum(0)) <= 8.0] = 1.0
    volume = Volume.from_array(image, spacing=spacing, origin=(-30.0, 12.5, 4.0), direction=OBLIQUE)
    card = make_card(target_spacing=(1.0, 1.0, 1.0))
    assert prepare_input(volume, card.preprocessing).image.shape == (35, 28, 29)   # it does resample

    prediction = predict_volume(Threshold(), volume, card, device="cpu")

    assert prediction.geometry == volume.geometry
    assert prediction.labels.shape == shape and prediction.labels.dtype == np.uint8
    assert prediction.probabilities.shape == (2, *shape) and prediction.probabilities.dtype == np.float32
    assert prediction.uncertainty.shape == shape and prediction.uncertainty.dtype == np.float32
    np.testing.assert_allclose(prediction.probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert 0.0 <= prediction.uncertainty.min() and prediction.uncertainty.max() <= 1.0
    # there and back keeps the ball where it was: no shift, little blur
    truth, found = image > 0.5, prediction.labels == 1
    assert dice(truth, found) > 0.9
    np.testing.assert_allclose(np.argwhere(found).mean(0), np.argwhere(truth).mean(0), atol=0.3)


def test_volume_smaller_than_the_patch_is_padded_and_unpadded_in_place():
    rng = np.random.default_rng(0)
    image = (rng.random((10, 12, 9)) > 0.5).astype(np.float32)
    net = Threshold()
    prediction = predict_volume(net, Volume.from_array(image, spacing=(3.0, 1.0, 1.0)), make_card(),
                                device="cpu")
    assert prediction.windows == 1 and net.batches == [1]
    np.testing.assert_array_equal(prediction.labels, image.astype(np.uint8))   # voxel for voxel


def test_gaussian_blending_and_a_real_convolution_still_give_probabilities():
    torch.manual_seed(0)
    net = nn.Conv3d(1, 2, 3, padding=1)
    volume = Volume.from_array(np.random.default_rng(1).normal(size=(20, 24, 18)).astype(np.float32))
    prediction = predict_volume(net, volume, make_card(intensity="zscore", blending="gaussian"), device="cpu")
    np.testing.assert_allclose(prediction.probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert set(np.unique(prediction.labels)) <= {0, 1}


def test_the_card_preprocessing_reaches_the_network():
    ct = np.full((12, 16, 16), -1000.0, dtype=np.float32)
    ct[:, 4:12, 4:12] = 40.0
    ct[:, 6:8, 6:8] = 3000.0          # metal: clipped to the window like air is
    card = make_card(intensity="window", window=(-125.0, 275.0))
    image = prepare_input(Volume.from_array(ct.astype(np.int16)), card.preprocessing).image
    assert image.dtype == np.float32
    assert abs(float(image.mean())) < 1e-5 and abs(float(image.std()) - 1.0) < 1e-4
    assert image[0, 0, 0] < image[0, 5, 5] < image[0, 6, 6]
    zscored = prepare_input(Volume.from_array(ct), make_card(intensity="zscore").preprocessing).image
    assert abs(float(zscored.mean())) < 1e-5 and abs(float(zscored.std()) - 1.0) < 1e-4


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_volume_is_refused_with_its_name(tmp_path, bad):
    image = np.zeros((8, 8, 8), np.float32)
    image[1, 2, 3] = bad
    volume = Volume(image, Geometry(image.shape), source=tmp_path / "case7.nii.gz")
    with pytest.raises(VolumeError, match=r"case7\.nii\.gz: 1 voxel\(s\) are NaN or infinite"):
        predict_volume(Threshold(), volume, make_card(), device="cpu")


def test_unusable_network_output_is_named():
    class Downsampler(nn.Module):
        def forward(self, x):
            return torch.zeros((x.shape[0], 2, *(s // 2 for s in x.shape[2:])))

    with pytest.raises(InferenceError, match="batch and \\(Z, Y, X\\) must match"):
        predict_volume(Downsampler(), Volume.from_array(np.zeros((16, 16, 16), np.float32)), make_card(),
                       device="cpu")


# -- progress and cancellation ----------------------------------------------------------------

def _no_inference_thread_left() -> bool:
    return not any(t.name == "semiseg-inference" for t in threading.enumerate())


def test_progress_is_monotonic_and_ends_at_the_total():
    reports = []
    volume = Volume.from_array(np.zeros((24, 30, 20), np.float32))
    prediction = predict_volume(Threshold(), volume, make_card(window_batch=3), device="cpu",
                                progress=reports.append)
    done = [r.windows_done for r in reports]
    assert done[0] == 0 and done == sorted(done)
    assert done[-1] == reports[-1].windows_total == prediction.windows == 12   # 2 × 3 × 2 windows
    assert len(reports) == 1 + math.ceil(12 / 3)


def test_should_stop_cancels_between_window_batches():
    net = Threshold()
    asked = []

    def stop_after_first_batch():
        asked.append(True)
        return len(net.batches) > 0

    volume = Volume.from_array(np.zeros((24, 30, 20), np.float32))
    with pytest.raises(Cancelled, match="after 2 of 12 windows") as caught:
        predict_volume(net, volume, make_card(window_batch=2), device="cpu", should_stop=stop_after_first_batch)
    assert isinstance(caught.value, SemisegError)
    assert net.batches == [2]                # one batch ran, no other started
    assert _no_inference_thread_left()


def test_should_stop_before_the_start_runs_nothing():
    net = Threshold()
    with pytest.raises(Cancelled):
        predict_volume(net, Volume.from_array(np.zeros((16, 16, 16), np.float32)), make_card(), device="cpu",
                       should_stop=lambda: True)
    assert net.batches == []


def test_closing_the_generator_stops_the_sweep():
    net = Threshold()
    volume = Volume.from_array(np.zeros((24, 30, 20), np.float32))
    reports = iter_predict_volume(net, volume, make_card(window_batch=2), device="cpu")
    first, second = next(reports), next(reports)
    assert (first.windows_done, second.windows_done) == (0, 2)
    reports.close()
    assert net.batches == [2] and _no_inference_thread_left()


def test_generator_ends_with_the_prediction():
    items = list(iter_predict_volume(Threshold(), Volume.from_array(np.zeros((16, 16, 16), np.float32)),
                                     make_card(), device="cpu"))
    assert isinstance(items[-1], Prediction) and not any(isinstance(i, Prediction) for i in items[:-1])


# -- uncertainty, MC dropout, largest component ------------------------------------------------

def test_uncertainty_is_zero_when_certain_and_one_at_even_odds():
    class EvenOddsAtZero(nn.Module):
        def forward(self, x):                   # logits (0, 0) → p = 0.5 ; (0, 50) → certain
            return torch.cat([torch.zeros_like(x), 50.0 * x], dim=1)

    image = np.zeros((12, 16, 16), np.float32)
    image[:, 8:] = 1.0
    prediction = predict_volume(EvenOddsAtZero(), Volume.from_array(image), make_card(), device="cpu")
    np.testing.assert_allclose(prediction.uncertainty[:, :8], 1.0, atol=1e-6)
    assert prediction.uncertainty[:, 8:].max() < 1e-8
    np.testing.assert_array_equal(prediction.labels[:, :8], 0)   # a tie goes to background
    three_even = torch.full((3, 2, 2, 2), 1 / 3)
    np.testing.assert_allclose(normalised_entropy(three_even), 1.0, atol=1e-6)


class DropoutNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Conv3d(1, 8, 3, padding=1)
        self.dropout = nn.Dropout3d(0.5)
        self.head = nn.Conv3d(8, 2, 1)

    def forward(self, x):
        return self.head(self.dropout(torch.relu(self.features(x))))


def test_mc_dropout_gives_variance_and_leaves_the_network_as_it_was():
    net = DropoutNet().train()
    volume = Volume.from_array(np.random.default_rng(2).normal(size=(16, 20, 16)).astype(np.float32))
    reports = []
    prediction = predict_volume(net, volume, make_card(), device="cpu", mc_samples=4, progress=reports.append)
    assert prediction.mc_variance is not None and prediction.mc_variance.shape == volume.shape
    assert prediction.mc_variance.dtype == np.float32 and prediction.mc_variance.max() > 1e-4
    assert prediction.mc_variance.min() >= 0.0 and prediction.passes == 4
    assert reports[-1].windows_done == reports[-1].windows_total == 4 * prediction.windows
    np.testing.assert_allclose(prediction.probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert net.training and net.dropout.training          # modes restored

    net.eval()
    plain = [predict_volume(net, volume, make_card(), device="cpu") for _ in range(2)]
    assert plain[0].mc_variance is None and not net.training
    np.testing.assert_array_equal(plain[0].probabilities, plain[1].probabilities)  # dropout off


def test_mc_dropout_without_dropout_layers_is_refused():
    with pytest.raises(McDropoutError, match="no dropout layer"):
        predict_volume(nn.Conv3d(1, 2, 1), Volume.from_array(np.zeros((8, 8, 8), np.float32)), make_card(),
                       device="cpu", mc_samples=3)


def test_largest_component_drops_a_small_distant_blob():
    image = np.zeros((24, 32, 32), np.float32)
    image[ball(image.shape, (12, 12, 12), 6)] = 1.0
    image[20:22, 26:28, 26:28] = 1.0            # 8 voxels, far away
    volume = Volume.from_array(image)
    both = predict_volume(Threshold(), volume, make_card(), device="cpu")
    kept = predict_volume(Threshold(), volume, make_card(), device="cpu", largest_component=True)
    assert both.labels[21, 27, 27] == 1 and kept.labels[21, 27, 27] == 0
    np.testing.assert_array_equal(kept.labels, ball(image.shape, (12, 12, 12), 6).astype(np.uint8))
    by_card = predict_volume(Threshold(), volume, make_card(largest_component=True), device="cpu")
    np.testing.assert_array_equal(by_card.labels, kept.labels)


def test_largest_component_uses_full_26_connectivity_per_class():
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[0:2, 0:2, 0:2] = 1
    labels[2, 2, 2] = 1                  # touches the cube at a corner only: same component
    labels[5, 5, 5] = 1                  # isolated: removed
    labels[4:6, 0:2, 0:1] = 2            # class 2 has one component: kept
    keep_largest_component(labels)
    assert labels[2, 2, 2] == 1 and labels[5, 5, 5] == 0 and np.count_nonzero(labels == 2) == 4


# -- devices and running out of memory ----------------------------------------------------------

def test_device_auto_and_unknown_devices():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device("cuda")


def test_memory_fallbacks_halve_then_use_the_cpu():
    assert list(memory_fallbacks(torch.device("cuda:0"), 5)) == [
        (torch.device("cuda:0"), 5), (torch.device("cuda:0"), 2), (torch.device("cuda:0"), 1),
        (torch.device("cpu"), 1)]


def test_out_of_memory_halves_the_window_batch_then_falls_back_to_cpu():
    volume = Volume.from_array((np.random.default_rng(3).random((20, 24, 16)) > 0.5).astype(np.float32))
    expected = predict_volume(Threshold(), volume, make_card(), device="cpu")
    net, reports = OutOfMemoryFirst(failures=3), []
    with pytest.warns(InferenceMemoryWarning) as warned:
        prediction = predict_volume(net, volume, make_card(window_batch=4), device="cpu",
                                    progress=reports.append)
    messages = [str(w.message) for w in warned]
    assert messages == ["inference ran out of memory on cpu with 4 window(s) per batch; retrying on cpu with 2",
                        "inference ran out of memory on cpu with 2 window(s) per batch; retrying on cpu with 1",
                        "inference ran out of memory on cpu with 1 window(s) per batch; retrying on cpu with 1"]
    assert net.batches[:3] == [4, 2, 1] and set(net.batches[3:]) == {1}
    assert prediction.window_batch == 1 and prediction.device == "cpu"
    assert sum("Out of memory" in r.message for r in reports) == 3
    np.testing.assert_array_equal(prediction.probabilities, expected.probabilities)


def test_out_of_memory_everywhere_is_a_user_error():
    with pytest.warns(InferenceMemoryWarning), pytest.raises(SemisegError, match="out of memory even with one"):
        predict_volume(OutOfMemoryFirst(failures=99), Volume.from_array(np.zeros((16, 16, 16), np.float32)),
                       make_card(window_batch=2), device="cpu")
    assert _no_inference_thread_left()


# -- the project's own networks, when present ---------------------------------------------------

def test_a_built_network_predicts_a_volume():
    networks = pytest.importorskip("napari_semiseg.engine.networks")
    spec = NetworkSpec(name="unet-small", num_classes=2, base_filters=4, normalization="batchnorm", dropout=True)
    net = networks.build_network(spec)
    card = make_card(intensity="zscore").replace(network=spec)
    volume = Volume.from_array(np.random.default_rng(4).normal(size=(20, 18, 24)).astype(np.float32),
                               spacing=(2.0, 1.0, 1.0))
    prediction = predict_volume(net, volume, card, device="cpu", mc_samples=2)
    assert prediction.labels.shape == volume.shape and prediction.mc_variance.max() > 0
