"""The "Predict" dock widget: run a model on an image layer, off the GUI thread.

The image is any image layer (the open case's by default, one opened from a file, a sample),
the model a version of the open project or a trainer's model file, so no project is needed;
a prediction is saved as a label version only for the open case of a project.
The widget builds a ``PredictRequest`` from its controls; a generator worker runs
``predict_steps`` (model loading and sliding-window inference) and reports each window
batch, which moves a napari progress bar. The result becomes three layers on the case's grid:
"<case> prediction" (Labels), "<case> soft label" (foreground probability, 0..1) and
"<case> uncertainty" (normalised entropy, 0..1), added one per event-loop turn (napari takes
0.1–0.2 s to build each the first time; together they would freeze the window for half a
second), while the job counts as running. Saving a "prediction" version happens in the worker,
through its own project connection. Cancel stops between window batches; any error reaches
napari's notifications with its message. An ``EventLoopProbe`` records how responsive the
window stayed while the worker ran (``stall_report``); napari's own time to build the layers
afterwards is ``last_display_seconds``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pathlib import Path

from napari.layers import Image, Labels, Layer
from napari.utils import Colormap, progress
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                            QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from ..errors import ProjectError, SemisegError
from . import _shortcuts
from ._layers import CASE_KEY, SOURCE_KEY, geometry_of_layer
from ._panel_parts import fill_model_choices
from ._layer_update import update_layer_in_place
from ._predict_job import (PREDICTION_CONTOUR, ColourRamp, PredictRequest, describe_model_source, describe_prediction,
                           layer_volume, predict_steps, prediction_layers, resolve_model, save_in_project)
from ._responsiveness import EventLoopProbe, StallReport
from ._panel_status import JobPanel
from ._plain_words import DEVICE_TIP
from ._shared import session_for
from ._workers import GeneratorJob, describe_error, start_generator_job

if TYPE_CHECKING:
    import napari

DEVICES = ("auto", "cpu", "cuda")

#: Pause between two new result layers. A zero-delay timer runs in the same pass of the event
#: loop as the timer before it, so the window could neither repaint nor take input between two
#: layer builds (about 100 ms each): one 240 ms stall instead of three short ones.
LAYER_GAP_MS = 20
#: The model combo's entry that reads the model file field instead of a project's version.
MODEL_FILE = "model file"
#: Metadata key every result layer carries (``prediction_layers``): these are not images to predict on.
RESULT_KEY = "semiseg_model"


class PredictWidget(JobPanel, QWidget):
    """Dock widget: model version, options, Predict / Cancel on the case open in the Project panel."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.job: GeneratorJob | None = None
        self.progress_bar = None
        self.last_prediction = None
        self.last_saved = None
        self._running_case: tuple | None = None
        self.probe = EventLoopProbe(parent=self)
        self.last_stall_report: StallReport | None = None
        self.last_display_seconds: float | None = None
        self._hidden_results: list[str] = []
        self._build()
        self.session.listen(self._on_session_change)
        layers = napari_viewer.layers
        for event in (layers.events.inserted, layers.events.removed, layers.events.moved):
            event.connect(self._refresh_layers)
        layers.selection.events.active.connect(self._follow_active_layer)
        self._refresh_models()
        self._refresh_layers()
        self._refresh_case()
        _shortcuts.bind(napari_viewer, _shortcuts.TOGGLE_RESULTS, self, PredictWidget.toggle_results)

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.case_label = QLabel(wordWrap=True)
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("The image to segment: the open case's, or any image layer (a file you "
                                    "opened, a sample); selecting an image layer chooses it")
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The project's active model, another version of it, or a model file")
        self.model_file_edit = QLineEdit(placeholderText="model.pt of a training run")
        self.model_file_edit.setToolTip("A model file written by training (model.pt, best_model.pt); "
                                        "it holds weights and settings only, never code")
        self.model_file_button = QPushButton("Browse…")
        self.model_file_button.setToolTip("Choose a model file written by training")
        self.mc_spin = QSpinBox(minimum=0, maximum=64, value=0)
        self.mc_spin.setToolTip("Extra predictions with parts of the network switched off at random; the "
                                "uncertainty layer is high where they disagree. 0: one prediction, its "
                                "uncertainty from the soft label alone. Each pass takes as long as a whole "
                                "prediction (Monte-Carlo dropout samples)")
        self.largest_check = QCheckBox("Keep only the largest region")
        self.largest_check.setToolTip("Drop the specks apart from the main structure: keep the largest connected "
                                      "region of the label (largest connected component)")
        self.paper_grid_check = QCheckBox("Published evaluation grid (slower)")
        self.paper_grid_check.setToolTip("Place the windows exactly as the published evaluations did (the model "
                                         "card's stride): comparable with the papers' numbers, slower than the "
                                         "window overlap")
        self.overlap_spin = QDoubleSpinBox(minimum=0.0, maximum=0.95, singleStep=0.05, decimals=2, value=0.5)
        self.overlap_spin.setToolTip("The image is segmented block by block (windows): the share of each block "
                                     "that overlaps its neighbours. More overlap blends the blocks more smoothly "
                                     "and takes longer")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setToolTip(DEVICE_TIP)
        self.save_check = QCheckBox("Save as a \"prediction\" label version")
        self.save_check.setToolTip("Keep the hard label (and its soft label) in the project; open it "
                                   "from the Project panel's history to correct it")
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip(
            "Segment the image: the label is shown, the soft label and the uncertainty are added hidden "
            f"(show or hide the results with {_shortcuts.shown(_shortcuts.TOGGLE_RESULTS)})")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the prediction; no layer is changed")
        self.status_label = QLabel(wordWrap=True)
        self.setMinimumWidth(360)

        options = QFormLayout()
        options.addRow("Image", self.layer_combo)
        options.addRow("Model", self.model_combo)
        file_row = QHBoxLayout()
        file_row.addWidget(self.model_file_edit)
        file_row.addWidget(self.model_file_button)
        options.addRow("Model file", file_row)
        options.addRow("Uncertainty passes (MC dropout)", self.mc_spin)
        options.addRow(self.largest_check)
        options.addRow(self.paper_grid_check)
        options.addRow("Window overlap", self.overlap_spin)
        options.addRow("Device", self.device_combo)
        options.addRow(self.save_check)
        box = QGroupBox("Predict")
        box_layout = QVBoxLayout(box)
        box_layout.addWidget(self.case_label)
        box_layout.addLayout(options)
        buttons = QHBoxLayout()
        buttons.addWidget(self.predict_button)
        buttons.addWidget(self.cancel_button)
        box_layout.addLayout(buttons)

        layout = QVBoxLayout(self)
        layout.addWidget(box)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self.predict_button.clicked.connect(lambda _checked=False: self.predict())
        self.cancel_button.clicked.connect(lambda _checked=False: self.cancel())
        self.model_combo.currentIndexChanged.connect(lambda _index: self._apply_card_defaults())
        self.layer_combo.currentIndexChanged.connect(lambda _index: self._refresh_case())
        self.model_file_button.clicked.connect(lambda _checked=False: self._choose_model_file())
        self.model_file_edit.textChanged.connect(lambda _text: self._update_enabled())
        self.paper_grid_check.toggled.connect(lambda _on: self._update_enabled())
        self._update_enabled()

    # -- the request the worker consumes ---------------------------------------------------------

    def request(self) -> PredictRequest:
        """The ``PredictRequest`` the controls describe."""
        from_file = self.model_combo.currentData() == MODEL_FILE
        return PredictRequest(model_id=None if from_file else self.model_combo.currentData(),
                              model_file=Path(self.model_file_edit.text().strip()).expanduser() if from_file else None,
                              mc_samples=self.mc_spin.value(),
                              largest_component=self.largest_check.isChecked(),
                              paper_grid=self.paper_grid_check.isChecked() and self.paper_grid_check.isEnabled(),
                              overlap=round(self.overlap_spin.value(), 4),
                              device=self.device_combo.currentText(),
                              save_version=self.save_check.isChecked() and self.save_check.isEnabled())

    # -- actions -------------------------------------------------------------------------------

    def predict(self) -> GeneratorJob | None:
        """Start predicting the chosen image layer with ``request()``; returns the running job."""
        if self.job is not None and self.job.running:
            self._report_error("a prediction is already running; cancel it first")
            return None
        try:
            request = self.request()
            name, volume = self._chosen_image()
            model = self._chosen_source(request)
        except SemisegError as error:
            self._report_error(str(error))
            return None
        model_id = None if isinstance(model, Path) else model.id
        self._running_case = (name, model_id, request)
        self.progress_bar = progress(total=0, desc=f"Predicting {name}")
        self.set_status(f"Predicting {name} with {describe_model_source(model)}…")
        root = self.session.project.root if request.save_version else None
        author, note = self.session.author, f"Predict panel, {describe_model_source(model)}"

        def keep(prediction):  # in the worker; a failed save must not hide the prediction
            try:
                return save_in_project(root, name, prediction, model_id, author, note)
            except SemisegError as error:
                return error

        self.job = start_generator_job(
            lambda should_stop: predict_steps(model, volume, request, should_stop,
                                              keep if request.save_version else None),
            on_report=self._on_report, on_result=self._on_result, on_error=self._on_error,
            on_cancelled=self._on_cancelled, on_finished=self._on_finished)
        self._update_enabled()
        QTimer.singleShot(0, self._start_probe)  # once the click's own repaint is done
        return self.job

    def _start_probe(self) -> None:
        if self.job is not None and self.job.running:
            self.probe.start()

    def stall_report(self) -> StallReport | None:
        """Event-loop stalls of the running prediction (live), else of the last one."""
        return self.probe.report() if self.probe.running else self.last_stall_report

    def toggle_results(self) -> None:
        """Hide the result layers shown, or show again those this hid (the prediction when none)."""
        results = [layer for layer in self.viewer.layers if RESULT_KEY in layer.metadata]
        shown = [layer for layer in results if layer.visible]
        if shown:
            for layer in shown:
                layer.visible = False
            self._hidden_results = [layer.name for layer in shown]
            return
        again = [layer for layer in results if layer.name in self._hidden_results] or \
            [layer for layer in results if isinstance(layer, Labels)]
        for layer in again:
            layer.visible = True
        self._hidden_results = []

    # -- worker callbacks (GUI thread) -----------------------------------------------------------

    def _on_report(self, report) -> None:
        bar = self.progress_bar
        if bar is None:
            return
        if report.message:
            bar.set_description(report.message)
        if report.windows_total and bar.total != report.windows_total:
            bar.total = report.windows_total
        if report.windows_done != bar.n:
            bar.update(report.windows_done - bar.n)

    def _on_result(self, result) -> None:
        self.last_stall_report = self.probe.stop()  # the worker is done; napari now builds the layers
        prediction, saved = result
        case_id, model_id, _request = self._running_case
        self.last_prediction, self.last_saved = prediction, saved
        job = self.job
        job.hold()
        pending = list(prediction_layers(prediction, case_id, model_id))
        started = time.perf_counter()

        def show_next() -> None:
            try:
                self._add_or_replace(*pending.pop(0))
                if pending:
                    QTimer.singleShot(LAYER_GAP_MS, show_next)
                    return
                self.last_display_seconds = time.perf_counter() - started
                self._announce(prediction, case_id, saved)
            except Exception as error:  # a layer napari refuses must not leave the panel busy for good
                self._report_error(f"the prediction could not be shown: {describe_error(error)}")
            job.release()
            self._update_enabled()
        show_next()

    def _announce(self, prediction, case_id: str, saved) -> None:
        message = describe_prediction(prediction, case_id)
        if isinstance(saved, SemisegError):
            self.last_saved = None
            self._report_error(f"the prediction is shown but was not saved: {saved}")
            return
        if saved is not None:
            message += f" Saved as label version {saved[0].id}."
            self.session.notify("labels")
        self.set_status(message)
        show_info(message)

    def _on_error(self, error: BaseException) -> None:
        self._report_error(describe_error(error))

    def _on_cancelled(self, message: str) -> None:
        case_id = self._running_case[0] if self._running_case else "the case"
        self.set_status(f"Prediction of {case_id} cancelled; no layer was changed.")

    def _on_finished(self) -> None:
        if self.probe.running:  # cancelled or failed: no result came
            self.last_stall_report = self.probe.stop()
        if self.progress_bar is not None:
            self.progress_bar.close()
            self.progress_bar = None
        self._update_enabled()

    # -- layers ----------------------------------------------------------------------------------

    def _add_or_replace(self, data, kwargs: dict, layer_type: str) -> None:
        """Update the layer of that name in place (keeping the user's display settings), or add it."""
        if update_layer_in_place(self.viewer, data, kwargs, layer_type) is not None:
            return
        if isinstance(kwargs.get("colormap"), ColourRamp):
            ramp = kwargs["colormap"]
            kwargs = {**kwargs, "colormap": Colormap([list(c) for c in ramp.colours], name=ramp.name)}
        layer = self.viewer.add_layer(Layer.create(data, kwargs, layer_type))
        if layer_type == "labels":
            layer.contour = PREDICTION_CONTOUR

    # -- keeping in step with the project ----------------------------------------------------------

    def _on_session_change(self, change: str) -> None:
        if change in ("project", "models"):
            self._refresh_models()
        if change == "case":
            # The Project panel adds the case's layers after telling us: choose its image then.
            QTimer.singleShot(0, self._choose_open_case_layer)
        if change in ("project", "case"):
            self._refresh_case()

    def _image_layers(self) -> list:
        """Image layers one can predict on: 3-D, one channel, not a result of ours."""
        return [layer for layer in self.viewer.layers
                if isinstance(layer, Image) and RESULT_KEY not in layer.metadata and layer.ndim == 3
                and not layer.rgb and not layer.multiscale]

    def _refresh_layers(self, _event=None) -> None:
        chosen = self.layer_combo.currentText()
        names = [layer.name for layer in self._image_layers()]
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if chosen in names:
            self.layer_combo.setCurrentText(chosen)
        else:
            active = self.viewer.layers.selection.active
            if active is not None and active.name in names:
                self.layer_combo.setCurrentText(active.name)
        self.layer_combo.blockSignals(False)
        self._refresh_case()

    def _follow_active_layer(self, _event=None) -> None:
        active = self.viewer.layers.selection.active
        if active is not None and self.layer_combo.findText(active.name) >= 0:
            self.layer_combo.setCurrentText(active.name)

    def _choose_open_case_layer(self) -> None:
        opened = self.session.opened
        for layer in self._image_layers():
            if opened is not None and layer.metadata.get(CASE_KEY) == opened.case_id:
                self.layer_combo.setCurrentText(layer.name)
                return

    def _chosen_layer(self):
        name = self.layer_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise ProjectError("no image to predict on: open a case, open a volume file or choose an image layer")
        return self.viewer.layers[name]

    def _is_open_case(self, layer) -> bool:
        """Whether ``layer`` shows the image of the case open in the project (then it can be saved)."""
        opened = self.session.opened
        return (opened is not None and self.session.has_project and layer.metadata.get(CASE_KEY) == opened.case_id
                and tuple(layer.data.shape) == tuple(opened.image.shape))

    def _chosen_image(self):
        """(name of the results, ``Volume`` to predict): the open case's, or the layer's data on its grid."""
        layer = self._chosen_layer()
        if self._is_open_case(layer):
            return self.session.opened.case_id, self.session.opened.image
        return layer.name, layer_volume(layer.data, geometry_of_layer(layer), layer.metadata.get(SOURCE_KEY))

    def _chosen_source(self, request: PredictRequest):
        """The ``ModelVersion`` or model file ``Path`` the request names."""
        if request.model_file is not None:
            if not request.model_file.is_file():
                raise ProjectError(f"{request.model_file}: no such model file; choose a training run's model.pt")
            return request.model_file
        if not self.session.has_project:
            raise ProjectError("no project is open: choose \"Model file\" and a training run's model.pt, "
                               "or open a project in the Project panel")
        return resolve_model(self.session.project, request.model_id)

    def _choose_model_file(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, "Model file", self.model_file_edit.text(),
                                                    "Model files (*.pt);;All files (*)")
        if path:
            self.model_file_edit.setText(path)
            self.model_combo.setCurrentIndex(self.model_combo.findData(MODEL_FILE))

    def _refresh_models(self) -> None:
        # Without a project, only a model file can predict.
        fill_model_choices(self.model_combo, self.session.project.models() if self.session.has_project else [],
                           extra=(("Model file (below)", MODEL_FILE),),
                           fallback=None if self.session.has_project else MODEL_FILE)
        self._apply_card_defaults()

    def _refresh_case(self) -> None:
        name = self.layer_combo.currentText()
        if not name or name not in self.viewer.layers:
            self.case_label.setText("No image: open a case in the Project panel, or a volume file.")
        else:
            layer = self.viewer.layers[name]
            shape = "×".join(map(str, layer.data.shape))
            self.case_label.setText(f"Open case: <b>{name}</b> ({shape} voxels)" if self._is_open_case(layer) else
                                    f"Image layer: <b>{name}</b> ({shape} voxels; not a project case, "
                                    "so the results are shown, not saved)")
        self._update_enabled()

    def _apply_card_defaults(self) -> None:
        """Show the chosen model's settings: its card's grid and overlap, and the component rule
        of its method's post-processing (SS-Net keeps the largest component, as semiseg infer does)."""
        from ..workflows.models import card_of
        from ..workflows.predict import model_keeps_largest_component

        model = self._chosen_model()
        if model is None:  # none yet, or a model file: its settings are read when it is loaded
            self._update_enabled()
            return
        try:
            inference = card_of(model).inference
        except SemisegError as error:
            self._report_error(str(error))
            return
        has_stride = inference.stride is not None
        self.paper_grid_check.setEnabled(has_stride)
        self.paper_grid_check.setChecked(has_stride)
        self.overlap_spin.setValue(float(inference.overlap))
        self.largest_check.setChecked(model_keeps_largest_component(model))
        self._update_enabled()

    def _chosen_model(self):
        if not self.session.has_project:
            return None
        if self.model_combo.currentData() == MODEL_FILE:
            return None
        try:
            return resolve_model(self.session.project, self.model_combo.currentData())
        except SemisegError:
            return None

    def _update_enabled(self) -> None:
        running = self.job is not None and self.job.running
        from_file = self.model_combo.currentData() == MODEL_FILE
        self.model_file_edit.setEnabled(from_file)
        has_model = bool(self.model_file_edit.text().strip()) if from_file else self.session.has_project
        self.predict_button.setEnabled(not running and bool(self.layer_combo.currentText()) and has_model)
        name = self.layer_combo.currentText()
        self.save_check.setEnabled(name in self.viewer.layers and self._is_open_case(self.viewer.layers[name]))
        self.cancel_button.setEnabled(running)
        self.overlap_spin.setEnabled(not (self.paper_grid_check.isChecked() and self.paper_grid_check.isEnabled()))


__all__ = ["PredictWidget"]
