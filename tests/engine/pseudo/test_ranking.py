"""Which case next: unlabelled cases ranked by the entropy of their soft labels and by the
disagreement between model versions, on hand-made soft labels with hand-computed scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_semiseg.engine.pseudo import candidate_case_ids, next_case, rank_cases
from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import Project

SHAPE = (4, 5, 6)


def stored(p: float) -> float:
    """The value an 8-bit soft label keeps for p (code = rint(255 p), p as float32)."""
    return float(np.rint(255 * float(np.float32(p)))) / 255


def entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)


@pytest.fixture
def project(tmp_path):
    with Project.create(tmp_path / "project") as project:
        for case_id, split in (("A", "unlabelled"), ("B", "unlabelled"), ("C", "unlabelled"),
                               ("D", "unlabelled"), ("E", "labelled"), ("F", "test")):
            path = tmp_path / f"{case_id}.nii.gz"
            write_volume(path, Volume.from_array(np.zeros(SHAPE, np.float32)))
            project.add_case(case_id, path, split=split)
        yield project


def register(project, tmp_path, name):
    weights = tmp_path / f"{name}.pt"
    weights.write_bytes(name.encode())
    return project.register_model({"name": name}, weights, method="supervised", config={}, metrics={})


def teacher(project, case_id, model, fg):
    version = project.save_label(case_id, (np.asarray(fg) > 0.5).astype(np.uint8) *
                                 np.ones(SHAPE, np.uint8), "pseudo", model_id=model.id)
    return project.save_soft_label(case_id, np.full(SHAPE, fg, np.float32) if np.isscalar(fg) else fg,
                                   label_version_id=version.id, model_id=model.id)


def test_uncertain_and_disputed_cases_come_first_unscored_last(project, tmp_path):
    first = register(project, tmp_path, "first")
    teacher(project, "A", first, 0.5)     # maximal entropy
    teacher(project, "B", first, 0.9)     # confident
    teacher(project, "C", first, 0.9)     # confident, but the next model says the opposite
    teacher(project, "E", first, 0.5)     # has a gold label: not a candidate
    teacher(project, "F", first, 0.5)     # test split: not a candidate
    project.save_label("E", np.zeros(SHAPE, np.uint8), "gold")
    second = register(project, tmp_path, "second")   # now the active model
    teacher(project, "C", second, 0.1)

    ranks = rank_cases(project)

    assert [r.case_id for r in ranks] == ["C", "A", "B", "D"]
    c, a, b, d = ranks
    # C: entropy of the active model's soft label + mean |p_first − p_second|
    assert c.mean_entropy == pytest.approx(entropy(stored(0.1)), rel=1e-5)
    assert c.disagreement == pytest.approx(stored(0.9) - stored(0.1), rel=1e-5)
    assert c.score == pytest.approx(entropy(stored(0.1)) + stored(0.9) - stored(0.1), rel=1e-5)
    assert c.models == (first.id, second.id)
    assert a.score == pytest.approx(entropy(stored(0.5)), rel=1e-5) and a.disagreement == 0.0
    assert b.score == pytest.approx(entropy(stored(0.9)), rel=1e-5)
    assert d.score is None and "no soft label" in d.reasons[0]
    assert any("disagreement" in reason for reason in c.reasons)
    assert next_case(project) == "C"


def test_disagreement_weight_zero_ranks_by_entropy_alone(project, tmp_path):
    first = register(project, tmp_path, "first")
    teacher(project, "A", first, 0.7)
    teacher(project, "B", first, 0.95)
    second = register(project, tmp_path, "second")
    teacher(project, "B", second, 0.05)
    assert [r.case_id for r in rank_cases(project)][:2] == ["B", "A"]
    assert [r.case_id for r in rank_cases(project, disagreement_weight=0.0)][:2] == ["A", "B"]


def test_disagreement_is_the_voxel_mean_of_pairwise_differences(project, tmp_path):
    models = [register(project, tmp_path, f"m{i}") for i in range(3)]
    maps = [np.zeros(SHAPE, np.float32), np.ones(SHAPE, np.float32), np.zeros(SHAPE, np.float32)]
    maps[2][:2] = 1.0   # agrees with m1 on the first 2 of 4 slices, with m0 on the rest
    for model, fg in zip(models, maps):
        teacher(project, "A", model, fg)
    (rank,) = [r for r in rank_cases(project) if r.case_id == "A"]
    # pairs: |m0 − m1| = 1 everywhere, |m0 − m2| = 0.5 on average, |m1 − m2| = 0.5
    assert rank.disagreement == pytest.approx((1 + 0.5 + 0.5) / 3)
    (two,) = [r for r in rank_cases(project, max_teachers=2) if r.case_id == "A"]
    assert two.models == (models[1].id, models[2].id) and two.disagreement == pytest.approx(0.5)


def test_a_corrected_case_leaves_the_ranking(project, tmp_path):
    model = register(project, tmp_path, "m")
    teacher(project, "A", model, 0.5)
    teacher(project, "B", model, 0.8)
    assert next_case(project) == "A"
    pseudo = project.latest_label("A")
    project.save_label("A", np.zeros(SHAPE, np.uint8), "corrected", parent_id=pseudo.id)
    assert "A" not in candidate_case_ids(project)
    assert next_case(project) == "B"


def test_without_soft_labels_cases_keep_project_order_and_none_is_left_at_the_end(project):
    # E is in the labelled split but has no label yet: it is a candidate too; F is a test case
    assert [r.case_id for r in rank_cases(project)] == ["A", "B", "C", "D", "E"]
    for case_id in "ABCDE":
        project.save_label(case_id, np.zeros(SHAPE, np.uint8), "gold")
    assert rank_cases(project) == [] and next_case(project) is None
