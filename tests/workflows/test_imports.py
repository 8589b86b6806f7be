"""workflows.imports: what a user picks (files, folders) becomes cases with their labels, case by case."""

from __future__ import annotations

import numpy as np
import pytest

from napari_semiseg.errors import Cancelled, ProjectError
from napari_semiseg.io import Volume, write_label, write_volume
from napari_semiseg.project import Project
from napari_semiseg.workflows.imports import ImportStep, iter_import, plan_import


def _volume(path, label_path=None, seed=0):
    rng = np.random.default_rng(seed)
    volume = Volume.from_array(rng.random((6, 10, 12), dtype=np.float32), spacing=(2.0, 0.8, 0.8))
    write_volume(path, volume)
    if label_path is not None:
        write_label(label_path, (volume.array > 0.5).astype(np.uint8), volume.geometry)


def _run(steps):
    reports = []
    while True:
        try:
            reports.append(next(steps))
        except StopIteration as done:
            return reports, done.value


def test_folders_and_files_become_cases_with_labels_matched_by_name(tmp_path):
    dataset = tmp_path / "dataset"
    (dataset / "labels").mkdir(parents=True)
    _volume(dataset / "a.nii.gz", dataset / "labels" / "a.nii.gz")
    _volume(dataset / "b.nrrd", seed=1)
    loose = tmp_path / "loose"
    loose.mkdir()
    _volume(loose / "x.nii.gz", loose / "x_seg.nii.gz", seed=2)
    _volume(loose / "y.mha", seed=3)

    # The label file picked along with its image is a label, not a case.
    items = plan_import([dataset, loose / "x.nii.gz", loose / "x_seg.nii.gz"])
    assert [item.case_id for item in items] == ["a", "b", "x"]
    with Project.create(tmp_path / "project") as project:
        steps, report = _run(iter_import(project, items))
        assert steps == [ImportStep(1, 3, "a"), ImportStep(2, 3, "b"), ImportStep(3, 3, "x")]
        assert (report.added, report.gold_added, report.refused) == (["a", "b", "x"], ["a", "x"], [])
        assert [(c.id, c.split, c.latest_kind) for c in project.cases()] == [
            ("a", "labelled", "gold"), ("b", "unlabelled", None), ("x", "labelled", "gold")]


def test_cancel_keeps_the_cases_imported_before_it_and_a_bad_file_is_left_out(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for index, name in enumerate(("c1", "c2", "c3")):
        _volume(folder / f"{name}.nii.gz", seed=index)
    (folder / "c0.nii.gz").write_bytes(b"not a volume")
    stop = []
    with Project.create(tmp_path / "project") as project:
        steps = iter_import(project, plan_import([folder]), should_stop=lambda: bool(stop))
        first, second = next(steps), next(steps)
        assert (first.case_id, second.case_id) == ("c0", "c1")
        stop.append(True)
        with pytest.raises(Cancelled, match="after 2 of 4 cases"):
            next(steps)
        assert project.case_ids() == ["c1"], "c0 refused, c1 imported, nothing after the cancel"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ProjectError, match="no volumes found"):
        plan_import([tmp_path / "empty"])
