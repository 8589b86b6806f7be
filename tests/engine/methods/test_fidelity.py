"""Fidelity to the papers' official code (issue 14, items 1-4), each against values worked out
by hand or from the formulas the official code runs:

1. LA ``mri_norm2.h5`` volumes are fed as stored by the la-vnet card (the official code does
   not z-score the crop again); any other volume is z-scored over the whole volume.
2. CrossMatch's strong views: torchio's gamma sign(I)·|I|^γ on the z-scored image, and
   scipy's Gaussian blur (truncate 4σ, "reflect" borders).
3. CrossMatch's CutMix box: the official layout by default ("official", alias "bug-compatible").
4. SS-Net's prototype memory keeps the previous step's prototypes of a class that has no
   correctly predicted voxel this step (the official ``FeatureMemory``).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from data_factory import to_sitk, write_la_h5
from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.inference import prepare_input
from napari_semiseg.engine.methods import create_method
from napari_semiseg.engine.methods._cutmix import BoxDraw, cutmix_box, place_box
from napari_semiseg.engine.methods._prototypes import PrototypeMemory, voxel_vectors
from napari_semiseg.engine.methods._strong_aug import apply_gamma, gaussian_blur, gaussian_kernel
from napari_semiseg.engine.training import CaseSource, prepare_case
from napari_semiseg.io import read_volume

LA_PATCH = (80, 112, 112)  # the papers' 112×112×80 (x, y, z) in (z, y, x)


# -- 1. LA input normalisation ----------------------------------------------------------------------

def la_like_crop(shape=(6, 10, 12)) -> np.ndarray:
    """A crop of a z-scored scan: its own mean and std are far from 0 and 1 (the LA test crops
    range over mean 0.24-1.94, std 0.46-1.66)."""
    return (1.5 + 0.8 * np.random.default_rng(3).normal(size=shape)).astype(np.float32)


def test_la_vnet_feeds_an_la_h5_volume_as_stored_in_training_and_inference(tmp_path):
    image = la_like_crop()
    label = (image > 1.5).astype(np.uint8)
    path = write_la_h5(tmp_path / "mri_norm2.h5", image, label)
    card = load_card("la-vnet")
    assert card.preprocessing.intensity == "zscore-once"
    volume = read_volume(path)
    assert volume.zscored
    np.testing.assert_array_equal(prepare_input(volume, card.preprocessing).image, image)
    prepared = prepare_case(CaseSource.from_files("LA01", path, path), card)
    np.testing.assert_array_equal(prepared.image[0], image)
    in_memory = prepare_case(CaseSource.from_arrays("LA01", image, label, (0.625,) * 3, zscored=True), card)
    np.testing.assert_array_equal(in_memory.image[0], image)
    # cpu-small keeps "zscore" (its card says why: the CPU protocol's NIfTI copies).
    small = load_card("cpu-small")
    assert small.preprocessing.intensity == "zscore"
    expected = (image.astype(np.float64) - image.mean(dtype=np.float64)) / image.std(dtype=np.float64)
    np.testing.assert_allclose(prepare_input(volume, small.preprocessing).image, expected, atol=1e-5)


def test_any_other_volume_is_z_scored_over_the_whole_volume(tmp_path):
    import SimpleITK as sitk
    image = la_like_crop()
    path = tmp_path / "scan.nii.gz"
    sitk.WriteImage(to_sitk(image, spacing=(0.625,) * 3), str(path))
    expected = (image.astype(np.float64) - image.mean(dtype=np.float64)) / image.std(dtype=np.float64)
    card = load_card("la-vnet")
    volume = read_volume(path)
    assert not volume.zscored
    np.testing.assert_allclose(prepare_input(volume, card.preprocessing).image, expected, atol=1e-5)
    prepared = prepare_case(CaseSource.from_arrays("scan", image, spacing=(0.625,) * 3), card)
    np.testing.assert_allclose(prepared.image[0], expected, atol=1e-5)


# -- 2. CrossMatch's strong views ----------------------------------------------------------------------

def test_gamma_is_torchios_signed_power_of_the_z_scored_image():
    image = torch.tensor([[[[-4.0, -1.0, 0.0, 0.25, 4.0]]]])
    # sign(I)·|I|^½: −2, −1, 0, 0.5, 2 (no rescaling to [0, 1]: the range changes)
    assert apply_gamma(image, 0.5).flatten().tolist() == pytest.approx([-2.0, -1.0, 0.0, 0.5, 2.0])
    assert apply_gamma(image, 2.0).flatten().tolist() == pytest.approx([-16.0, -1.0, 0.0, 0.0625, 16.0])


def test_blur_kernel_reaches_four_standard_deviations_as_scipys():
    # scipy: radius = int(truncate·σ + 0.5) with truncate 4 → 4 for σ = 1, 6 for σ = 1.5, 0 for σ = 0.1
    assert [gaussian_kernel(s).numel() for s in (1.0, 1.5, 0.1)] == [9, 13, 1]
    taps = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    np.testing.assert_allclose(gaussian_kernel(1.0).numpy(), taps / taps.sum(), rtol=1e-6)


def test_blur_reflects_the_border_including_the_edge_voxel():
    """A row 0, 1, 0, 0, … blurred with σ = 1: scipy's "reflect" continues it to the left as
    … 1, 0 | 0, 1, 0 …, so the first voxel gets g1 (its right neighbour) + g2 (the reflected
    one two to the left); replicated borders would give g1 alone."""
    row = np.zeros(10, dtype=np.float32)
    row[1] = 1.0
    image = torch.from_numpy(row).view(1, 1, 1, 10)
    out = gaussian_blur(image, (0.1, 0.1, 1.0)).flatten().numpy()  # σ 0.1: radius 0, no blur on z, y
    g = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    g /= g.sum()
    assert out[0] == pytest.approx(g[4 + 1] + g[4 + 2], rel=1e-5)
    assert out[1] == pytest.approx(g[4] + g[4 + 3], rel=1e-5)  # itself + the reflected copy three away


@pytest.mark.parametrize("stds", [(1.0, 1.0, 1.0), (2.0, 1.5, 0.4)])
def test_blur_equals_scipy_gaussian_filter_reflect_truncate_4(stds):
    image = np.random.default_rng(7).normal(size=(1, 6, 16, 20)).astype(np.float32)  # z shorter than 4σ
    ours = gaussian_blur(torch.from_numpy(image), stds).numpy()[0]
    reference = ndimage.gaussian_filter(image[0].astype(np.float64), stds, mode="reflect", truncate=4.0)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


# -- 3. CrossMatch's CutMix box ------------------------------------------------------------------------

def test_crossmatch_uses_the_official_box_layout_and_accepts_the_old_names():
    card = dataclasses.replace(load_card("cpu-small"), patch_size=(16, 24, 24))
    assert create_method("crossmatch", card).params_dict()["cutmix_box"] == "official"
    assert create_method("crossmatch", card, {"cutmix_box": "bug-compatible"}).params_dict()["cutmix_box"] == "official"
    assert create_method("crossmatch", card, {"cutmix_box": "correct"}).params_dict()["cutmix_box"] == "within-patch"


def test_the_official_box_writes_the_z_range_on_x_and_the_x_range_on_z():
    """Edges (d, h, w) = (40, 50, 30), starts (z0, y0, x0) = (10, 20, 70): the official code
    writes [z0, z0 + d) = [10, 50) on x and [x0, x0 + w) = [70, 100) on z, cut at Z = 80."""
    box = place_box(BoxDraw(edges=(40, 50, 30), starts=(10, 20, 70)), LA_PATCH)
    assert box.tolist() == [[70, 80], [20, 70], [10, 50]]


def test_official_boxes_never_reach_x_80_on_the_la_patch():
    """The x axis receives the z range, whose start is drawn below Z − d (exclusive): so its
    stop is at most 79, where a within-patch box reaches x = 112."""
    settings = create_method("crossmatch", load_card("cpu-small")).cutmix
    settings = dataclasses.replace(settings, probability=1.0)
    official = [cutmix_box(LA_PATCH, np.random.default_rng(seed), settings) for seed in range(300)]
    within = [cutmix_box(LA_PATCH, np.random.default_rng(seed), dataclasses.replace(settings, placement="within-patch"))
              for seed in range(300)]
    assert max(int(box[2, 1]) for box in official) <= 79
    assert max(int(box[2, 1]) for box in within) > 100
    volume = [np.mean([np.prod(box[:, 1] - box[:, 0]) for box in boxes]) for boxes in (official, within)]
    assert volume[0] < volume[1]  # the official boxes mix less volume


# -- 4. SS-Net's prototype memory ----------------------------------------------------------------------

def test_a_class_without_candidates_keeps_its_previous_prototypes():
    memory = PrototypeMemory(2)
    first, second = torch.ones(3, 4), torch.zeros(2, 4)
    assert memory.update([None, first])[1] is first
    assert memory.update([None, None]) == [None, first]
    assert memory.update([None, second])[1] is second


def test_ss_net_separates_classes_with_the_last_memory_when_nothing_is_predicted_correctly():
    torch.manual_seed(0)
    card = dataclasses.replace(load_card("cpu-small"), patch_size=(8, 24, 24))
    method = create_method("ss-net", card)
    method.set_training(True)
    heads = method.network("heads")
    channels = heads.projection[0].in_features
    shape = (2, 3, 3)
    foreground = torch.zeros(shape, dtype=torch.long)
    foreground[:, 1:, 1:] = 1  # 8 of 18 voxels
    # Step 1: the labelled half is predicted exactly right: class 1 gets prototypes.
    embedding = torch.randn(2, channels, *shape)
    prediction = torch.stack([foreground, foreground])
    method._class_separation(embedding, prediction, foreground[None], 1)
    kept = method.prototype_memory.banks[1]
    assert kept is not None and kept.shape[0] == 8
    # Step 2: the label says background everywhere the network says foreground: no correct
    # foreground voxel, so the memory stays; the unlabelled stream is separated against it.
    embedding = torch.randn(2, channels, *shape)
    labels = torch.zeros((1, *shape), dtype=torch.long)
    lab, unl = method._class_separation(embedding, prediction, labels, 1)
    assert method.prototype_memory.banks[1] is kept
    expected = heads(voxel_vectors(embedding[1:]), prediction[1:].reshape(-1), [None, kept])
    assert unl.item() == pytest.approx(expected.item(), rel=1e-6)
    assert unl.item() > 0 and not math.isnan(lab.item())
