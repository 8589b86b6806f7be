"""Pseudo-labelling from the GUI and "Next case", in a real napari window (Xvfb via pytest-xvfb).

The Pseudo-label panel runs on a model version registered in the project in the trainer's
file format; its results are checked through a second, independent ``Project`` connection.
The ranking test stores teacher soft labels of chosen uncertainty (``store_teacher``), so
that the case ranked first is not the first case of the project.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_semiseg._napari._pseudo_job import PseudoLabelRequest
from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.pseudo import PseudoLabelCase, rank_cases
from napari_semiseg.project import Project
from napari_semiseg.samples import SampleProjectSpec, build_sample_project
from napari_panel_support import (SPEC, UNLABELLED, build_project, dock, notifications,
                                  register_model, screenshot)
from soft_label_panel_support import phantom_truth, store_teacher
from pseudo_support import tiny_card

pytestmark = pytest.mark.gui

WAIT_MS = 240_000


@pytest.fixture
def project_folder(tmp_path):
    return build_project(tmp_path / "project")


@pytest.fixture
def panels(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    project_panel = dock(viewer, "Project")
    pseudo_panel = dock(viewer, "Pseudo-label")
    qtbot.wait(50)
    yield viewer, project_panel, pseudo_panel
    job = pseudo_panel.job
    if job is not None and job.running:  # never leave a worker behind a closed viewer
        job.cancel()
        qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)
    if project_panel.ranking.busy:
        qtbot.waitUntil(lambda: not project_panel.ranking.busy, timeout=WAIT_MS)


def _open_project(project_panel, folder) -> None:
    project_panel.folder_edit.setText(str(folder))
    project_panel.open_button.click()


def _cells(table, case_id: str) -> list[str]:
    rows = [table.item(r, 0).text() for r in range(table.rowCount())]
    row = rows.index(case_id)
    return [table.item(row, c).text() if table.item(row, c) else "" for c in range(table.columnCount())]


def _column(table, name: str) -> int:
    return [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())].index(name)


def _pseudo_versions(project, case_id: str) -> list:
    return [v for v in project.label_versions(case_id) if v.kind == "pseudo"]


def test_pseudo_labelling_from_the_panel_stores_hard_and_soft_labels_and_fills_the_case_table(
        panels, project_folder, tmp_path, qtbot, screenshots_dir):
    viewer, project_panel, pseudo_panel = panels
    with Project.open(project_folder) as project:
        model = register_model(project, tmp_path)
    _open_project(project_panel, project_folder)
    assert pseudo_panel.todo_label.text() == "2 of 2 unlabelled cases to do."
    assert pseudo_panel.request() == PseudoLabelRequest(model_id=None, device="auto", skip_done=True)

    table = project_panel.cases_table
    latest_when_stored = {}

    def watch(item) -> None:  # runs after the panel's own handler: the table must already show it
        if isinstance(item, PseudoLabelCase):
            latest_when_stored[item.case_id] = _cells(table, item.case_id)[_column(table, "Latest")]

    pseudo_panel.run_button.click()
    job = pseudo_panel.job
    assert job is not None, pseudo_panel.status_label.text()
    job.worker.yielded.connect(watch)
    assert pseudo_panel.cancel_button.isEnabled() and not pseudo_panel.run_button.isEnabled()
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not project_panel.ranking.busy, timeout=WAIT_MS)

    assert latest_when_stored == {case_id: "pseudo" for case_id in UNLABELLED}, "the table followed case by case"
    assert pseudo_panel.progress_bar is None and pseudo_panel.run_button.isEnabled()
    summary = pseudo_panel.last_summary
    assert not summary.cancelled and [c.case_id for c in summary.cases] == list(UNLABELLED)
    assert pseudo_panel.status_label.text().startswith(f"Pseudo-labelled 2 of 2 cases with model {model.id}")
    assert pseudo_panel.results_table.rowCount() == 2
    assert pseudo_panel.todo_label.text() == "0 of 2 unlabelled cases to do."

    with Project.open(project_folder) as project:
        for case_id in UNLABELLED:
            (version,) = _pseudo_versions(project, case_id)
            assert version.model_id == model.id
            soft = project.soft_label_for(version.id)
            assert (soft.kind, soft.model_id, soft.num_classes) == ("teacher", model.id, 2)
            probabilities = project.load_soft_label(soft)
            np.testing.assert_array_equal(project.load_label(version.id), probabilities.argmax(axis=0))
        for case_id in ("la_phantom_00", "la_phantom_01"):  # labelled cases are left alone
            assert not _pseudo_versions(project, case_id)
        (run,) = project.runs("pseudo-label")
        assert run.status == "completed"
        expected = rank_cases(project)

    # The rank and score columns show rank_cases' order and scores.
    for position, rank in enumerate(expected, start=1):
        cells = _cells(table, rank.case_id)
        assert cells[_column(table, "Rank")] == str(position)
        assert cells[_column(table, "Score")] == f"{rank.score:.3f}"
    assert _cells(table, "la_phantom_00")[_column(table, "Rank")] == "—"

    # Running again with "skip" has nothing left to do.
    pseudo_panel.run_button.click()
    assert pseudo_panel.job is job and "already has a pseudo-label" in pseudo_panel.status_label.text()

    project_panel.next_case_button.click()
    qtbot.wait(50)
    assert project_panel.session.opened.case_id == expected[0].case_id
    screenshot(viewer, qtbot, screenshots_dir / "pseudo-label-panel.png")


def test_cancel_stops_pseudo_labelling_keeps_whole_cases_and_a_second_run_finishes_the_rest(
        panels, tmp_path, qtbot):
    viewer, project_panel, pseudo_panel = panels
    folder = tmp_path / "project"
    spec = SampleProjectSpec(shipped=(), phantoms=6, phantom_gold=2, phantom_shape=SPEC.phantom_shape)
    with build_sample_project(folder, spec) as project:
        unlabelled = project.case_ids(split="unlabelled")
        # 16³ windows one per network call: dozens of window batches per case to stop between.
        register_model(project, tmp_path, card=tiny_card())
    assert len(unlabelled) == 4
    _open_project(project_panel, folder)

    reports = []

    def cancel_after_first_case(item) -> None:
        reports.append(item)
        if isinstance(item, PseudoLabelCase) and item.case_index == 0:
            pseudo_panel.cancel_button.click()

    pseudo_panel.run_button.click()
    job = pseudo_panel.job
    job.worker.yielded.connect(cancel_after_first_case)
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)

    stored = [item.case_id for item in reports if isinstance(item, PseudoLabelCase)]
    assert 1 <= len(stored) < 4 and stored == [item.case_id for item in pseudo_panel.stored]
    assert "cancelled" in pseudo_panel.status_label.text()
    assert pseudo_panel.progress_bar is None
    assert pseudo_panel.run_button.isEnabled() and not pseudo_panel.cancel_button.isEnabled()
    with Project.open(folder) as project:
        for case_id in unlabelled:  # each case whole (label and soft label) or not at all
            versions = _pseudo_versions(project, case_id)
            assert len(versions) == (1 if case_id in stored else 0)
            assert all(project.soft_label_for(v.id) is not None for v in versions)
        assert len(project.soft_labels(kind="teacher")) == len(stored)
        (run,) = project.runs("pseudo-label")
        assert run.status == "stopped"

    # The next run takes only the cases still missing, and finishes them.
    assert pseudo_panel.todo_label.text() == f"{4 - len(stored)} of 4 unlabelled cases to do."
    pseudo_panel.run_button.click()
    job = pseudo_panel.job
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)
    assert [c.case_id for c in pseudo_panel.last_summary.cases] == [c for c in unlabelled if c not in stored]
    with Project.open(folder) as project:
        assert all(len(_pseudo_versions(project, case_id)) == 1 for case_id in unlabelled)


def test_a_model_file_that_cannot_be_read_is_reported_and_nothing_is_stored(
        panels, project_folder, tmp_path, qtbot):
    viewer, project_panel, pseudo_panel = panels
    broken = tmp_path / "model.pt"
    broken.write_bytes(b"not a model at all")
    with Project.open(project_folder) as project:
        model = project.register_model(load_card("cpu-small").to_dict(), broken, method="supervised",
                                       config={}, metrics={})
    _open_project(project_panel, project_folder)
    with notifications() as shown:
        pseudo_panel.run_button.click()
        job = pseudo_panel.job
        qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)
        qtbot.wait(50)
    errors = [message for severity, message in shown if severity == "error"]
    assert errors and str(model.checkpoint_path) in errors[-1]
    assert errors[-1] in pseudo_panel.status_label.text()
    with Project.open(project_folder) as project:
        assert not any(_pseudo_versions(project, case_id) for case_id in UNLABELLED)


def test_without_a_model_the_panel_says_so(panels, project_folder, qtbot):
    viewer, project_panel, pseudo_panel = panels
    assert not pseudo_panel.run_button.isEnabled(), "no project is open yet"
    _open_project(project_panel, project_folder)
    assert "no model yet" in pseudo_panel.todo_label.text()
    with notifications() as shown:
        pseudo_panel.run_button.click()
    assert any("no model yet" in message for _severity, message in shown)
    assert pseudo_panel.job is None


def test_next_case_opens_the_case_rank_cases_puts_first(panels, project_folder, qtbot):
    viewer, project_panel, _pseudo_panel = panels
    with Project.open(project_folder) as project:
        store_teacher(project, "la_phantom_02", softness=0.7)   # a confident teacher
        store_teacher(project, "la_phantom_03", softness=3.0)   # an unsure one: annotate this first
        expected = [rank.case_id for rank in rank_cases(project)]
    assert expected == ["la_phantom_03", "la_phantom_02"], "not simply the project's order"
    _open_project(project_panel, project_folder)
    qtbot.waitUntil(lambda: not project_panel.ranking.busy, timeout=WAIT_MS)
    table = project_panel.cases_table
    assert [_cells(table, c)[_column(table, "Rank")] for c in expected] == ["1", "2"]
    rows = [table.item(r, 0).text() for r in range(table.rowCount())]
    assert "mean entropy" in table.item(rows.index("la_phantom_03"), _column(table, "Score")).toolTip()

    project_panel.next_case_button.click()
    assert project_panel.session.opened.case_id == "la_phantom_03"
    assert project_panel.image_layer.name == "la_phantom_03"

    # Once its correction is saved the case leaves the ranking; the next one comes up.
    layer = project_panel.labels_layer
    layer.data = phantom_truth("la_phantom_03").astype(layer.data.dtype)
    project_panel.save_button.click()
    qtbot.waitUntil(lambda: not project_panel.ranking.busy, timeout=WAIT_MS)
    assert _cells(table, "la_phantom_03")[_column(table, "Rank")] == "—"
    project_panel.next_case_button.click()
    assert project_panel.session.opened.case_id == "la_phantom_02"

    # With every case labelled there is no next case, and the panel says so.
    layer = project_panel.labels_layer
    layer.data = phantom_truth("la_phantom_02").astype(layer.data.dtype)
    project_panel.save_button.click()
    with notifications() as shown:
        project_panel.next_case_button.click()
    assert any("no case is left to annotate" in message for _severity, message in shown)
    assert project_panel.session.opened.case_id == "la_phantom_02"
