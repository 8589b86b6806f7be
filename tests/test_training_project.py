"""The trainer meets a real project: cases by split, pinned label versions, model versions."""

from __future__ import annotations

import numpy as np
import pytest

from napari_semiseg.engine.training import (TrainingError, data_spec_from_project, register_run_in_project,
                                            train)
from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import Project
from test_training_support import box_case, tiny_config


@pytest.fixture
def project(tmp_path):
    project = Project.create(tmp_path / "project")
    for seed, split in ((0, "labelled"), (1, "labelled"), (100, "unlabelled"), (200, "validation"),
                        (300, "test")):
        image, label = box_case(seed)
        path = write_volume(tmp_path / "images" / f"case{seed}.nii.gz", Volume.from_array(image))
        project.add_case(f"case{seed}", path, split=split)
        if split != "unlabelled":
            project.save_label(f"case{seed}", label, "gold")
    yield project
    project.close()


def test_the_projects_splits_become_the_runs_cases_with_the_newest_training_label(project):
    corrected = project.save_label("case1", np.zeros_like(box_case(1)[1]), "corrected")
    project.save_label("case0", np.zeros_like(box_case(0)[1]), "prediction")  # not a training label
    spec = data_spec_from_project(project)
    assert [c.case_id for c in spec.labeled] == ["case0", "case1"]
    assert [c.case_id for c in spec.unlabeled] == ["case100"] and spec.unlabeled[0].label is None
    assert [c.case_id for c in spec.validation] == ["case200"]  # "test" cases are never used
    assert spec.labeled[1].label_version == corrected.id
    assert project.label_version(spec.labeled[0].label_version).kind == "gold"


def test_a_case_without_a_training_label_is_named(project):
    with pytest.raises(TrainingError, match="case case100 has no gold or corrected label"):
        data_spec_from_project(project, labeled=["case100"])


def test_each_run_registers_a_model_version_with_its_parent_and_metrics(project, tmp_path):
    spec = data_spec_from_project(project)
    first = train(tiny_config(tmp_path / "run1", iterations=3, validate_every=3, data=spec))
    version = register_run_in_project(project, first)
    assert project.active_model().id == version.id
    assert version.method == "supervised" and version.parent_id is None
    assert version.metrics["validation_dice"] == first.metrics["validation_dice"]
    assert version.metrics["status"] == "finished" and version.config["iterations"] == 3

    second = train(tiny_config(tmp_path / "run2", iterations=2, data=spec, parent_model_id=version.id,
                               init_from=str(version.checkpoint_path)))
    child = register_run_in_project(project, second)
    assert child.parent_id == version.id and project.active_model().id == child.id
    project.activate_model(version.id)  # rollback
    assert project.active_model().id == version.id
