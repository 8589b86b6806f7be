"""The building blocks of the README's pictures (``python -m napari_semiseg.demo --screenshots``).

The whole script trains a model on real LA volumes for minutes; here a fake LA benchmark of
five small h5 volumes stands in, and each block is checked by what a README reader would see:
real LA cases only, in a plainly named folder, the clinician as author, a 1400×900 window.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_semiseg._napari import _demo
from napari_semiseg._napari._readme_screenshots import (AUTHOR, PICTURES, PROJECT_NAME, atrium_plane, open_window,
                                                        prepare_readme_project, readme_spec)
from napari_semiseg.errors import ProjectError
from napari_semiseg.project import Project
from napari_semiseg.workflows.cases import has_reference
from data_factory import write_la_h5

CASES = [f"LA{index:02d}" for index in range(5)]


@pytest.fixture
def shared_data(tmp_path):
    """``<tmp>/shared/LA``: train.list and five 12×20×24 (z, y, x) volumes with a labelled ball."""
    root = tmp_path / "shared" / "LA"
    zz, yy, xx = np.indices((12, 20, 24))
    rng = np.random.default_rng(0)
    for index, case_id in enumerate(CASES):
        label = ((zz - 6) ** 2 + (yy - 10) ** 2 + (xx - 8 - index) ** 2 <= 16).astype(np.uint8)
        (root / case_id).mkdir(parents=True)
        write_la_h5(root / case_id / "mri_norm2.h5", (rng.normal(0, 1, label.shape) + 2 * label).astype(np.float32),
                    label)
    (root / "train.list").write_text("\n".join(CASES) + "\n")
    return tmp_path / "shared"


@pytest.fixture
def readme_project(shared_data, tmp_path):
    return prepare_readme_project(tmp_path / "demo-output", readme_spec(shared_data, la_cases=5, labelled=2))


def test_the_readme_project_holds_la_cases_only_in_a_plainly_named_folder(readme_project, shared_data, tmp_path):
    assert readme_project == (tmp_path / "demo-output" / PROJECT_NAME).resolve()
    with Project.open(readme_project) as project:
        cases = {case.id: case for case in project.cases()}
        assert list(cases) == CASES, "no phantom, no hippocampus: the real task"
        assert [cases[c].split for c in CASES] == ["labelled", "labelled", "unlabelled", "unlabelled", "validation"]
        assert [cases[c].latest_kind for c in CASES] == ["gold", "gold", None, None, None]
        assert has_reference(project, CASES[-1]), "the validation case is measured by its h5 label"

    # A rerun starts afresh in its own folder; a folder it did not make is left alone.
    with Project.open(readme_project) as project:
        project.save_label(CASES[2], np.ones((12, 20, 24), np.uint8), "corrected")
    prepare_readme_project(tmp_path / "demo-output", readme_spec(shared_data, la_cases=5, labelled=2))
    with Project.open(readme_project) as project:
        assert project.cases()[2].latest_kind is None
    mine = tmp_path / "mine" / PROJECT_NAME
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("a clinician's notes")
    with pytest.raises(ProjectError, match="not made by the screenshot script"):
        prepare_readme_project(tmp_path / "mine", readme_spec(shared_data, la_cases=5, labelled=2))
    assert (mine / "notes.txt").read_text() == "a clinician's notes"


def test_without_the_la_benchmark_the_command_says_so_and_exits_2(tmp_path, capsys):
    assert os.environ.get("DISPLAY"), "pytest-xvfb provides the display, so the command runs in this process"
    status = _demo.main(["--screenshots", str(tmp_path / "pictures"), "--out", str(tmp_path / "out"),
                         "--shared-data", str(tmp_path / "nothing")])
    assert status == 2
    error = capsys.readouterr().err
    assert "no LA benchmark" in error and "Traceback" not in error
    assert not (tmp_path / "pictures").exists() and not (tmp_path / "out").exists()


def test_the_plane_shown_is_the_one_through_most_of_the_atrium():
    reference = np.zeros((6, 8, 8), np.uint8)
    reference[2, 3:5, 3:5] = 1
    reference[4, 1:7, 1:7] = 1
    assert atrium_plane(reference) == 4
    assert atrium_plane(np.zeros((6, 8, 8), np.uint8)) == 3


def test_the_window_docks_the_pictured_panels_at_1400x900_and_saves_as_the_clinician(readme_project, qtbot):
    viewer, panels = open_window(readme_project)
    try:
        window = viewer.window._qt_window
        qtbot.waitUntil(lambda: (window.width(), window.height()) == (1400, 900), timeout=5000)
        assert {"Project", "Fine-tune", "Predict", "Soft-label correction"} <= set(panels)
        assert len(PICTURES) == 4
        project_panel = panels["Project"]
        assert project_panel.folder_edit.text() == str(readme_project), "the plain folder, no temporary path"
        project_panel.open_case(CASES[2])
        labels = project_panel.labels_layer
        labels.data[6, 8:12, 8:12] = 1
        project_panel.save_correction()
        with Project.open(readme_project) as project:
            assert project.latest_label(CASES[2]).author == AUTHOR
        assert AUTHOR in [project_panel.history_table.item(r, 4).text()
                          for r in range(project_panel.history_table.rowCount())]
        assert viewer.dims.axis_labels[0] == "z"
    finally:
        qtbot.waitUntil(lambda: not panels["Project"].ranking.busy, timeout=60_000)  # its worker reports to the table
        viewer.close()
