"""The teacher team (PLC-KD-style, reconstructed): its invariant on random soft labels, each
step on hand-built arrays with expected values worked out here, and the interactive loop on a
real project (a clinician corrects a pseudo-label, the case's soft label follows)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_semiseg.engine.pseudo import (METHOD_LABEL, RECONSTRUCTED, STEP_NAMES, CorrectionError,
                                          CorrectionParams, boundary_assistant,
                                          correct_case_soft_label, correct_soft_labels,
                                          false_pixel_assistant, force_correct_side, pseudo_label,
                                          signed_boundary_distance, similarity_correction,
                                          soft_label_histograms)
from pseudo_support import make_project, register_tiny_model


def random_case(seed: int, shape=(7, 9, 11), dtype=np.float32):
    """Random soft label (with exact 0, 0.5 and 1 sprinkled in), gold label, partial mask, image."""
    rng = np.random.default_rng(seed)
    prob = rng.random(shape)
    special = rng.random(shape)
    prob[special < 0.05] = 0.5
    prob[(special >= 0.05) & (special < 0.08)] = 0.0
    prob[(special >= 0.08) & (special < 0.11)] = 1.0
    gold = (rng.random(shape) < 0.4).astype(np.uint8)
    mask = rng.random(shape) < 0.6
    image = rng.normal(size=shape) + 2.0 * gold
    return prob.astype(dtype), gold, mask, image


def on_correct_side(values, gold):
    return np.where(gold > 0, values > 0.5, values < 0.5)


# -- the invariant --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("with_image", [True, False])
@pytest.mark.parametrize("forcing", ["clamp", "reflect"])
def test_after_correction_every_labelled_voxel_is_right_and_the_rest_untouched(seed, dtype, with_image,
                                                                               forcing):
    prob, gold, mask, image = random_case(seed, dtype=dtype)
    result = correct_soft_labels(prob, gold_mask=mask, gold_label=gold,
                                 image=image if with_image else None,
                                 params=CorrectionParams(forcing=forcing))
    corrected = result.corrected

    assert corrected.dtype == prob.dtype and corrected.shape == prob.shape
    # argmax (foreground iff > 0.5) equals the gold label on every labelled voxel
    assert on_correct_side(corrected, gold)[mask].all()
    assert ((corrected > 0.5) == (gold > 0))[mask].all()
    # bit-identical elsewhere
    assert corrected[~mask].tobytes() == prob[~mask].tobytes()
    assert 0.0 <= corrected.min() and corrected.max() <= 1.0
    # the counts add up: every voxel that started wrong was fixed by exactly one step (net)
    wrong_before = int((mask & ~on_correct_side(prob, gold)).sum())
    assert wrong_before > 0
    assert result.wrong_before == wrong_before == result.n_crossed
    assert sum(step.fixed for step in result.steps) == wrong_before
    assert [step.name for step in result.steps] == list(STEP_NAMES)
    assert result.steps[-1].still_wrong == 0
    still = [step.still_wrong for step in result.steps]
    assert still == sorted(still, reverse=True)
    assert all(step.changed <= mask.sum() for step in result.steps)
    # crossed: exactly the labelled voxels that started on the wrong side
    np.testing.assert_array_equal(result.crossed, mask & ~on_correct_side(prob, gold))


def test_steps_one_to_three_never_make_a_correct_voxel_wrong():
    prob, gold, mask, image = random_case(11, dtype=np.float64)
    q = prob.copy()
    steps = [lambda q: false_pixel_assistant(q, gold > 0, mask, 0.5),
             lambda q: boundary_assistant(q, gold > 0, mask, band=3, softness=1.0, weight=0.7),
             lambda q: similarity_correction(q, gold > 0, mask, image, 0.25)]
    for step in steps:
        right_before = mask & on_correct_side(q, gold)
        q_next = step(q)
        assert on_correct_side(q_next, gold)[right_before].all()
        np.testing.assert_array_equal(q_next[~mask], prob[~mask])
        q = q_next


def test_an_all_correct_teacher_is_left_where_no_step_needs_it():
    gold = np.zeros((1, 1, 10), np.uint8)
    gold[..., 5:] = 1
    prob = np.where(gold > 0, 0.9, 0.1).astype(np.float32)
    params = CorrectionParams(boundary_weight=0.0)
    result = correct_soft_labels(prob, gold_mask=np.ones(prob.shape, bool), gold_label=gold,
                                 params=params)
    assert result.corrected.tobytes() == prob.tobytes()
    assert [step.changed for step in result.steps] == [0, 0, 0, 0] and result.n_crossed == 0


# -- each step by hand ---------------------------------------------------------------------------

def test_false_pixel_assistant_pulls_only_false_voxels_part_of_the_way():
    q = np.array([0.8, 0.3, 1.0, 0.6, 0.2, 0.5]).reshape(1, 1, 6)
    gold = np.array([0, 1, 0, 1, 0, 1], bool).reshape(1, 1, 6)
    mask = np.array([1, 1, 1, 1, 1, 0], bool).reshape(1, 1, 6)
    out = false_pixel_assistant(q, gold, mask, pull=0.5)
    # 0.8 (bg, false) → 0.8 + 0.5·(0 − 0.8) = 0.4 ; 0.3 (fg, false) → 0.3 + 0.5·0.7 = 0.65
    # 1.0 (bg, false) → 0.5: still on the line, a hard false voxel ; 0.6, 0.2 right ; 0.5 unlabelled
    np.testing.assert_allclose(out.ravel(), [0.4, 0.65, 0.5, 0.6, 0.2, 0.5])


def test_boundary_distance_is_signed_and_half_a_voxel_at_the_boundary():
    gold = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool).reshape(1, 1, 8)
    distance = signed_boundary_distance(gold, np.ones(gold.shape, bool))
    np.testing.assert_allclose(distance.ravel(), [-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5])
    # only labelled voxels define the boundary: hide the two voxels next to it
    mask = np.array([1, 1, 1, 0, 0, 1, 1, 1], bool).reshape(1, 1, 8)
    partial = signed_boundary_distance(gold, mask)
    assert partial.ravel()[5] == pytest.approx(3 - 0.5)   # nearest labelled background is voxel 2
    assert partial.ravel()[2] == pytest.approx(-(3 - 0.5))
    assert signed_boundary_distance(gold, gold) is None   # one class only: no boundary


@pytest.mark.parametrize("seed", range(3))
def test_distances_near_the_boundary_are_exact_when_only_those_are_asked_for(seed):
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices((20, 30, 40))
    ball = (zz - 10) ** 2 + (yy - 12 - seed) ** 2 + (xx - 25) ** 2 < 5 ** 2
    mask = rng.random(ball.shape) < 0.8
    full = signed_boundary_distance(ball, mask)
    near = signed_boundary_distance(ball, mask, within=3.0)
    close = np.abs(full) + 0.5 < 3.0                       # edt < 3
    assert close.sum() > 100 and (~close).sum() > 1000      # the box is smaller than the volume
    np.testing.assert_array_equal(near[close], full[close])
    assert (np.abs(near[~close]) + 0.5 >= 3.0).all()
    assert (np.sign(near) == np.sign(full)).all()


def test_boundary_assistant_blends_towards_the_smoothed_label_in_the_band():
    gold = np.array([0, 0, 0, 0, 1, 1, 1, 1], bool).reshape(1, 1, 8)
    q = np.array([0.1, 0.2, 0.3, 0.7, 0.4, 0.8, 0.9, 0.95]).reshape(1, 1, 8)
    out = boundary_assistant(q, gold, np.ones(gold.shape, bool), band=2, softness=1.0, weight=0.8)
    expected = []
    for value, d in zip(q.ravel(), [-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5]):
        depth = abs(d) - 0.5                     # 0 on the layers touching the boundary
        w = 0.8 * (1 - depth / 2) if depth < 2 else 0.0
        s = 1 / (1 + math.exp(-d))
        expected.append((1 - w) * value + w * s)
    np.testing.assert_allclose(out.ravel(), expected)
    # the two false voxels at the boundary moved towards their class
    assert out.ravel()[3] < 0.7 and out.ravel()[4] > 0.4
    assert out.ravel()[0] == 0.1 and out.ravel()[7] == 0.95   # outside the band


def test_similarity_correction_uses_similar_intensities_of_the_same_class():
    #            fg: false  ref   ref   false(bright)  | bg: ref  ref   false  unlabelled
    q = np.array([0.2, 0.9, 0.7, 0.1, 0.3, 0.05, 0.8, 0.99]).reshape(1, 1, 8)
    gold = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool).reshape(1, 1, 8)
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool).reshape(1, 1, 8)
    image = np.array([10.0, 10.1, 20.0, 40.0, 0.0, 30.0, 29.5, 500.0]).reshape(1, 1, 8)
    labelled = image[mask]
    features = (image.ravel() - labelled.mean()) / labelled.std()
    tolerance = 0.05
    assert abs(features[0] - features[1]) <= tolerance < abs(features[0] - features[2])
    assert min(abs(features[3] - features[i]) for i in (1, 2)) > tolerance
    assert abs(features[6] - features[5]) <= tolerance < abs(features[6] - features[4])

    out = similarity_correction(q, gold, mask, image, tolerance).ravel()
    assert out[0] == pytest.approx(0.9)              # its intensity twin among fg references
    assert out[3] == pytest.approx((0.9 + 0.7) / 2)  # no twin: the class mean
    assert out[6] == pytest.approx(0.05)             # bg twin
    np.testing.assert_array_equal(out[[1, 2, 4, 5, 7]], q.ravel()[[1, 2, 4, 5, 7]])

    without_image = similarity_correction(q, gold, mask, None, tolerance).ravel()
    assert without_image[0] == pytest.approx(0.8) and without_image[3] == pytest.approx(0.8)
    assert without_image[6] == pytest.approx((0.3 + 0.05) / 2)


def test_similarity_leaves_a_class_without_correct_references_to_the_forcing():
    q = np.array([0.2, 0.3, 0.1]).reshape(1, 1, 3)
    gold = np.array([1, 1, 0], bool).reshape(1, 1, 3)
    out = similarity_correction(q, gold, np.ones(q.shape, bool), None, 0.1)
    np.testing.assert_array_equal(out, q)


@pytest.mark.parametrize("mode, expected", [("clamp", [0.51, 0.51, 0.7, 0.49, 0.49, 0.3]),
                                            ("reflect", [0.51, 0.8, 0.7, 0.49, 0.1, 0.3])])
def test_final_forcing_moves_wrong_voxels_just_across_or_reflects_them(mode, expected):
    q = np.array([0.5, 0.2, 0.7, 0.5, 0.9, 0.3]).reshape(1, 1, 6)
    gold = np.array([1, 1, 1, 0, 0, 0], bool).reshape(1, 1, 6)
    out = force_correct_side(q, gold, np.ones(q.shape, bool), margin=0.01, mode=mode)
    np.testing.assert_allclose(out.ravel(), expected)


def test_progressive_steps_share_the_work_as_designed():
    # voxel 0: mildly false (the pull fixes it); voxel 1: certainly false, the pull leaves it on
    # 0.5, and its intensity twin among the correct foreground voxels (voxel 3) fixes it; the
    # boundary step is switched off (band 0).
    q = np.array([0.3, 0.0, 0.9, 0.8, 0.1]).reshape(1, 1, 5)
    gold = np.array([1, 1, 1, 1, 0], bool).reshape(1, 1, 5)
    image = np.array([1.0, 5.0, 9.0, 5.0, 0.0]).reshape(1, 1, 5)
    params = CorrectionParams(boundary_band=0, similarity_tolerance=0.01)
    result = correct_soft_labels(q, gold_mask=np.ones(q.shape, bool), gold_label=gold, image=image,
                                 params=params)
    fixed = {step.name: step.fixed for step in result.steps}
    assert fixed == {"false-pixel assistant": 1, "boundary assistant": 0,
                     "similarity correction": 1, "final forcing": 0}
    assert result.corrected.ravel()[0] == pytest.approx(0.3 + 0.5 * 0.7)
    assert result.corrected.ravel()[1] == pytest.approx(0.8)   # intensity twin: voxel 3
    # voxel 2 (0.9) is fg and right: untouched; the bg voxel too
    assert result.corrected.ravel()[2] == 0.9 and result.corrected.ravel()[4] == 0.1


def test_bad_inputs_and_parameters_are_named():
    prob = np.full((2, 3, 4), 0.5, np.float32)
    mask = np.ones(prob.shape, bool)
    gold = np.zeros(prob.shape, np.uint8)
    with pytest.raises(CorrectionError, match="gold mask has shape"):
        correct_soft_labels(prob, gold_mask=mask[:1], gold_label=gold)
    with pytest.raises(CorrectionError, match="boolean"):
        correct_soft_labels(prob, gold_mask=mask.astype(np.uint8), gold_label=gold)
    with pytest.raises(CorrectionError, match="0..1"):
        correct_soft_labels(prob * 3, gold_mask=mask, gold_label=gold)
    with pytest.raises(CorrectionError, match="floating"):
        correct_soft_labels(gold, gold_mask=mask, gold_label=gold)
    with pytest.raises(CorrectionError, match="forcing_margin"):
        CorrectionParams(forcing_margin=0.5)


def test_it_says_it_is_a_reconstruction():
    assert RECONSTRUCTED is True and "reconstructed" in METHOD_LABEL
    prob, gold, mask, _ = random_case(0)
    record = correct_soft_labels(prob, gold_mask=mask, gold_label=gold).describe()
    assert record["reconstructed"] is True and record["method"] == METHOD_LABEL
    assert sum(step["fixed"] for step in record["steps"]) == record["crossed"]


def test_histograms_count_each_class_before_and_after():
    prob, gold, mask, image = random_case(3)
    result = correct_soft_labels(prob, gold_mask=mask, gold_label=gold, image=image)
    histograms = soft_label_histograms(prob, result.corrected, gold, mask, bins=10)
    n_fg, n_bg = int((mask & (gold > 0)).sum()), int((mask & (gold == 0)).sum())
    assert histograms.before["foreground"].sum() == histograms.after["foreground"].sum() == n_fg
    assert histograms.before["background"].sum() == histograms.after["background"].sum() == n_bg
    # after correction, foreground sits in 0.5..1 and background in 0..0.5 (supplement Fig. 2)
    assert histograms.after["foreground"][:5].sum() == 0 and histograms.after["background"][5:].sum() == 0
    assert histograms.wrong_after == {"foreground": 0, "background": 0}
    assert sum(histograms.wrong_before.values()) == result.n_crossed


# -- the interactive loop on a project -----------------------------------------------------------------

@pytest.fixture
def corrected_case(tmp_path):
    with make_project(tmp_path, unlabelled=1, labelled=0) as project:
        register_tiny_model(project, tmp_path)
        pseudo_label(project, device="cpu")
        pseudo = project.latest_label("u0")
        clinician = np.zeros(project.case("u0").geometry.shape, np.uint8)
        clinician[6:18, 8:24, 8:24] = 1
        corrected = project.save_label("u0", clinician, "corrected", parent_id=pseudo.id,
                                       author="dr-test")
        yield project, pseudo, corrected, clinician


def test_a_corrected_case_gets_a_corrected_soft_label_and_keeps_the_original(corrected_case):
    project, pseudo, corrected, clinician = corrected_case
    (teacher,) = project.soft_labels("u0")
    teacher_values = project.load_soft_label(teacher)

    correction = correct_case_soft_label(project, "u0")

    assert correction.original.id == teacher.id and correction.label_version.id == corrected.id
    stored = correction.corrected
    assert (stored.kind, stored.parent_id, stored.label_version_id, stored.model_id) == \
        ("corrected", teacher.id, corrected.id, teacher.model_id)
    assert project.soft_label_for(corrected.id).id == stored.id
    assert project.soft_label_for(pseudo.id).id == teacher.id
    np.testing.assert_array_equal(project.load_soft_label(teacher), teacher_values)  # original kept
    # the stored corrected soft label agrees with the clinician on every voxel
    after = project.load_soft_label(stored)[1]
    np.testing.assert_array_equal(after > 0.5, clinician > 0)
    assert not (after == 0.5).any()
    # crossed: exactly where the teacher disagreed with the clinician
    before = teacher_values[1]
    np.testing.assert_array_equal(correction.crossed, (before > 0.5) != (clinician > 0))
    assert correction.result.n_crossed > 0
    assert stored.details["reconstructed"] is True
    assert stored.details["crossed"] == correction.result.n_crossed
    assert stored.summary.foreground_fraction == pytest.approx((clinician > 0).mean())
    assert project.check() == []


def test_correcting_again_reuses_the_stored_soft_label(corrected_case):
    project = corrected_case[0]
    first = correct_case_soft_label(project, "u0")
    second = correct_case_soft_label(project, "u0")
    assert second.reused and second.corrected.id == first.corrected.id
    assert len(project.soft_labels("u0", kind="corrected")) == 1
    third = correct_case_soft_label(project, "u0", params=CorrectionParams(forcing="reflect"))
    assert not third.reused and len(project.soft_labels("u0", kind="corrected")) == 2


def test_a_case_without_correction_or_soft_label_is_refused_with_a_reason(tmp_path):
    with make_project(tmp_path, unlabelled=1, labelled=1) as project:
        with pytest.raises(CorrectionError, match="no corrected or gold label"):
            correct_case_soft_label(project, "u0")
        with pytest.raises(CorrectionError, match="no soft label to correct"):
            correct_case_soft_label(project, "g0")
