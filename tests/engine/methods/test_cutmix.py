"""CrossMatch's 3-D CutMix boxes: inside the patch, of the requested volume, pasted where they
say ("within-patch"); and the official code's axis mix-up, the published recipe's layout ("official")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_semiseg.engine.methods._cutmix import (BoxDraw, CutMixSettings, box_masks, cutmix_box, draw_box,
                                                   paste_boxes, place_box)

CPU_SMALL_PATCH = (32, 48, 48)
LA_PATCH = (80, 112, 112)  # the papers' 112×112×80 (x, y, z) in our (z, y, x)
PATCHES = [CPU_SMALL_PATCH, LA_PATCH, (16, 24, 24), (16, 64, 32)]
SEEDS = range(400)
WITHIN_PATCH = CutMixSettings(probability=1.0, placement="within-patch")


def boxes(patch, settings, seeds=SEEDS):
    return [cutmix_box(patch, np.random.default_rng(seed), settings) for seed in seeds]


def extents(box):
    return [int(stop - start) for start, stop in box]


@pytest.mark.parametrize("patch", PATCHES)
def test_within_patch_boxes_always_lie_inside_the_patch(patch):
    for box in boxes(patch, WITHIN_PATCH):
        assert box.shape == (3, 2) and box.dtype == np.int64
        for (start, stop), side in zip(box, patch):
            assert 0 <= start < stop <= side


@pytest.mark.parametrize("patch", [CPU_SMALL_PATCH, LA_PATCH])
def test_within_patch_boxes_have_the_requested_volume(patch):
    """Edges are ⌊·⌋ of exact edges whose product is V ∈ [0.02, 0.4]·N: so the box has at most
    0.4·N voxels, and growing each edge by one voxel reaches at least 0.02·N."""
    n = np.prod(patch)
    fractions = []
    for box in boxes(patch, WITHIN_PATCH):
        d, h, w = extents(box)
        assert d * h * w <= 0.4 * n
        assert (d + 1) * (h + 1) * (w + 1) >= 0.02 * n
        fractions.append(d * h * w / n)
    # The volume fraction is spread over the whole range, not stuck at one size.
    assert min(fractions) < 0.06 and max(fractions) > 0.3


def test_box_edges_follow_the_aspect_ratio_per_axis():
    """d = ⌊V^⅓⌋ along z, h = ⌊(V·r)^⅓⌋ along y, w = ⌊(V/r)^⅓⌋ along x: so h·w ≈ d², and the
    within-patch placement keeps that order of the axes."""
    draw = draw_box(LA_PATCH, np.random.default_rng(3), WITHIN_PATCH)
    d, h, w = draw.edges
    assert abs(h * w - d * d) <= 2 * (h + w + d)
    assert extents(place_box(draw, LA_PATCH, "within-patch")) == [d, h, w]


def test_within_patch_boxes_reach_every_position_including_the_far_border():
    touches_far = [False, False, False]
    touches_near = [False, False, False]
    for box in boxes((16, 24, 24), WITHIN_PATCH, range(600)):
        for axis, ((start, stop), side) in enumerate(zip(box, (16, 24, 24))):
            touches_far[axis] |= stop == side
            touches_near[axis] |= start == 0
    assert all(touches_far) and all(touches_near)


def test_a_box_comes_with_the_requested_probability():
    drawn = [extents(b)[0] > 0 for b in boxes(CPU_SMALL_PATCH, CutMixSettings(probability=0.5, placement="within-patch"), range(2000))]
    assert 0.45 < np.mean(drawn) < 0.55
    assert not any(extents(b)[0] for b in boxes(CPU_SMALL_PATCH, CutMixSettings(probability=0.0, placement="within-patch"), range(50)))


def test_the_same_generator_state_gives_the_same_box():
    settings = WITHIN_PATCH
    assert np.array_equal(cutmix_box(LA_PATCH, np.random.default_rng(9), settings),
                          cutmix_box(LA_PATCH, np.random.default_rng(9), settings))


def official_layout_mask(draw: BoxDraw, patch) -> np.ndarray:
    """The official code's mask, rebuilt here: an (X, Y, Z) array (its (112, 112, 80)) written
    as mask[z:z+d, y:y+h, x:x+w], then transposed to our (z, y, x) order."""
    (d, h, w), (z, y, x) = draw.edges, draw.starts
    size_z, size_y, size_x = patch
    mask = np.zeros((size_x, size_y, size_z), dtype=bool)
    mask[z:z + d, y:y + h, x:x + w] = True  # numpy truncates the x range at size_z silently
    return mask.transpose(2, 1, 0)


def mask_of(box, patch) -> np.ndarray:
    return box_masks(torch.from_numpy(box)[None], patch)[0].numpy()


@pytest.mark.parametrize("draw", [
    BoxDraw(edges=(40, 50, 30), starts=(10, 20, 30)),   # inside both ways
    BoxDraw(edges=(40, 50, 30), starts=(10, 20, 70)),   # x range [70, 100) cut at Z = 80
    BoxDraw(edges=(40, 50, 20), starts=(10, 20, 85)),   # x range beyond Z: empty box
    BoxDraw(edges=(70, 60, 100), starts=(5, 40, 2)),
])
def test_official_placement_reproduces_the_official_axis_mix_up(draw):
    box = place_box(draw, LA_PATCH, "official")
    assert np.array_equal(mask_of(box, LA_PATCH), official_layout_mask(draw, LA_PATCH))


def test_official_boxes_are_truncated_or_empty_on_the_la_patch():
    """Drawn boxes (with the official exclusive bounds) lose voxels when their x start lands
    near or beyond Z = 80, and sometimes vanish although the coin said "box"."""
    settings = CutMixSettings(probability=1.0, placement="official")
    n = np.prod(LA_PATCH)
    empty = truncated = 0
    for seed in range(400):
        draw = draw_box(LA_PATCH, np.random.default_rng(seed), settings)
        box = place_box(draw, LA_PATCH, "official")
        assert np.array_equal(mask_of(box, LA_PATCH), official_layout_mask(draw, LA_PATCH))
        volume = np.prod(extents(box))
        empty += volume == 0
        truncated += 0 < volume < np.prod(draw.edges)
        assert volume <= 0.4 * n
    assert empty > 0 and truncated > 0
    within_patch = [np.prod(extents(b)) for b in boxes(LA_PATCH, WITHIN_PATCH)]
    assert min(within_patch) > 0


def test_box_masks_match_the_ranges_and_paste_takes_only_the_box_from_the_source():
    patch = (4, 5, 6)
    ranges = np.array([[[1, 3], [0, 2], [2, 6]], [[0, 0], [0, 0], [0, 0]]], dtype=np.int64)
    masks = box_masks(torch.from_numpy(ranges), patch)
    expected = np.zeros((2, *patch), dtype=bool)
    expected[0, 1:3, 0:2, 2:6] = True
    assert masks.dtype == torch.bool and np.array_equal(masks.numpy(), expected)

    image, source = torch.zeros(2, 2, *patch), torch.ones(2, 2, *patch)
    mixed = paste_boxes(image, source, masks)
    assert torch.equal(mixed, torch.from_numpy(np.repeat(expected[:, None], 2, axis=1)).float())
    assert image.abs().sum() == 0  # inputs untouched
