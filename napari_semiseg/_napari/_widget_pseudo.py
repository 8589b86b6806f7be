"""The "Pseudo-label" dock widget: label every unlabelled case with a model, in the background.

The widget builds a ``PseudoLabelRequest``; a generator worker runs ``pseudo_label_steps``
(``engine.pseudo.iter_pseudo_label``) whose reports move a napari progress bar (each case
counts equally, its window batches move the bar within it). Each stored case — a "pseudo"
label version and its 8-bit soft label — is listed here at once and the session is told, so
the Project panel's table (latest kind, rank, score) follows as cases finish. Cancel stops
between window batches; the cases already stored stay, the one in progress leaves nothing.
A case that cannot be labelled (a damaged image file) is named in the status line and the run
goes on; the final message lists the failures. Errors reach napari's notifications with their
message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.utils import progress
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout,
                            QHeaderView, QLabel, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout,
                            QWidget)

from ..errors import SemisegError
from ._panel_parts import fill_model_choices
from ._pseudo_job import (DEVICES, PseudoLabelRequest, cases_to_pseudo_label, describe_stored_case,
                          describe_summary, pseudo_label_steps)
from ._predict_job import resolve_model
from ._panel_status import JobPanel
from ._plain_words import DEVICE_TIP
from ._shared import session_for
from ._workers import GeneratorJob, describe_error, start_generator_job

if TYPE_CHECKING:
    import napari

RESULT_COLUMNS = ("Case", "Foreground", "Uncertainty", "Confidence")
#: Progress-bar steps per case: enough for the window batches to move the bar smoothly.
STEPS_PER_CASE = 100


class PseudoLabelWidget(JobPanel, QWidget):
    """Dock widget: model, device, "Pseudo-label unlabelled cases" / Cancel, the stored cases."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.job: GeneratorJob | None = None
        self.progress_bar = None
        self.stored: list = []
        self.last_summary = None
        self._build()
        self.session.listen(self._on_session_change)
        self._refresh_models()

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("The model version that labels the cases (the active one by default)")
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setToolTip(DEVICE_TIP)
        self.skip_check = QCheckBox("Skip cases this model already pseudo-labelled", checked=True)
        self.skip_check.setToolTip("A stopped run then continues where it stopped")
        self.todo_label = QLabel(wordWrap=True)
        self.run_button = QPushButton("Pseudo-label unlabelled cases")
        self.run_button.setToolTip("Store a \"pseudo\" label version and a soft label (8-bit class "
                                   "probabilities with an uncertainty summary) for each case")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop after the window being computed; the cases stored before stay, the "
                                      "case in progress leaves nothing")
        self.results_table = QTableWidget(0, len(RESULT_COLUMNS))
        self.results_table.setToolTip("Each case labelled in this run: its foreground voxels, how unsure the model "
                                      "was on average (0 sure … 1 unsure: mean entropy) and how confident (mean "
                                      "probability of the chosen class)")
        self.results_table.setHorizontalHeaderLabels(RESULT_COLUMNS)
        self.results_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.results_table.verticalHeader().setVisible(False)
        self.results_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.results_table.horizontalHeader().setStretchLastSection(True)
        self.results_table.setMinimumHeight(110)
        self.status_label = QLabel(wordWrap=True)
        self.setMinimumWidth(360)

        options = QFormLayout()
        options.addRow("Model", self.model_combo)
        options.addRow("Device", self.device_combo)
        options.addRow(self.skip_check)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        box = QGroupBox("Pseudo-label the unlabelled cases")
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(options)
        box_layout.addWidget(self.todo_label)
        box_layout.addLayout(buttons)
        box_layout.addWidget(QLabel("Stored in this run:"))
        box_layout.addWidget(self.results_table)

        layout = QVBoxLayout(self)
        layout.addWidget(box)
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self.run_button.clicked.connect(lambda _checked=False: self.run())
        self.cancel_button.clicked.connect(lambda _checked=False: self.cancel())
        self.model_combo.currentIndexChanged.connect(lambda _index: self._refresh_todo())
        self.skip_check.toggled.connect(lambda _on: self._refresh_todo())
        self._update_enabled()

    # -- the request the worker consumes ---------------------------------------------------------

    def request(self) -> PseudoLabelRequest:
        """The ``PseudoLabelRequest`` the controls describe."""
        return PseudoLabelRequest(model_id=self.model_combo.currentData(), device=self.device_combo.currentText(),
                                  skip_done=self.skip_check.isChecked())

    # -- actions -------------------------------------------------------------------------------

    def run(self) -> GeneratorJob | None:
        """Start pseudo-labelling the cases of ``request()``; returns the running job."""
        if self.job is not None and self.job.running:
            self._report_error("pseudo-labelling is already running; cancel it first")
            return None
        try:
            project = self.session.project
            request = self.request()
            model = resolve_model(project, request.model_id)
            case_ids = cases_to_pseudo_label(project, request)
        except SemisegError as error:
            self._report_error(str(error))
            return None
        if not case_ids:
            self.set_status(f"Every unlabelled case already has a pseudo-label by model {model.id}.")
            return None
        root = project.root
        self.stored, self.last_summary = [], None
        self.results_table.setRowCount(0)
        self.progress_bar = progress(total=STEPS_PER_CASE * len(case_ids),
                                     desc=f"Pseudo-labelling {len(case_ids)} cases")
        self.set_status(f"Pseudo-labelling {len(case_ids)} case{'s' * (len(case_ids) != 1)} with model "
                        f"{model.id}…")
        self.job = start_generator_job(
            lambda should_stop: pseudo_label_steps(root, request, case_ids, should_stop),
            on_report=self._on_report, on_result=self._on_result, on_error=self._on_error,
            on_cancelled=self._on_cancelled, on_finished=self._on_finished)
        self._update_enabled()
        return self.job

    # -- worker callbacks (GUI thread) -----------------------------------------------------------

    def _on_report(self, report) -> None:
        # Loaded by the worker already; importing at module level would load torch with the panel.
        from ..engine.pseudo import (PseudoLabelCase, PseudoLabelFailure, PseudoLabelProgress,
                                     PseudoLabelSummary)

        if isinstance(report, PseudoLabelProgress):
            self._move_bar(report.fraction, f"{report.case_id} ({report.case_index + 1}/{report.case_count})")
        elif isinstance(report, PseudoLabelCase):
            self.stored.append(report)
            self._add_result_row(report)
            self.set_status(f"Stored {describe_stored_case(report)}.")
            self.session.notify("labels")  # the Project panel's table follows case by case
        elif isinstance(report, PseudoLabelFailure):
            self.set_status(f"Could not label {report}; going on with the others.", error=True)
        elif isinstance(report, PseudoLabelSummary):
            self.last_summary = report

    def _on_result(self, summary) -> None:
        self.last_summary = summary
        message = describe_summary(summary)
        if summary.failed:
            self._report_error(message)
            return
        self.set_status(message)
        show_info(message)

    def _on_error(self, error: BaseException) -> None:
        self._report_error(describe_error(error))

    def _on_cancelled(self, _message: str) -> None:
        self.set_status(f"Pseudo-labelling cancelled after {len(self.stored)} case"
                        f"{'s' * (len(self.stored) != 1)}; those stay stored, the case in progress left nothing.")

    def _on_finished(self) -> None:
        if self.progress_bar is not None:
            self.progress_bar.close()
            self.progress_bar = None
        self._refresh_todo()
        self._update_enabled()

    def _move_bar(self, fraction: float, description: str) -> None:
        bar = self.progress_bar
        if bar is None:
            return
        bar.set_description(description)
        target = min(bar.total, round(fraction * bar.total))
        if target > bar.n:
            bar.update(target - bar.n)

    def _add_result_row(self, item) -> None:
        row = self.results_table.rowCount()
        self.results_table.insertRow(row)
        for column, value in enumerate((item.case_id, item.foreground_voxels, f"{item.mean_entropy:.3f}",
                                        f"{item.mean_confidence:.3f}")):
            self.results_table.setItem(row, column, QTableWidgetItem(str(value)))
        self.results_table.scrollToBottom()

    # -- keeping in step with the project ----------------------------------------------------------

    def _on_session_change(self, change: str) -> None:
        if change in ("project", "models"):
            self._refresh_models()
        elif change in ("labels", "cases") and not (self.job is not None and self.job.running):
            self._refresh_todo()

    def _refresh_models(self) -> None:
        fill_model_choices(self.model_combo, self.session.project.models() if self.session.has_project else [])
        self._refresh_todo()

    def _refresh_todo(self) -> None:
        if not self.session.has_project:
            self.todo_label.setText("Open a project in the Project panel.")
        else:
            project = self.session.project
            total = len(project.case_ids(split="unlabelled"))
            try:
                todo = len(cases_to_pseudo_label(project, self.request()))
                self.todo_label.setText(f"{todo} of {total} unlabelled cases to do.")
            except SemisegError:
                self.todo_label.setText(f"{total} unlabelled cases; the project has no model yet.")
        self._update_enabled()

    def _update_enabled(self) -> None:
        running = self.job is not None and self.job.running
        self.run_button.setEnabled(not running and self.session.has_project)
        self.cancel_button.setEnabled(running)
        for control in (self.model_combo, self.device_combo, self.skip_check):
            control.setEnabled(not running)


__all__ = ["PseudoLabelWidget"]
