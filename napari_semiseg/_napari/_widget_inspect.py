"""The "Soft-label correction" dock widget: a case's soft label before and after the teacher team.

For the case open in the Project panel it shows, as layers on the case's grid, the teacher's
soft label ("<case> soft label before correction"), the corrected one ("… after correction")
and the voxels whose soft value crossed 0.5 ("<case> crossed 0.5": 1 raised above, 2 lowered
below), and in the panel the histograms of the soft values per gold class before and after
(PLC-KD supplement, Fig. 2) with their counts. "Correct soft label" runs the teacher team on
the case's newest corrected label in a worker and stores the result. The method is a
reconstruction, and the panel says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari.layers import Layer
from napari.utils.notifications import show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (QAbstractItemView, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                            QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from ..engine.pseudo import METHOD_LABEL, RECONSTRUCTION_NOTE
from ..errors import SemisegError
from ..project import GOLD_KINDS
from ._histogram_plot import SoftLabelHistogramPlot
from ._inspect import SoftLabelInspection, correct_steps, inspection_key, inspection_layers, load_inspection
from ._layer_update import update_layer_in_place
from ._panel_status import PanelStatus
from ._plain_words import for_researchers
from ._panel_parts import scroll_panel
from ._shared import session_for
from ._workers import GeneratorJob, describe_error, start_generator_job

if TYPE_CHECKING:
    import napari

COUNT_COLUMNS = ("Gold class", "Voxels", "Wrong before", "Wrong after", "Crossed")
SHORT_NOTE = ("Moves the model's soft label onto your saved correction, voxel by voxel, in four steps "
              "(reconstructed from the PLC-KD paper's abstract and supplement; hover over the title for details).")
NOTE_TIP = ("Every voxel you labelled ends on its class's side of 0.5, while the soft label keeps the model's "
            "doubt elsewhere; the next fine-tune can learn from both (a reconstruction of the PLC-KD teacher team)")
#: Marks the layers this panel owns, so that it removes only those.
OWNER_KEY = "semiseg_inspection"
#: The least height of the panel's scrolled content, in pixels: docked under the Project panel in
#: a 1400×900 window, Qt squeezed the panel below its content and cut the histograms' x axis off;
#: now the panel scrolls, and keeps the button and most of the histograms in view.
MIN_VIEW_HEIGHT = 180


class SoftLabelInspectionWidget(PanelStatus, QWidget):
    """Dock widget: before/after soft labels, crossed voxels and histograms of the open case."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.job: GeneratorJob | None = None
        self.inspection: SoftLabelInspection | None = None
        self._shown: tuple | None = None  # (teacher id, corrected id) of the layers shown
        self._build()
        self.session.listen(self._on_session_change)
        self.refresh()

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        # The method's name and how it was reconstructed: the paper's terms, for researchers.
        self.method_label = for_researchers(QLabel(f"<b>{METHOD_LABEL}</b>", wordWrap=True))
        self.method_label.setToolTip(RECONSTRUCTION_NOTE)
        self.reconstructed_badge = for_researchers(QLabel("RECONSTRUCTED"))
        self.reconstructed_badge.setStyleSheet("background: #b06a10; color: white; padding: 1px 6px; "
                                               "border-radius: 3px; font-weight: bold;")
        self.reconstructed_badge.setToolTip(RECONSTRUCTION_NOTE)
        self.note_label = QLabel(SHORT_NOTE, wordWrap=True)
        self.note_label.setToolTip(NOTE_TIP)
        self.note_label.setStyleSheet("color: #a0a0a0; font-size: 10px;")
        self.case_label = QLabel(wordWrap=True)
        self.correct_button = QPushButton("Correct soft label")
        self.correct_button.setToolTip("After saving a correction in the Project panel: correct the case's "
                                       "stored soft label against it and keep the result")
        self.plot = SoftLabelHistogramPlot()
        self.counts_table = QTableWidget(0, len(COUNT_COLUMNS))
        self.counts_table.setHorizontalHeaderLabels(COUNT_COLUMNS)
        self.counts_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.counts_table.verticalHeader().setVisible(False)
        self.counts_table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.counts_table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.counts_table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.counts_table.setToolTip("Labelled voxels per class of the corrected label; 'wrong': on the "
                                     "other class's side of 0.5; 'crossed': moved across 0.5")
        self.steps_label = QLabel(wordWrap=True)
        self.status_label = QLabel(wordWrap=True)
        self.setMinimumWidth(420)

        title = QHBoxLayout()
        title.addWidget(self.reconstructed_badge)
        title.addWidget(self.method_label, stretch=1)
        box = QGroupBox("Soft label of the open case, before and after correction")
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(title)
        box_layout.addWidget(self.note_label)
        box_layout.addWidget(self.case_label)
        box_layout.addWidget(self.correct_button)
        box_layout.addWidget(self.plot, stretch=1)
        box_layout.addWidget(self.counts_table)
        box_layout.addWidget(self.steps_label)

        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(box, stretch=1)
        layout.addWidget(self.status_label)
        self.scroll = scroll_panel(self, content, MIN_VIEW_HEIGHT)
        self.correct_button.clicked.connect(lambda _checked=False: self.correct())

    # -- actions ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Show what the project holds for the open case (nothing is recomputed)."""
        opened = self.session.opened
        if opened is None or not self.session.has_project:
            self._show(None, "No case is open: open one in the Project panel.")
            return
        try:
            inspection = load_inspection(self.session.project, opened.case_id, opened.version_id)
        except SemisegError as error:
            self._show(None, "")
            self._report_error(str(error))
            return
        if inspection is None:
            hint = (f"Case {opened.case_id} has no soft label yet: pseudo-label it (Pseudo-label panel) or "
                    "save a prediction of it (Predict panel).")
        elif not inspection.has_correction:
            hint = (f"Teacher soft label {inspection.teacher.id} of {opened.case_id}. Correct the labels, "
                    "save the correction (Project panel), then press \"Correct soft label\".")
        else:
            hint = self._describe(inspection)
        self._show(inspection, hint)

    def correct(self) -> GeneratorJob | None:
        """Correct the open case's soft label against its newest corrected label, in a worker."""
        if self.job is not None and self.job.running:
            return None
        opened = self.session.opened
        if opened is None:
            self._report_error("no case is open: open one in the Project panel first")
            return None
        root, case_id = self.session.project.root, opened.case_id
        self.set_status(f"Correcting the soft label of {case_id}…")
        self.job = start_generator_job(
            lambda should_stop: correct_steps(root, case_id, should_stop),
            on_report=lambda _message: None, on_result=lambda result: self._on_corrected(case_id, *result),
            on_error=lambda error: self._report_error(describe_error(error)),
            on_cancelled=lambda _message: self.set_status("Correction cancelled."),
            on_finished=self._update_enabled)
        self._update_enabled()
        return self.job

    # -- showing -----------------------------------------------------------------------------------

    def _on_corrected(self, case_id: str, inspection: SoftLabelInspection, reused: bool) -> None:
        opened = self.session.opened
        if opened is None or opened.case_id != case_id:
            return  # another case was opened meanwhile; its own soft labels are shown
        message = self._describe(inspection)
        message += " (the same correction was already stored)" if reused else " Stored."
        self._show(inspection, message)
        show_info(message)

    def _describe(self, inspection: SoftLabelInspection) -> str:
        crossed = int((inspection.crossed > 0).sum())
        text = (f"Soft label {inspection.corrected.id} of {inspection.case_id}: teacher soft label "
                f"{inspection.teacher.id} corrected against label version {inspection.gold_version.id} "
                f"({inspection.gold_version.kind}); {crossed} voxels crossed 0.5.")
        newest = self.session.project.latest_label(inspection.case_id, kinds=GOLD_KINDS)
        if newest is not None and newest.id != inspection.gold_version.id:
            text += (f" Label version {newest.id} is newer: press \"Correct soft label\" to correct "
                     "against it.")
        return text

    def _show(self, inspection: SoftLabelInspection | None, message: str) -> None:
        self.inspection = inspection
        self._show_layers(inspection)
        corrected = inspection if inspection is not None and inspection.has_correction else None
        self.plot.show_histograms(None if corrected is None else corrected.histograms)
        rows = [] if corrected is None else corrected.class_rows()
        self.counts_table.setRowCount(len(rows))
        self._fit_counts_table()
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                self.counts_table.setItem(r, c, QTableWidgetItem(str(value)))
        self.steps_label.setText("" if corrected is None else f"Voxels fixed, step by step: {corrected.step_summary()}.")
        opened = self.session.opened
        self.case_label.setText("No case is open." if opened is None else f"Open case: <b>{opened.case_id}</b>")
        self.set_status(message)
        self._update_enabled()

    def _fit_counts_table(self) -> None:
        """Exactly as tall as its header and rows: no scroll bar for two rows."""
        table = self.counts_table
        rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
        table.setFixedHeight(table.horizontalHeader().height() + rows + 2 * table.frameWidth())

    def _show_layers(self, inspection: SoftLabelInspection | None) -> None:
        """Replace this panel's layers by those of ``inspection``, keeping the active layer."""
        active = self.viewer.layers.selection.active
        tuples = [] if inspection is None else inspection_layers(inspection, self.session.opened.image.geometry)
        wanted = {kwargs["name"] for _data, kwargs, _kind in tuples}
        for layer in [layer for layer in self.viewer.layers if layer.metadata.get(OWNER_KEY)]:
            if layer.name not in wanted:
                self.viewer.layers.remove(layer)
        # The user's visibility choices stand until another soft label is shown.
        shown = None if inspection is None else (inspection.teacher.id, getattr(inspection.corrected, "id", None))
        reset_visibility, self._shown = shown != self._shown, shown
        for data, kwargs, layer_type in tuples:
            kwargs["metadata"][OWNER_KEY] = True
            self._add_or_replace(data, kwargs, layer_type, reset_visibility)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active  # the clinician keeps painting where they were

    def _add_or_replace(self, data, kwargs: dict, layer_type: str, reset_visibility: bool) -> None:
        layer = update_layer_in_place(self.viewer, data, kwargs, layer_type)
        if layer is not None:
            if reset_visibility:
                layer.visible = kwargs.get("visible", True)
            return
        self.viewer.add_layer(Layer.create(data, kwargs, layer_type))

    def layers(self) -> dict[str, Layer]:
        """This panel's layers in the viewer, by name."""
        return {layer.name: layer for layer in self.viewer.layers if layer.metadata.get(OWNER_KEY)}

    # -- keeping in step with the project ----------------------------------------------------------

    def _on_session_change(self, change: str) -> None:
        if change == "case":
            # The Project panel adds the case's layers after telling us; ours go on top of them.
            QTimer.singleShot(0, self.refresh)
        elif change == "project":
            self._show(None, "")
        elif change == "labels" and self.inspection is not None and self.inspection.has_correction:
            self.set_status(self._describe(self.inspection))  # says when a newer correction is saved
        elif change == "labels" and self._open_case_has_news():
            self.refresh()  # the open case has just got its (first or newer) teacher soft label
        self._update_enabled()

    def _open_case_has_news(self) -> bool:
        """Whether the open case's soft labels differ from those shown (a catalogue query, no volume).

        A pseudo-labelling run changes the labels once per case, mostly of other cases; loading
        and redrawing each time froze the window for most of a second.
        """
        opened = self.session.opened
        if opened is None or not self.session.has_project:
            return self._shown is not None
        try:
            return inspection_key(self.session.project, opened.case_id, opened.version_id) != self._shown
        except SemisegError:
            return True  # refresh() reports it

    def _update_enabled(self) -> None:
        running = self.job is not None and self.job.running
        opened = self.session.opened
        can_correct = (opened is not None and self.session.has_project and self.inspection is not None
                       and self.session.project.latest_label(opened.case_id, kinds=GOLD_KINDS) is not None)
        self.correct_button.setEnabled(can_correct and not running)


__all__ = ["SoftLabelInspectionWidget"]
