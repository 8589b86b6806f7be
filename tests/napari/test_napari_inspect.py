"""The Soft-label correction panel in a real napari window (Xvfb via pytest-xvfb).

A pseudo-labelled case (a "pseudo" version and its teacher soft label, stored as a
pseudo-labelling run stores them) is opened through the Project panel's buttons; the
clinician paints the correction into the Labels layer and saves it; "Correct soft label"
runs the (reconstructed) teacher team in the panel's worker. Every number the panel shows is
checked against the project read through a second, independent connection.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_semiseg._napari._inspect import AFTER_SUFFIX, BEFORE_SUFFIX, CROSSED_SUFFIX, LOWERED, RAISED
from napari_semiseg.project import Project
from napari_panel_support import build_project, dock, open_case, screenshot
from soft_label_panel_support import phantom_truth, store_teacher

pytestmark = pytest.mark.gui

CASE, OTHER = "la_phantom_02", "la_phantom_03"
WAIT_MS = 240_000


@pytest.fixture
def project_folder(tmp_path):
    folder = build_project(tmp_path / "project")
    with Project.open(folder) as project:
        store_teacher(project, CASE)
    return folder


@pytest.fixture
def panels(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1600, 1100)
    project_panel = dock(viewer, "Project")
    inspect_panel = dock(viewer, "Soft-label correction")
    qtbot.wait(50)
    yield viewer, project_panel, inspect_panel
    job = inspect_panel.job
    if job is not None and job.running:
        qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)
    if project_panel.ranking.busy:
        qtbot.waitUntil(lambda: not project_panel.ranking.busy, timeout=WAIT_MS)


def _paint_correction(viewer, project_panel, truth: np.ndarray) -> None:
    """Paint the true atrium into the Labels layer: one brush stroke, then the rest voxel-exact."""
    layer = project_panel.labels_layer
    # (the panel holds napari's plugin proxy of the layer, hence the comparison by name)
    assert viewer.layers.selection.active.name == layer.name, "the clinician paints on the case's labels"
    layer.brush_size = 3
    centre = np.argwhere(truth).mean(axis=0).round().astype(int)
    layer.paint(tuple(centre), 1, refresh=True)
    corrected = np.array(layer.data, copy=True)
    corrected[...] = truth
    layer.data = corrected


def _correct(inspect_panel, qtbot) -> None:
    assert inspect_panel.correct_button.isEnabled(), inspect_panel.status_label.text()
    inspect_panel.correct_button.click()
    job = inspect_panel.job
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)
    qtbot.wait(50)


def test_correcting_a_pseudo_labelled_case_shows_before_after_crossed_and_histograms(
        panels, project_folder, qtbot, screenshots_dir):
    viewer, project_panel, inspect_panel = panels
    assert "reconstructed" in inspect_panel.method_label.text().lower()
    assert inspect_panel.reconstructed_badge.isVisible() and inspect_panel.note_label.isVisible()

    # Opening the pseudo-labelled case shows its teacher soft label alone; nothing to correct yet.
    open_case(project_panel, project_folder, CASE)
    qtbot.wait(50)
    names = [layer.name for layer in viewer.layers]
    assert names == [CASE, f"{CASE} label", f"{CASE}{BEFORE_SUFFIX}"]
    assert not viewer.layers[f"{CASE}{BEFORE_SUFFIX}"].visible, "added hidden: the anatomy stays untinted"
    assert not inspect_panel.correct_button.isEnabled()
    assert "save the correction" in inspect_panel.status_label.text()

    truth = phantom_truth(CASE)
    _paint_correction(viewer, project_panel, truth)
    project_panel.save_button.click()
    _correct(inspect_panel, qtbot)

    names = [layer.name for layer in viewer.layers]
    assert names == [CASE, f"{CASE} label", f"{CASE}{BEFORE_SUFFIX}", f"{CASE}{AFTER_SUFFIX}",
                     f"{CASE}{CROSSED_SUFFIX}"]
    assert viewer.layers.selection.active.name == f"{CASE} label", "painting goes on where it was"
    image = viewer.layers[CASE]
    before, after, crossed = (viewer.layers[f"{CASE}{s}"] for s in (BEFORE_SUFFIX, AFTER_SUFFIX, CROSSED_SUFFIX))
    for layer in (before, after, crossed):
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
        assert layer.data.shape == image.data.shape
    assert type(crossed).__name__ == "Labels"
    assert tuple(before.contrast_limits) == tuple(after.contrast_limits) == (0.0, 1.0)
    assert after.visible and crossed.visible and not before.visible

    with Project.open(project_folder) as project:
        saved = project.latest_label(CASE)
        assert saved.kind == "corrected" and saved.voxels_changed > 0
        stored = project.soft_labels(CASE, kind="corrected")
        assert len(stored) == 1 and stored[0].label_version_id == saved.id
        teacher = project.soft_label(stored[0].parent_id)
        assert teacher.kind == "teacher" and project.label_version(teacher.label_version_id).kind == "pseudo"
        teacher_fg = project.load_soft_label(teacher)[1]
        corrected_fg = project.load_soft_label(stored[0])[1]
        gold = project.load_label(saved.id) > 0
    np.testing.assert_array_equal(gold, truth)
    np.testing.assert_array_equal(before.data, teacher_fg)
    np.testing.assert_array_equal(after.data, corrected_fg)
    # After correction every voxel is on its corrected label's side of 0.5 ...
    np.testing.assert_array_equal(corrected_fg > 0.5, gold)
    # ... and the crossed layer is exactly the voxels whose soft value changed side.
    moved_up = (teacher_fg <= 0.5) & (corrected_fg > 0.5)
    moved_down = (teacher_fg > 0.5) & (corrected_fg <= 0.5)
    assert moved_up.any() and moved_down.any()
    np.testing.assert_array_equal(crossed.data == RAISED, moved_up)
    np.testing.assert_array_equal(crossed.data == LOWERED, moved_down)
    assert int((crossed.data > 0).sum()) == int(((teacher_fg > 0.5) != gold).sum())

    # Histograms: per gold class, the counts add up to that class's labelled voxels.
    histograms = inspect_panel.plot.histograms
    n_foreground, n_background = int(gold.sum()), int((~gold).sum())
    for stage in ("before", "after"):
        counts = getattr(histograms, stage)
        assert int(counts["foreground"].sum()) == n_foreground
        assert int(counts["background"].sum()) == n_background
    assert histograms.wrong_after == {"foreground": 0, "background": 0}
    assert histograms.wrong_before["foreground"] == int((gold & (teacher_fg <= 0.5)).sum()) > 0
    assert histograms.wrong_before["background"] == int((~gold & (teacher_fg >= 0.5)).sum()) > 0
    assert inspect_panel.plot.legend_texts() == ["gold background", "gold foreground"]
    table = inspect_panel.counts_table
    rows = [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]
    assert rows == [
        ["foreground", str(n_foreground), str(histograms.wrong_before["foreground"]), "0",
         str(int((moved_up & gold).sum()))],
        ["background", str(n_background), str(histograms.wrong_before["background"]), "0",
         str(int((moved_down & ~gold).sum()))]]
    assert "matched to similar-looking voxels (similarity correction)" in inspect_panel.steps_label.text()
    assert f"{int(moved_up.sum() + moved_down.sum())} voxels crossed 0.5" in inspect_panel.status_label.text()

    viewer.layers.selection.active = after
    screenshot(viewer, qtbot, screenshots_dir / "inspect-panel.png")


def test_the_stored_correction_comes_back_with_the_case_and_follows_newer_corrections(
        panels, project_folder, qtbot):
    viewer, project_panel, inspect_panel = panels
    open_case(project_panel, project_folder, CASE)
    truth = phantom_truth(CASE)
    _paint_correction(viewer, project_panel, truth)
    project_panel.save_button.click()
    _correct(inspect_panel, qtbot)
    first = inspect_panel.inspection.corrected.id

    # Another case without soft labels: the panel's layers go, the case's image stays.
    open_case(project_panel, project_folder, OTHER)
    qtbot.wait(50)
    assert [layer.name for layer in viewer.layers] == [OTHER, f"{OTHER} label"]
    assert "no soft label yet" in inspect_panel.status_label.text()
    assert not inspect_panel.correct_button.isEnabled()

    # Back to the corrected case: the stored correction is shown again, nothing recomputed.
    open_case(project_panel, project_folder, CASE)
    qtbot.wait(50)
    assert inspect_panel.inspection.corrected.id == first
    assert f"{CASE}{CROSSED_SUFFIX}" in viewer.layers

    # A further correction makes the shown one stale; correcting again stores a new soft label
    # against the newest label, and pressing once more reuses it instead of storing a copy.
    layer = project_panel.labels_layer
    data = np.array(layer.data, copy=True)
    data[:, :, : data.shape[2] // 2] = 0
    layer.data = data
    project_panel.save_button.click()
    qtbot.wait(50)
    assert "is newer" in inspect_panel.status_label.text()
    _correct(inspect_panel, qtbot)
    second = inspect_panel.inspection
    assert second.corrected.id != first and second.gold_version.id == project_panel.session.opened.version_id
    np.testing.assert_array_equal(viewer.layers[f"{CASE}{AFTER_SUFFIX}"].data > 0.5, data > 0)
    _correct(inspect_panel, qtbot)
    assert inspect_panel.inspection.corrected.id == second.corrected.id
    assert "already stored" in inspect_panel.status_label.text()
    with Project.open(project_folder) as project:
        assert len(project.soft_labels(CASE, kind="corrected")) == 2
