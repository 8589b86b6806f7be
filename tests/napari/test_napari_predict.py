"""The Predict panel in a real napari window (Xvfb via pytest-xvfb): layers, cancel, errors.

The panels are docked as a user docks them; the project and case are opened through the
Project panel's buttons; predictions run in the panel's generator worker on a model version
registered in the project in the trainer's file format.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_semiseg._napari._predict_job import PredictRequest
from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.inference import predict_volume
from napari_semiseg.engine.training import load_model
from napari_semiseg.io import Volume, write_volume
from napari_semiseg.project import Project
from napari_semiseg.samples import make_la_phantom
from napari_panel_support import (build_project, dock, notifications, open_case, register_model, screenshot,
                                  train_briefly)

pytestmark = pytest.mark.gui

CASE = "la_phantom_00"
#: Generous: a shared 2-core machine may be slow; the tests never assert durations.
WAIT_MS = 240_000


@pytest.fixture
def project_folder(tmp_path):
    return build_project(tmp_path / "project")


@pytest.fixture(scope="module")
def trained_model_file(tmp_path_factory):
    """A briefly trained cpu-small model (once per module): its predictions show the atrium."""
    scratch = tmp_path_factory.mktemp("trained")
    return train_briefly(build_project(scratch / "project"), scratch / "run")


@pytest.fixture
def model(project_folder, tmp_path):
    """A fresh (untrained) network registered as the active model: cheap, for the plumbing."""
    with Project.open(project_folder) as project:
        return register_model(project, tmp_path)


@pytest.fixture
def trained_model(project_folder, tmp_path, trained_model_file):
    with Project.open(project_folder) as project:
        return register_model(project, tmp_path, model_file=trained_model_file)


@pytest.fixture
def panels(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1500, 950)
    project_panel = dock(viewer, "Project")
    predict_panel = dock(viewer, "Predict")
    qtbot.wait(50)
    yield viewer, project_panel, predict_panel
    job = predict_panel.job
    if job is not None and job.running:  # never leave a worker behind a closed viewer
        job.cancel()
        qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)


def _run(predict_panel, qtbot):
    reports = []
    predict_panel.predict_button.click()
    job = predict_panel.job
    assert job is not None, predict_panel.status_label.text()
    job.worker.yielded.connect(reports.append)
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)
    return reports


def test_predict_shows_labels_soft_label_and_uncertainty_on_the_case_grid(
        panels, project_folder, trained_model, qtbot, screenshots_dir):
    model = trained_model
    viewer, project_panel, predict_panel = panels
    open_case(project_panel, project_folder, CASE)
    assert CASE in predict_panel.case_label.text()
    assert "Active model" in predict_panel.model_combo.currentText()
    predict_panel.save_check.setChecked(True)
    assert predict_panel.request() == PredictRequest(model_id=None, mc_samples=0, largest_component=False,
                                                     paper_grid=False, overlap=0.5, device="auto",
                                                     save_version=True)

    reports = _run(predict_panel, qtbot)
    print(f"\nPrediction of {CASE}: {predict_panel.stall_report().describe()}; napari built the layers in "
          f"{predict_panel.last_display_seconds * 1000:.0f} ms")
    assert len(reports) >= 2, "the progress bar moved with the window batches"
    names = [layer.name for layer in viewer.layers]
    assert names == [CASE, f"{CASE} label", f"{CASE} soft label", f"{CASE} uncertainty", f"{CASE} prediction"]
    image = viewer.layers[CASE]
    prediction, soft, uncertainty = (viewer.layers[f"{CASE} {n}"] for n in ("prediction", "soft label",
                                                                               "uncertainty"))
    assert type(prediction).__name__ == "Labels"
    for layer in (prediction, soft, uncertainty):
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
        assert layer.data.shape == image.data.shape == (24, 48, 48)
    for layer in (soft, uncertainty):
        assert layer.data.dtype == np.float32
        assert 0.0 <= float(layer.data.min()) and float(layer.data.max()) <= 1.0
        assert tuple(layer.contrast_limits) == (0.0, 1.0)
    assert soft.colormap.name == "semiseg soft label"
    assert soft.colormap.map([0.0])[0, 3] == 0, "a zero probability hides nothing of the image"

    # The layers hold what the engine predicts with that model version, nothing else.
    trained = load_model(model.checkpoint_path)
    with Project.open(project_folder) as project:
        volume = project.load_image(CASE)
        expected = predict_volume(trained.network, volume, trained.card, device="cpu")
        np.testing.assert_array_equal(prediction.data, expected.labels)
        np.testing.assert_allclose(soft.data, expected.foreground_probability(), atol=1e-5)
        np.testing.assert_allclose(uncertainty.data, expected.uncertainty, atol=1e-5)
        # Saved as a "prediction" version made by that model, with its soft label.
        saved = project.latest_label(CASE)
        assert (saved.kind, saved.model_id) == ("prediction", model.id)
        np.testing.assert_array_equal(project.load_label(saved.id), expected.labels)
    assert "Saved as label version" in predict_panel.status_label.text()
    assert project_panel.history_table.rowCount() == 2, "the Project panel lists the new version"
    assert prediction.data.any(), "the trained model finds the atrium"
    viewer.layers[f"{CASE} label"].visible = False  # the gold label would hide the prediction
    viewer.layers.selection.active = soft
    screenshot(viewer, qtbot, screenshots_dir / "predict-panel.png")

    # Predicting again with MC dropout updates the same layers and adds the (hidden) variance.
    layer_ids = [id(layer) for layer in viewer.layers]
    predict_panel.save_check.setChecked(False)
    predict_panel.mc_spin.setValue(2)
    _run(predict_panel, qtbot)
    assert [id(layer) for layer in viewer.layers][:5] == layer_ids
    variance = viewer.layers[f"{CASE} MC variance"]
    assert not variance.visible and float(variance.data.max()) <= 0.25
    assert predict_panel.last_prediction.passes == 2


def test_cancel_stops_a_long_prediction_between_window_batches(panels, project_folder, model, tmp_path, qtbot):
    viewer, project_panel, predict_panel = panels
    image, _label = make_la_phantom((40, 144, 144), (0.625,) * 3, seed=5)
    write_volume(tmp_path / "big.nii.gz", Volume.from_array(image, spacing=(0.625,) * 3))
    with Project.open(project_folder) as project:
        project.add_case("big", tmp_path / "big.nii.gz", copy=True)
    open_case(project_panel, project_folder, "big")
    predict_panel.overlap_spin.setValue(0.9)  # hundreds of windows
    layers_before = [layer.name for layer in viewer.layers]

    reports = []
    predict_panel.predict_button.click()
    job = predict_panel.job
    job.worker.yielded.connect(reports.append)
    assert predict_panel.cancel_button.isEnabled() and not predict_panel.predict_button.isEnabled()
    qtbot.waitUntil(lambda: any(r.windows_done > 0 for r in reports), timeout=WAIT_MS)
    predict_panel.cancel_button.click()
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)

    total = reports[-1].windows_total
    assert total > 100
    assert reports[-1].windows_done < total, "the sweep stopped before its end"
    assert "cancelled" in predict_panel.status_label.text()
    assert [layer.name for layer in viewer.layers] == layers_before
    assert predict_panel.predict_button.isEnabled() and not predict_panel.cancel_button.isEnabled()
    assert predict_panel.progress_bar is None, "the progress bar was closed"


def test_a_model_file_that_cannot_be_read_is_reported_in_a_notification(panels, project_folder, tmp_path, qtbot):
    viewer, project_panel, predict_panel = panels
    broken = tmp_path / "model.pt"
    broken.write_bytes(b"not a model at all")
    with Project.open(project_folder) as project:
        model = project.register_model(load_card("cpu-small").to_dict(), broken, method="supervised",
                                       config={}, metrics={})
    open_case(project_panel, project_folder, CASE)
    with notifications() as shown:
        _run(predict_panel, qtbot)
        qtbot.wait(50)
    errors = [message for severity, message in shown if severity == "error"]
    assert errors and errors[-1].startswith(f"{model.checkpoint_path}: ")
    assert "not a napari-semiseg file" in errors[-1]
    assert errors[-1] in predict_panel.status_label.text()
    assert f"{CASE} prediction" not in viewer.layers


def test_a_torch_runtime_error_in_a_worker_reaches_the_error_callback(qtbot):
    """superqt turns a RuntimeError raised in a generator into a bare warning; the glue must not."""
    import torch

    from napari_semiseg._napari._workers import describe_error, start_generator_job

    def steps(should_stop):
        yield "first step"
        torch.ones(2) + torch.ones(3)  # a shape mismatch: torch raises RuntimeError
        yield "never"

    seen = {"reports": [], "errors": [], "results": [], "cancelled": []}
    job = start_generator_job(steps, on_report=seen["reports"].append, on_result=seen["results"].append,
                              on_error=seen["errors"].append, on_cancelled=seen["cancelled"].append)
    qtbot.waitUntil(lambda: not job.running, timeout=WAIT_MS)
    assert seen["reports"] == ["first step"] and not seen["results"] and not seen["cancelled"]
    (error,) = seen["errors"]
    message = describe_error(error)
    assert message.startswith("RuntimeError: ") and "size of tensor" in message


def test_without_a_model_the_panel_says_to_fine_tune_first(panels, project_folder, qtbot):
    viewer, project_panel, predict_panel = panels
    assert not predict_panel.predict_button.isEnabled(), "no case is open yet"
    open_case(project_panel, project_folder, CASE)
    assert "none yet" in predict_panel.model_combo.currentText()
    with notifications() as shown:
        predict_panel.predict_button.click()
    assert any("no model yet" in message for _severity, message in shown)
    assert predict_panel.job is None


def test_an_ss_net_model_predicts_with_its_largest_component_rule(panels, project_folder, tmp_path, qtbot):
    """SS-Net's published post-processing keeps the largest connected component; the panel offers
    it for an SS-Net model, as ``semiseg infer`` applies it (issue 16: the panel's box used the card's
    setting as stored and switched it off)."""
    from napari_panel_support import save_network_as_model

    card = load_card("cpu-small")
    assert card.inference.largest_component is False
    with Project.open(project_folder) as project:
        path = save_network_as_model(tmp_path / "ss-net.pt", card)
        project.register_model(card.to_dict(), path, method="ss-net", config={}, metrics={}, activate=True)
    viewer, project_panel, predict_panel = panels
    open_case(project_panel, project_folder, CASE)
    predict_panel.session.notify("models")
    assert predict_panel.largest_check.isChecked()
    assert predict_panel.request().largest_component is True
