"""The "Predict" dock widget: run a model version on the open case, off the GUI thread.

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

from napari.layers import Layer
from napari.utils import Colormap, progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                            QPushButton, QSpinBox, QVBoxLayout, QWidget)

from ..errors import ProjectError, SemisegError
from ._model_rows import describe_model
from ._layer_update import update_layer_in_place
from ._predict_job import (PREDICTION_CONTOUR, ColourRamp, PredictRequest, describe_prediction, predict_steps,
                           prediction_layers, resolve_model, save_in_project)
from ._responsiveness import EventLoopProbe, StallReport
from ._shared import session_for
from ._workers import GeneratorJob, describe_error, start_generator_job

if TYPE_CHECKING:
    import napari

DEVICES = ("auto", "cpu", "cuda")

#: Pause between two new result layers. A zero-delay timer runs in the same pass of the event
#: loop as the timer before it, so the window could neither repaint nor take input between two
#: layer builds (about 100 ms each): one 240 ms stall instead of three short ones.
LAYER_GAP_MS = 20


class PredictWidget(QWidget):
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
        self._build()
        self.session.listen(self._on_session_change)
        self._refresh_models()
        self._refresh_case()

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.case_label = QLabel(wordWrap=True)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The project's active model, or any other model version")
        self.mc_spin = QSpinBox(minimum=0, maximum=64, value=0)
        self.mc_spin.setToolTip("Monte-Carlo dropout sweeps (0: one deterministic sweep); each "
                                "sweep costs a whole prediction")
        self.largest_check = QCheckBox("Keep the largest connected component")
        self.paper_grid_check = QCheckBox("Papers' dense window grid (card stride)")
        self.paper_grid_check.setToolTip("The exact stride of the published evaluations when the "
                                         "model's card has one; slower than an overlap")
        self.overlap_spin = QDoubleSpinBox(minimum=0.0, maximum=0.95, singleStep=0.05, decimals=2, value=0.5)
        self.overlap_spin.setToolTip("Fraction of a window shared with its neighbours")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.save_check = QCheckBox("Save as a \"prediction\" label version")
        self.save_check.setToolTip("Keep the hard label (and its soft label) in the project; open it "
                                   "from the Project panel's history to correct it")
        self.predict_button = QPushButton("Predict")
        self.cancel_button = QPushButton("Cancel")
        self.status_label = QLabel(wordWrap=True)
        self.setMinimumWidth(360)

        options = QFormLayout()
        options.addRow("Model", self.model_combo)
        options.addRow("MC-dropout samples", self.mc_spin)
        options.addRow(self.largest_check)
        options.addRow(self.paper_grid_check)
        options.addRow("Window overlap", self.overlap_spin)
        options.addRow("Device", self.device_combo)
        options.addRow(self.save_check)
        box = QGroupBox("Predict on the open case")
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
        self.paper_grid_check.toggled.connect(lambda _on: self._update_enabled())
        self._update_enabled()

    # -- the request the worker consumes ---------------------------------------------------------

    def request(self) -> PredictRequest:
        """The ``PredictRequest`` the controls describe."""
        return PredictRequest(model_id=self.model_combo.currentData(), mc_samples=self.mc_spin.value(),
                              largest_component=self.largest_check.isChecked(),
                              paper_grid=self.paper_grid_check.isChecked() and self.paper_grid_check.isEnabled(),
                              overlap=round(self.overlap_spin.value(), 4),
                              device=self.device_combo.currentText(), save_version=self.save_check.isChecked())

    # -- actions -------------------------------------------------------------------------------

    def predict(self) -> GeneratorJob | None:
        """Start predicting the open case with ``request()``; returns the running job."""
        if self.job is not None and self.job.running:
            self._report_error("a prediction is already running; cancel it first")
            return None
        try:
            opened = self.session.opened
            if opened is None:
                raise ProjectError("no case is open: open one in the Project panel first")
            request = self.request()
            model = resolve_model(self.session.project, request.model_id)
        except SemisegError as error:
            self._report_error(str(error))
            return None
        self._running_case = (opened.case_id, model.id, request)
        self.progress_bar = progress(total=0, desc=f"Predicting {opened.case_id}")
        self.set_status(f"Predicting {opened.case_id} with model {model.id}…")
        root, author = self.session.project.root, self.session.author

        def keep(prediction):  # in the worker; a failed save must not hide the prediction
            try:
                return save_in_project(root, opened.case_id, prediction, model.id, author)
            except SemisegError as error:
                return error

        self.job = start_generator_job(
            lambda should_stop: predict_steps(model, opened.image, request, should_stop,
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

    def cancel(self) -> None:
        """Stop the running prediction between two window batches (nothing is added)."""
        if self.job is not None and self.job.running:
            self.set_status("Cancelling…")
            self.job.cancel()

    def set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #e06060;" if error else "")

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

    def _report_error(self, message: str) -> None:
        self.set_status(message, error=True)
        show_error(message)

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
        if change in ("project", "case"):
            self._refresh_case()

    def _refresh_models(self) -> None:
        chosen = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        models = self.session.project.models() if self.session.has_project else []
        active = next((m for m in models if m.active), None)
        self.model_combo.addItem("Active model" + (f" ({describe_model(active)})" if active else " (none yet)"),
                                 None)
        for model in reversed(models):
            self.model_combo.addItem(describe_model(model), model.id)
        index = self.model_combo.findData(chosen)
        self.model_combo.setCurrentIndex(max(index, 0))
        self.model_combo.blockSignals(False)
        self._apply_card_defaults()

    def _refresh_case(self) -> None:
        opened = self.session.opened
        self.case_label.setText("No case is open: open one in the Project panel." if opened is None
                                else f"Open case: <b>{opened.case_id}</b> "
                                     f"({'×'.join(map(str, opened.image.shape))} voxels)")
        self._update_enabled()

    def _apply_card_defaults(self) -> None:
        """Show the chosen model's settings: its card's grid and overlap, and the component rule
        of its method's post-processing (SS-Net keeps the largest component, as semiseg infer does)."""
        from ..workflows.models import card_of
        from ..workflows.predict import model_keeps_largest_component

        model = self._chosen_model()
        if model is None:
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
        try:
            return resolve_model(self.session.project, self.model_combo.currentData())
        except SemisegError:
            return None

    def _update_enabled(self) -> None:
        running = self.job is not None and self.job.running
        self.predict_button.setEnabled(not running and self.session.opened is not None)
        self.cancel_button.setEnabled(running)
        self.overlap_spin.setEnabled(not (self.paper_grid_check.isChecked() and self.paper_grid_check.isEnabled()))


__all__ = ["PredictWidget"]
