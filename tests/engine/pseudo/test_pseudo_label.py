"""Pseudo-labelling a real (tiny) project with a registered model: what is stored, what is
reported, and that stopping never leaves half a case."""

from __future__ import annotations

import numpy as np
import pytest

from napari_semiseg.engine._model_store import load_model_version
from napari_semiseg.engine.inference import predict_volume
from napari_semiseg.engine.pseudo import (PseudoLabelCase, PseudoLabelProgress, PseudoLabelSummary,
                                          iter_pseudo_label, pseudo_label)
from napari_semiseg.errors import ProjectError
from napari_semiseg.project import SOFT_LABEL_MAX_ERROR, Project
from pseudo_support import make_project, register_tiny_model


@pytest.fixture
def project(tmp_path):
    with make_project(tmp_path) as project:
        yield project


@pytest.fixture
def model(project, tmp_path):
    return register_tiny_model(project, tmp_path)


def test_the_registered_model_loads_with_its_card(project, model):
    net, card = load_model_version(project)
    assert card.patch_size == (16, 16, 16)
    assert not net.training
    assert sum(p.numel() for p in net.parameters()) > 10_000


def test_each_unlabelled_case_gets_a_pseudo_label_and_its_soft_label(project, model):
    summary = pseudo_label(project, device="cpu")

    assert [c.case_id for c in summary.cases] == ["u0", "u1"]
    assert not summary.cancelled and summary.model_id == model.id
    net, card = load_model_version(project, model.id)
    for stored in summary.cases:
        version = project.label_version(stored.label_version_id)
        assert (version.kind, version.model_id, version.case_id) == ("pseudo", model.id, stored.case_id)
        soft = project.soft_label_for(version.id)
        assert soft.id == stored.soft_label_id and soft.model_id == model.id and soft.kind == "teacher"
        # What is stored is what the model predicts: the hard label exactly, the probabilities
        # within the 8-bit codec's error.
        expected = predict_volume(net, project.load_image(stored.case_id), card, device="cpu")
        np.testing.assert_array_equal(project.load_label(version.id), expected.labels)
        probabilities = project.load_soft_label(soft)
        assert np.abs(probabilities - expected.probabilities).max() <= SOFT_LABEL_MAX_ERROR + 1e-6
        summary_row = project.case_uncertainty(stored.case_id)
        assert summary_row.soft_label_id == soft.id and summary_row.model_id == model.id
        assert 0.0 <= summary_row.mean_entropy <= summary_row.max_entropy <= 1.0
        assert summary_row.mean_entropy == pytest.approx(stored.mean_entropy)
        assert version.foreground_voxels == stored.foreground_voxels
    assert project.latest_label("g0").kind == "gold"  # labelled cases are left alone
    assert project.case_uncertainty("g0") is None
    run = project.runs("pseudo-label")[-1]
    assert run.status == "completed" and run.result["done"] == 2


def test_reports_come_per_window_then_per_case_then_the_summary(project, model):
    items = list(iter_pseudo_label(project, case_ids=["u1", "u0"], device="cpu"))

    assert isinstance(items[-1], PseudoLabelSummary)
    stored = [i for i in items if isinstance(i, PseudoLabelCase)]
    assert [s.case_id for s in stored] == ["u1", "u0"]
    for index, case_id in enumerate(["u1", "u0"]):
        reports = [i for i in items if isinstance(i, PseudoLabelProgress) and i.case_index == index]
        assert {r.case_id for r in reports} == {case_id}
        done = [r.windows_done for r in reports]
        assert done == sorted(done) and done[0] == 0 and done[-1] == reports[-1].windows_total > 4
        # the case is stored after its last window report
        assert items.index(stored[index]) > items.index(reports[-1])
    fractions = [i.fraction for i in items if isinstance(i, PseudoLabelProgress)]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def _case_files(project):
    return sorted(p.name for p in (project.root / "labels").rglob("*") if p.is_file())


def test_stopping_between_windows_keeps_finished_cases_and_nothing_of_the_current(project, model):
    def stop_in_the_second_case():
        return any(isinstance(i, PseudoLabelProgress) and i.case_index == 1 and i.windows_done >= 3
                   for i in seen)

    seen = []
    for item in iter_pseudo_label(project, device="cpu", should_stop=stop_in_the_second_case):
        seen.append(item)

    summary = seen[-1]
    assert summary.cancelled and [c.case_id for c in summary.cases] == ["u0"]
    assert project.latest_label("u1") is None and project.soft_labels("u1") == []
    assert len(project.soft_labels("u0")) == 1
    assert project.runs("pseudo-label")[-1].status == "stopped"
    files_before = _case_files(project)
    assert project.collect_garbage() == []      # no file without its row was left behind
    assert _case_files(project) == files_before
    assert project.check() == []


def test_closing_the_generator_mid_case_stores_nothing_of_that_case(project, model):
    run = iter_pseudo_label(project, case_ids=["u1"], device="cpu")
    for item in run:
        if isinstance(item, PseudoLabelProgress) and item.windows_done == 2:
            break
    run.close()

    assert project.latest_label("u1") is None and project.soft_labels() == []
    assert project.runs("pseudo-label")[-1].status == "stopped"
    assert project.collect_garbage() == []


def test_a_stop_before_the_first_case_stores_nothing(project, model):
    summary = pseudo_label(project, device="cpu", should_stop=lambda: True)
    assert summary.cancelled and summary.cases == () and project.soft_labels() == []


def test_an_older_model_version_can_be_chosen_and_is_recorded(project, model, tmp_path):
    newer = register_tiny_model(project, tmp_path, seed=1)
    assert project.active_model().id == newer.id

    summary = pseudo_label(project, model.id, ["u0"], device="cpu")

    version = project.label_version(summary.cases[0].label_version_id)
    assert version.model_id == model.id != newer.id
    assert project.soft_label_for(version.id).model_id == model.id


def test_unknown_cases_and_models_and_a_project_without_model_are_named(tmp_path):
    with make_project(tmp_path, unlabelled=1, labelled=0) as project:
        with pytest.raises(ProjectError, match="no model"):
            pseudo_label(project, device="cpu")
        register_tiny_model(project, tmp_path)
        with pytest.raises(ProjectError, match="no case 'nope'"):
            pseudo_label(project, case_ids=["nope"], device="cpu")
        with pytest.raises(ProjectError, match="no model version 42"):
            pseudo_label(project, 42, device="cpu")
        assert project.label_versions() == []


def test_a_project_reopened_from_disk_sees_the_stored_soft_labels(project, model):
    pseudo_label(project, case_ids=["u0"], device="cpu")
    with Project.open(project.root) as reopened:
        (soft,) = reopened.soft_labels("u0")
        assert reopened.load_soft_label(soft.id).shape == (2, 24, 32, 32)
