"""The Project panel in a real napari window (under Xvfb via pytest-xvfb): open, paint, save, go back.

Each test drives the panel through its buttons, paints with the Labels layer's own paint API
and checks the result in the catalogue through a second, independent ``Project`` connection.
Screenshots of the whole window go to a temporary folder (``screenshots_dir``), to look at after a failure.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_semiseg.project import Project
from napari_semiseg.samples import SampleProjectSpec, build_sample_project

pytestmark = pytest.mark.gui

SPEC = SampleProjectSpec(shipped=("hippocampus_001",), phantoms=2, phantom_gold=1,
                         phantom_shape=(24, 48, 48))


@pytest.fixture
def project_folder(tmp_path):
    build_sample_project(tmp_path / "project", SPEC).close()
    return tmp_path / "project"


@pytest.fixture
def viewer_and_panel(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1400, 900)
    _, panel = viewer.window.add_plugin_dock_widget("napari-semiseg", "Project")
    qtbot.wait(50)
    return viewer, panel


def _open_project(panel, folder):
    panel.folder_edit.setText(str(folder))
    panel.open_button.click()


def _open_case_row(panel, case_id):
    rows = [panel.cases_table.item(r, 0).text() for r in range(panel.cases_table.rowCount())]
    panel.cases_table.selectRow(rows.index(case_id))
    panel.open_case_button.click()


def _screenshot(viewer, qtbot, path):
    qtbot.wait(200)  # let the canvas draw before grabbing it
    image = viewer.screenshot(str(path), canvas_only=False)
    # Not black: the window shows the image (grey levels) and the labels (colour).
    assert image.std() > 10
    return image


def test_open_paint_save_reopen_through_the_panel(viewer_and_panel, project_folder, qtbot,
                                                    screenshots_dir):
    viewer, panel = viewer_and_panel
    _open_project(panel, project_folder)
    assert panel.cases_table.rowCount() == 3
    assert "3 cases" in panel.status_label.text()

    _open_case_row(panel, "la_phantom_00")
    image, labels = viewer.layers
    assert (image.name, labels.name) == ("la_phantom_00", "la_phantom_00 label")
    np.testing.assert_allclose(image.scale, (0.625,) * 3)
    np.testing.assert_allclose(labels.scale, (0.625,) * 3)
    with Project.open(project_folder) as catalogue:
        (gold,) = catalogue.label_versions("la_phantom_00")
        np.testing.assert_array_equal(labels.data, catalogue.load_label(gold.id))
    assert viewer.layers.selection.active is labels
    assert panel.history_table.rowCount() == 1

    # A clinician's strokes: add a region with label 1, erase part of the atrium.
    before = np.array(labels.data, copy=True)
    z = int(viewer.dims.current_step[0])
    labels.brush_size = 5
    labels.paint((z, 8, 8), 1)
    labels.paint((z, 10, 8), 1)
    centre = tuple(int(c) for c in np.argwhere(before[z] > 0).mean(axis=0))
    labels.paint((z, *centre), 0)
    painted = int(np.count_nonzero(np.asarray(labels.data) != before))
    assert painted > 0
    _screenshot(viewer, qtbot, screenshots_dir / "project-panel-correcting.png")

    panel.save_button.click()
    with Project.open(project_folder) as catalogue:
        versions = catalogue.label_versions("la_phantom_00")
        assert [v.kind for v in versions] == ["gold", "corrected"]
        corrected = versions[-1]
        assert corrected.parent_id == gold.id
        assert corrected.voxels_changed == painted
        np.testing.assert_array_equal(catalogue.load_label(corrected.id), labels.data)
    assert f"{painted} voxels changed" in panel.status_label.text()
    assert panel.history_table.rowCount() == 2
    row_of_case = [panel.cases_table.item(r, 0).text()
                   for r in range(panel.cases_table.rowCount())].index("la_phantom_00")
    latest = [panel.cases_table.horizontalHeaderItem(c).text()
              for c in range(panel.cases_table.columnCount())].index("Latest")
    assert panel.cases_table.item(row_of_case, latest).text() == "corrected"
    _screenshot(viewer, qtbot, screenshots_dir / "project-panel-saved.png")

    # Back to the gold version from the history.
    panel.history_table.selectRow(0)
    panel.open_version_button.click()
    assert viewer.layers[-1] is labels
    np.testing.assert_array_equal(labels.data, before)
    assert f"label version {gold.id}" in panel.status_label.text()


def test_opening_another_case_replaces_the_layers_and_blank_cases_can_be_labelled(
        viewer_and_panel, project_folder, qtbot, screenshots_dir):
    viewer, panel = viewer_and_panel
    _open_project(panel, project_folder)
    _open_case_row(panel, "hippocampus_001")
    assert [layer.name for layer in viewer.layers] == ["hippocampus_001", "hippocampus_001 label"]
    _screenshot(viewer, qtbot, screenshots_dir / "project-panel-hippocampus.png")

    _open_case_row(panel, "la_phantom_01")
    assert [layer.name for layer in viewer.layers] == ["la_phantom_01", "la_phantom_01 label"]
    labels = viewer.layers[-1]
    assert not np.any(labels.data), "an unlabelled case opens with blank labels"
    labels.data[10:12, 20:23, 20:22] = 1
    labels.refresh()
    panel.save_button.click()
    with Project.open(project_folder) as catalogue:
        (version,) = catalogue.label_versions("la_phantom_01")
    assert (version.kind, version.parent_id, version.voxels_changed) == ("corrected", None, 12)


def test_errors_show_in_the_panel_and_change_nothing(viewer_and_panel, project_folder, tmp_path):
    viewer, panel = viewer_and_panel
    panel.folder_edit.setText(str(tmp_path / "not-a-project"))
    panel.open_button.click()
    assert "not-a-project" in panel.status_label.text()
    assert panel.cases_table.rowCount() == 0

    _open_project(panel, project_folder)
    _open_case_row(panel, "la_phantom_00")
    panel.save_button.click()  # nothing painted
    assert "nothing to save" in panel.status_label.text()
    with Project.open(project_folder) as catalogue:
        assert len(catalogue.label_versions("la_phantom_00")) == 1


def _answer_next_dialog(qtbot, button):
    """Press ``button`` on the modal dialog the next action opens (as a user would)."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    def press():
        dialog = QApplication.activeModalWidget()
        if dialog is None:  # not shown yet
            QTimer.singleShot(20, press)
            return
        pressed.append(dialog.text())
        dialog.button(button).click()

    pressed: list[str] = []
    QTimer.singleShot(20, press)
    return pressed


def test_unsaved_strokes_are_not_dropped_without_asking(viewer_and_panel, project_folder, qtbot):
    from qtpy.QtWidgets import QMessageBox

    viewer, panel = viewer_and_panel
    _open_project(panel, project_folder)
    _open_case_row(panel, "la_phantom_00")
    labels = viewer.layers[-1]
    labels.data[0, 0, :4] = 5
    labels.refresh()

    asked = _answer_next_dialog(qtbot, QMessageBox.Cancel)
    _open_case_row(panel, "hippocampus_001")
    assert asked and "4 voxels of case la_phantom_00 are not saved" in asked[0]
    assert viewer.layers[-1] is labels and (labels.data[0, 0, :4] == 5).all()

    asked = _answer_next_dialog(qtbot, QMessageBox.Discard)
    _open_case_row(panel, "hippocampus_001")
    assert asked
    assert viewer.layers[-1].name == "hippocampus_001 label"
