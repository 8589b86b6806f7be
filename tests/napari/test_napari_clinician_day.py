"""A clinician's day in a real napari window (Xvfb via pytest-xvfb), as issue 17 asks for it:
Import → split → Predict on a plain layer → Save correction → Export.

Everything goes through the panels' controls (or the methods their file dialogs call) and the
viewer's keyboard shortcuts; what is checked is what a user would see: the cases in the table,
the split saved in the project, the layers added on the image's grid (the label shown, the soft
label and uncertainty hidden), a corrected version saved, NIfTI files on the case's grid.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_semiseg._napari._widget_predict import MODEL_FILE
from napari_semiseg._napari._widget_project import CASE_COLUMNS, SPLIT_COLUMN
from napari_semiseg.engine.cards import load_card
from napari_semiseg.io import Volume, read_volume, write_label, write_volume
from napari_semiseg.project import Project
from napari_semiseg.samples import make_la_phantom
from napari_panel_support import dock, save_network_as_model, screenshot, show_tab

pytestmark = pytest.mark.gui

WAIT_MS = 240_000
SPACING = (1.25, 0.625, 0.625)


def _phantom(folder, name: str, seed: int, origin=(0.0, 0.0, 0.0), with_label: bool = False) -> Volume:
    image, label = make_la_phantom((24, 48, 48), SPACING, seed=seed)
    volume = Volume.from_array(image, spacing=SPACING, origin=origin)
    write_volume(folder / f"{name}.nii.gz", volume)
    if with_label:
        write_label(folder / f"{name}_label.nii.gz", label, volume.geometry)
    return volume


@pytest.fixture
def day(tmp_path):
    """A folder the clinician imports (case_a with its label beside it, case_b, case_c), a scan
    outside any project, and a trainer's model file."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    _phantom(incoming, "case_a", seed=1, with_label=True)
    _phantom(incoming, "case_b", seed=2)
    _phantom(incoming, "case_c", seed=3)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _phantom(elsewhere, "scan", seed=4, origin=(-20.0, 12.5, 30.0))
    model_file = save_network_as_model(tmp_path / "run" / "model.pt", load_card("cpu-small"))
    return tmp_path, incoming, elsewhere / "scan.nii.gz", model_file


def _wait(job, qtbot) -> None:
    assert job is not None
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)


def _rows(table) -> list[tuple[str, str, str]]:
    """(case, split, latest kind) as the cases table shows them."""
    latest = CASE_COLUMNS.index("Latest")
    return [(table.item(r, 0).text(), table.cellWidget(r, SPLIT_COLUMN).currentText(), table.item(r, latest).text())
            for r in range(table.rowCount())]


def _predict(predict_panel, qtbot) -> None:
    predict_panel.predict_button.click()
    _wait(predict_panel.job, qtbot)
    assert "Predicted" in predict_panel.status_label.text(), predict_panel.status_label.text()


def _press(viewer, qtbot, key) -> None:
    """A key pressed on the canvas, where napari's key bindings listen."""
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, key, Qt.ShiftModifier)
    qtbot.wait(50)


def test_import_split_predict_correct_and_export_in_one_session(day, make_napari_viewer, qtbot, screenshots_dir):
    root, incoming, scan_path, model_file = day
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    project_panel = dock(viewer, "Project")
    predict_panel = dock(viewer, "Predict", tabify=True)
    finetune_panel = dock(viewer, "Fine-tune", tabify=True)
    project_panel.folder_edit.setText(str(root / "project"))
    project_panel.create_button.click()

    # Import: a folder of volumes, the label beside case_a matched by its name.
    _wait(project_panel.import_volumes([incoming]), qtbot)
    table = project_panel.cases_table
    assert _rows(table) == [("case_a", "labelled", "gold"), ("case_b", "unlabelled", "—"),
                            ("case_c", "unlabelled", "—")]
    assert "added 3 cases (1 gold label)" in project_panel.status_label.text()
    assert "case_a" in [finetune_panel.labelled_list.item(i).text() for i in range(finetune_panel.labelled_list.count())]

    # Split: case_a becomes the validation case; saved at once, and the Fine-tune pools follow.
    table.cellWidget(0, SPLIT_COLUMN).setCurrentText("validation")
    with Project.open(root / "project") as project:
        assert project.case("case_a").split == "validation"
    assert finetune_panel.labelled_list.count() == 0
    assert "case_a" in finetune_panel.validation_label.text()

    # Predict on a plain layer (a file opened in the viewer, in no project) with a model file.
    [scan] = viewer.open(str(scan_path), plugin="napari-semiseg")
    viewer.layers.selection.active = scan
    assert predict_panel.layer_combo.currentText() == "scan"
    predict_panel.model_combo.setCurrentIndex(predict_panel.model_combo.findData(MODEL_FILE))
    predict_panel.model_file_edit.setText(str(model_file))
    assert not predict_panel.save_check.isEnabled(), "a layer outside the project is not saved"
    _predict(predict_panel, qtbot)
    results = [viewer.layers[f"scan {name}"] for name in ("prediction", "soft label", "uncertainty")]
    assert [layer.visible for layer in results] == [True, False, False]
    for layer in results:
        assert layer.data.shape == scan.data.shape
        np.testing.assert_allclose(layer.scale, scan.scale)
        np.testing.assert_allclose(layer.translate, (-20.0, 12.5, 30.0))

    # Shift+R hides the results shown, and shows them again.
    _press(viewer, qtbot, Qt.Key_R)
    assert not any(layer.visible for layer in results)
    _press(viewer, qtbot, Qt.Key_R)
    assert [layer.visible for layer in results] == [True, False, False]

    # The next case: predicted with the same file, kept as a "prediction" version of case_c.
    table.selectRow(2)
    project_panel.open_case_button.click()
    qtbot.waitUntil(lambda: predict_panel.layer_combo.currentText() == "case_c", timeout=5000)
    assert predict_panel.save_check.isEnabled()
    predict_panel.save_check.setChecked(True)
    _predict(predict_panel, qtbot)
    assert _rows(table)[2] == ("case_c", "unlabelled", "prediction")

    # Save correction: open the prediction, paint a block of atrium into it, Shift+S.
    project_panel.history_table.selectRow(0)
    project_panel.open_version_button.click()
    labels = project_panel.labels_layer
    corrected = np.array(labels.data, copy=True)
    corrected[10:14, 20:30, 20:30] = 1
    labels.data = corrected
    viewer.layers.selection.active = labels
    _press(viewer, qtbot, Qt.Key_S)
    assert _rows(table)[2] == ("case_c", "unlabelled", "corrected")
    assert "Saved version" in project_panel.status_label.text()

    # Export the case: its corrected label, soft label and uncertainty, named after it, on its grid.
    out = root / "for the planning system"
    _wait(project_panel.export_case(out), qtbot)
    assert sorted(p.name for p in out.iterdir()) == ["case_c_label.nii.gz", "case_c_softlabel.nii.gz",
                                                     "case_c_uncertainty.nii.gz"]
    image = read_volume(incoming / "case_c.nii.gz")
    for path in out.iterdir():
        assert read_volume(path).geometry.matches(image.geometry), path.name
    np.testing.assert_array_equal(read_volume(out / "case_c_label.nii.gz").array, corrected)
    soft = read_volume(out / "case_c_softlabel.nii.gz").array
    assert 0.0 <= soft.min() and soft.max() <= 1.0
    assert f"Exported case case_c into {out}" in project_panel.status_label.text()
    show_tab(project_panel)
    screenshot(viewer, qtbot, root / "clinician-day.png")
