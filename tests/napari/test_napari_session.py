"""The project panel's logic (``ProjectSession``) on a real project: no Qt, no mocks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_semiseg._napari._session import ProjectSession
from napari_semiseg.errors import ProjectError, VolumeError
from napari_semiseg.project import Project
from napari_semiseg.samples import SampleProjectSpec, build_sample_project

SMALL = SampleProjectSpec(shipped=("hippocampus_001",), phantoms=2, phantom_gold=1,
                          phantom_shape=(12, 20, 20))


@pytest.fixture
def project_folder(tmp_path):
    build_sample_project(tmp_path / "project", SMALL).close()
    return tmp_path / "project"


@pytest.fixture
def session(project_folder):
    session = ProjectSession(author="tester")
    session.open_project(project_folder)
    yield session
    session.close()


def test_cases_list_every_case_with_its_status(session):
    rows = {row.id: row for row in session.cases()}
    assert set(rows) == {"hippocampus_001", "la_phantom_00", "la_phantom_01"}
    assert rows["hippocampus_001"].latest_kind == "gold" and rows["hippocampus_001"].n_versions == 1
    assert rows["la_phantom_01"].latest_kind is None and rows["la_phantom_01"].n_versions == 0
    assert rows["la_phantom_00"].shape == (12, 20, 20)


def test_opening_a_case_gives_its_image_and_latest_label(session, project_folder):
    opened = session.open_case("hippocampus_001")
    assert opened.version.kind == "gold"
    assert opened.image.shape == opened.label.shape == (35, 51, 35)
    assert set(np.unique(opened.label)) == {0, 1, 2}
    assert opened.modality == "MR"


def test_a_correction_is_a_new_version_whose_parent_is_the_opened_one(session, project_folder):
    gold = session.open_case("hippocampus_001")
    edited = gold.label.copy()
    assert not gold.label[0, :3, :4].any()
    edited[0, :3, :4] = 1                  # 12 background voxels painted
    edited[gold.label == 2] = 0            # and the posterior part erased
    expected = 12 + int((gold.label == 2).sum())
    first = session.save_correction(edited)
    assert (first.kind, first.parent_id) == ("corrected", gold.version_id)
    assert first.voxels_changed == expected
    assert first.author == "tester"

    edited_again = edited.copy()
    edited_again[1, 0, 0:5] = 1
    second = session.save_correction(edited_again)
    assert second.parent_id == first.id, "the next save builds on the saved correction"
    assert second.voxels_changed == 5

    # What another process sees in the catalogue: three versions, the last one on disk as saved.
    with Project.open(project_folder) as other:
        kinds = [v.kind for v in other.label_versions("hippocampus_001")]
        assert kinds == ["gold", "corrected", "corrected"]
        np.testing.assert_array_equal(other.load_label(second.id), edited_again)


def test_saving_without_a_change_is_refused_and_records_nothing(session):
    opened = session.open_case("hippocampus_001")
    with pytest.raises(ProjectError, match="nothing to save"):
        session.save_correction(opened.label)
    assert len(session.history()) == 1


def test_an_unlabelled_case_starts_blank_and_its_first_save_has_no_parent(session):
    opened = session.open_case("la_phantom_01")
    assert opened.version is None and not opened.label.any()
    labels = opened.label.copy()
    labels[5:7, 8:10, 8:10] = 1
    version = session.save_correction(labels)
    assert version.parent_id is None and version.voxels_changed == 8


def test_any_older_version_reopens_and_a_save_from_it_names_it_as_parent(session):
    gold = session.open_case("hippocampus_001")
    edited = gold.label.copy()
    edited[edited == 2] = 0
    session.save_correction(edited)
    reopened = session.open_version(gold.version_id)
    np.testing.assert_array_equal(reopened.label, gold.label)
    branch = reopened.label.copy()
    branch[1, 1, 1] = 1
    assert session.save_correction(branch).parent_id == gold.version_id
    assert [v.parent_id for v in session.history()] == [None, gold.version_id, gold.version_id]


def test_unsaved_voxels_count_edits_since_the_opened_version(session):
    opened = session.open_case("la_phantom_00")
    labels = opened.label.copy()
    assert session.unsaved_voxels(labels) == 0
    labels[0, 0, :3] = 7
    assert session.unsaved_voxels(labels) == 3


def test_a_version_of_another_case_is_refused(session):
    gold = session.open_case("la_phantom_00")
    session.open_case("hippocampus_001")
    with pytest.raises(ProjectError, match=f"version {gold.version_id} does not belong"):
        session.open_version(gold.version_id)


def test_a_label_of_the_wrong_shape_is_refused_with_the_case_named(session):
    session.open_case("la_phantom_00")
    with pytest.raises(VolumeError, match="la_phantom_00"):
        session.save_correction(np.ones((3, 3, 3), np.uint8))


def test_actions_without_a_project_or_case_say_what_to_do_first(tmp_path):
    session = ProjectSession()
    with pytest.raises(ProjectError, match="no project is open"):
        session.cases()
    with pytest.raises(ProjectError):
        session.open_project(tmp_path / "nowhere")
    with pytest.raises(ProjectError, match="no folder given"):
        session.open_project("  ")
    session.create_project(tmp_path / "fresh")
    assert session.cases() == []
    with pytest.raises(ProjectError, match="no case is open"):
        session.save_correction(np.zeros((2, 2, 2), np.uint8))
