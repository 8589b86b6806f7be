"""The synthetic left-atrium phantom: what tests and demos rely on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_semiseg.samples import PhantomStyle, make_la_phantom

CLEAN = PhantomStyle(noise=0.0, bias=0.0)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 4), (12, 20, 9), (32, 48, 48)])
def test_any_shape_gives_a_float_image_and_a_nonempty_binary_label(shape):
    image, label = make_la_phantom(shape, (1.0, 1.0, 1.0), seed=1)
    assert image.shape == label.shape == shape
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1} and label.sum() > 0
    assert np.isfinite(image).all()


def test_same_seed_same_volume_other_seed_other_volume():
    first = make_la_phantom((24, 32, 32), seed=7)
    again = make_la_phantom((24, 32, 32), seed=7)
    other = make_la_phantom((24, 32, 32), seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[1], other[1])
    assert not np.array_equal(first[0], other[0])


def test_label_is_one_blob_with_thin_branches_sticking_out():
    _, label = make_la_phantom((48, 64, 64), seed=3)
    _, count = ndimage.label(label)
    assert count == 1, "blob and branches form one connected structure"
    # An opening with a ball wider than the branches removes them but keeps the blob.
    cross = ndimage.generate_binary_structure(3, 1)
    opened = ndimage.binary_opening(label, structure=cross, iterations=3)
    branch_voxels = label.sum() - opened.sum()
    assert 0.01 * label.sum() < branch_voxels < 0.5 * label.sum()


def test_foreground_is_brighter_than_background_but_not_by_much():
    image, label = make_la_phantom((40, 64, 64), seed=2)
    inside, outside = image[label == 1], image[label == 0]
    contrast = inside.mean() - outside.mean()
    assert contrast > 0.5 * outside.std(), "the atrium is visibly brighter"
    # Low contrast: the two intensity distributions overlap.
    assert np.percentile(inside, 10) < np.percentile(outside, 90)


def test_boundary_is_blurred_not_a_step():
    image, label = make_la_phantom((40, 64, 64), seed=4, style=CLEAN)
    inside_level = np.median(image[ndimage.binary_erosion(label, iterations=4)])
    outside_mask = ~ndimage.binary_dilation(label, iterations=6)
    outside_level = np.median(image[outside_mask])
    # Voxels right at the label boundary (both sides) carry intermediate intensities.
    boundary = label.astype(bool) ^ ndimage.binary_erosion(label)
    fraction = (image[boundary] - outside_level) / (inside_level - outside_level)
    assert 0.2 < np.median(fraction) < 0.8
    # A ray from the blob's centre outwards rises over several voxels, not in one jump.
    z, y, x = (int(round(c)) for c in ndimage.center_of_mass(label))
    ray = image[z, y, x:]
    steps = np.abs(np.diff(ray))
    assert steps.max() < 0.6 * abs(inside_level - outside_level)


def test_bias_field_makes_the_background_uneven_and_noise_is_there():
    image, label = make_la_phantom((32, 64, 64), seed=5, style=PhantomStyle(noise=0.0))
    background = np.where(ndimage.binary_dilation(label, iterations=8), np.nan, image)
    halves = np.nanmean(background[:, :, :32]), np.nanmean(background[:, :, 32:])
    quarters = [np.nanmean(b) for b in np.array_split(background, 2, axis=1)]
    assert max(abs(halves[0] - halves[1]), abs(quarters[0] - quarters[1])) > 0.05
    noisy, _ = make_la_phantom((32, 64, 64), seed=5)
    assert np.std(noisy - image) > 0.1


def test_spacing_is_in_mm_so_a_finer_grid_gives_the_same_anatomy():
    _, coarse = make_la_phantom((20, 32, 32), (1.25, 1.25, 1.25), seed=6)
    _, fine = make_la_phantom((40, 64, 64), (0.625, 0.625, 0.625), seed=6)
    assert fine.sum() / 8 == pytest.approx(coarse.sum(), rel=0.15)


def test_a_bad_shape_is_refused():
    with pytest.raises(ValueError, match="shape"):
        make_la_phantom((0, 10, 10))
