"""The trainer meets a real project: cases by split, pinned label versions, model versions."""

from __future__ import annotations

import numpy as np
import pytest

from napari_semiseg.engine.training import (BEST_MODEL_FILE, TrainingError, data_spec_from_project, load_model,
                                            register_run_in_project, train)
from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import Project
from training_support import box_case, tiny_config


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


def test_a_run_that_ends_below_its_best_registers_the_best_weights_and_says_so(project, tmp_path):
    spec = data_spec_from_project(project)
    # lr 0.5 makes the tiny network's validation Dice wander, so the best is rarely the last.
    for seed in range(7, 17):
        result = train(tiny_config(tmp_path / f"run{seed}", iterations=6, validate_every=1, lr=0.5, seed=seed,
                                   data=spec))
        if result.metrics["best_iteration"] != result.iteration:
            break
    else:
        pytest.skip("every run ended at its best validation Dice")
    best = register_run_in_project(project, result)
    last = register_run_in_project(project, result, keep="last")
    assert best.metrics["weights"] == "best" and best.metrics["weights_iteration"] == result.metrics["best_iteration"]
    assert best.metrics["validation_dice"] == result.metrics["best_validation_dice"]
    assert best.metrics["last_validation_dice"] == result.metrics["validation_dice"]
    assert best.sha256 != last.sha256, "the two versions hold different weights"
    assert load_model(best.checkpoint_path).iteration == result.metrics["best_iteration"]
    assert load_model(last.checkpoint_path).iteration == result.iteration == last.metrics["weights_iteration"]
    assert (result.run_dir / BEST_MODEL_FILE).is_file()
    with pytest.raises(TrainingError, match="keep must be one of"):
        register_run_in_project(project, result, keep="newest")
