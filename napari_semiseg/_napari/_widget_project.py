"""The "Project" dock widget: open a project, import volumes, set splits, pick a case, correct
its labels, save, go back, export.

The widget only turns ``ProjectSession`` results into layers and tables, and ``SemisegError``s
into napari notifications; all decisions live in the session, which is tested without Qt, and
in ``workflows`` (imports, export), whose generators run in workers (``_import_job``).
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Layer
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGroupBox, QLabel, QLineEdit, QMessageBox,
                            QVBoxLayout, QWidget)

from ..errors import ProjectError, SemisegError
from ..project import SPLITS
from ..workflows.export_dicom_seg import DEFAULT_SEGMENT_LABEL, is_from_dicom
from . import _shortcuts
from ._case_ranking import RANK_COLUMNS, CaseRanking, show_ranks
from ._import_job import describe_export, describe_import, export_steps, import_steps
from ._layers import LABEL_VERSION_KEY, image_layer_data, labels_layer_data
from ._session import OpenedCase, ProjectSession
from ._panel_status import JobPanel
from ._shared import session_for, share_session
from ._panel_parts import button, group_box, row_of
from ._tables import fill_rows, row_id, rows_height, select_row, selected_id, selection_table
from ._workers import GeneratorJob, describe_error, start_generator_job

if TYPE_CHECKING:
    import napari

#: A case's shape is in its id's tooltip: at 1400×900 a shape column pushed Versions and the
#: ranks out of sight.
CASE_COLUMNS = ("Case", "Split", "Latest", "Versions") + RANK_COLUMNS
SPLIT_COLUMN = CASE_COLUMNS.index("Split")
#: What each split means to the user (the split combo's tooltips).
SPLIT_HINTS = {"labelled": "trains the model with its label",
               "unlabelled": "trains the model without a label (semi-supervised)",
               "validation": "measures each fine-tuned model; never trained on",
               "test": "kept out of training and validation"}
MODALITIES = ("MR", "CT")
#: How Export writes the label: ``workflows.export.LABEL_FORMATS`` as the user reads them.
LABEL_FORMAT_NAMES = {"NIfTI": "nifti", "DICOM-SEG": "dicom-seg"}
HISTORY_COLUMNS = ("Version", "Kind", "Parent", "Changed", "Author", "Saved")
SAVED_COLUMN = HISTORY_COLUMNS.index("Saved")


def _reports_errors(method):
    """Turn a ``SemisegError`` raised by a user action into a notification and a status line."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except SemisegError as error:
            self.set_status(str(error), error=True)
            show_error(str(error))
            return None
    return wrapper


class ProjectWidget(JobPanel, QWidget):
    """Dock widget: project folder, case table, save correction, label history."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", session: ProjectSession | None = None):
        super().__init__()
        self.viewer = napari_viewer
        # The Predict and Fine-tune panels of this viewer work on the same project.
        self.session = share_session(napari_viewer, session) if session else session_for(napari_viewer)
        self.image_layer = None
        self.labels_layer = None
        self.job: GeneratorJob | None = None  # an import or an export
        self.progress_bar = None
        # Rank/score columns and "Next case": unlabelled cases by uncertainty, ranked off the GUI thread.
        self.ranking = CaseRanking(self.session, lambda ranks: show_ranks(
            self.cases_table, ranks, first_column=len(CASE_COLUMNS) - len(RANK_COLUMNS)))
        self._build()
        self.session.listen(self._on_session_change)
        _shortcuts.bind(napari_viewer, _shortcuts.SAVE_CORRECTION, self, ProjectWidget.save_correction)
        _shortcuts.bind(napari_viewer, _shortcuts.NEXT_CASE, self, ProjectWidget.next_case)

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.setMinimumWidth(520)
        self.status_label = QLabel("Create or open a project.", wordWrap=True)
        layout = QVBoxLayout(self)
        layout.addWidget(self._project_group())
        layout.addWidget(self._cases_group(), stretch=3)
        layout.addWidget(self._history_group(), stretch=2)
        layout.addWidget(self.status_label)
        self._update_enabled()

    def _project_group(self) -> QGroupBox:
        self.folder_edit = QLineEdit(placeholderText="project folder")
        self.folder_edit.setToolTip("The project's folder: its volumes, every saved label version and the "
                                    "trained models")
        self.folder_edit.returnPressed.connect(lambda: self.open_project())
        self.browse_button = button("Browse…", "Choose the project folder", self._choose_folder)
        self.open_button = button("Open", "Open the project in this folder", self.open_project)
        self.create_button = button("Create", "Start a new, empty project in this folder", self.create_project)
        return group_box("Project", row_of(self.folder_edit, self.browse_button, self.open_button,
                                           self.create_button))

    def _cases_group(self) -> QGroupBox:
        self.import_files_button = button(
            "Import files…", "Add volumes to the project; a label file beside a volume, named like it with "
            "_label, _seg or _mask, comes along as its gold label", lambda: self._choose_import(files=True))
        self.import_folder_button = button(
            "Import folder…", "Add every volume and DICOM series of a folder; labels beside them or in its "
            "labels/ folder, matched by name", lambda: self._choose_import(files=False))
        self.modality_combo = QComboBox()
        self.modality_combo.addItems(MODALITIES)
        self.modality_combo.setToolTip("The imaging modality of the volumes to import (CT gets a soft-tissue window)")
        self.copy_check = QCheckBox("Copy files", checked=True)
        self.copy_check.setToolTip("Keep a copy of each volume in the project folder, so that it still opens "
                                   "when the original moves")
        self.cancel_button = button("Cancel", "Stop the import after the case being read; the cases before it stay",
                                    self.cancel)
        self.cases_table = selection_table(CASE_COLUMNS, stretch=0)
        # Stacked under other panels the table would shrink to one row; keep a few visible.
        self.cases_table.setMinimumHeight(rows_height(self.cases_table, 5))
        self.cases_table.setToolTip("Double-click a case to open it; choose its split in the Split column")
        self.cases_table.cellDoubleClicked.connect(lambda row, _col: self.open_case(row_id(self.cases_table, row)))
        self.open_case_button = button("Open case", "Show the selected case with its newest label (or "
                                       "double-click its row)", self.open_case)
        self.save_button = button("Save correction", _shortcuts.with_key(
            "Save the labels layer as a new corrected version", _shortcuts.SAVE_CORRECTION), self.save_correction)
        self.next_case_button = button("Next case", _shortcuts.with_key(
            "Open the unlabelled case the model is least sure about (rank 1: mean entropy plus teacher "
            "disagreement)", _shortcuts.NEXT_CASE), self.next_case)
        self.export_button = button(
            "Export…", "Write the open case's label, soft label and uncertainty as NIfTI files named after the "
            "case into a folder you choose (the label as a DICOM-SEG when chosen below)", self._choose_export_folder)
        self.label_format_combo = QComboBox()
        self.label_format_combo.addItems(LABEL_FORMAT_NAMES)
        self.label_format_combo.currentIndexChanged.connect(lambda _index: self._update_enabled())
        self.segment_edit = QLineEdit(DEFAULT_SEGMENT_LABEL)
        self.segment_edit.setToolTip("The structure the label outlines, as the DICOM-SEG names it")
        return group_box("Cases",
                         row_of(self.import_files_button, self.import_folder_button, self.modality_combo,
                                self.copy_check, self.cancel_button),
                         self.cases_table,
                         row_of(self.open_case_button, self.save_button, self.next_case_button, self.export_button),
                         row_of(QLabel("Export the label as"), self.label_format_combo, QLabel("of"),
                                self.segment_edit))

    def _history_group(self) -> QGroupBox:
        self.history_table = selection_table(HISTORY_COLUMNS)
        self.history_table.setMinimumHeight(rows_height(self.history_table, 2))
        self.history_table.setToolTip("Double-click a version to open it into the labels layer; "
                                      "'Changed' counts voxels that differ from the parent")
        self.history_table.cellDoubleClicked.connect(
            lambda row, _col: self.open_version(row_id(self.history_table, row)))
        self.open_version_button = button("Open version", "Load the selected label version into the labels layer, "
                                          "to look at it or correct from it (or double-click its row)",
                                          self.open_version)
        return group_box("Label history of the open case", self.history_table, self.open_version_button)

    # -- actions (buttons call these; tests and the demo may too) -----------------------------

    @_reports_errors
    def open_project(self, folder: str | Path | None = None) -> None:
        """Open the project in ``folder`` (default: the folder field)."""
        self._switch_project(self.session.open_project, folder)

    @_reports_errors
    def create_project(self, folder: str | Path | None = None) -> None:
        """Create a project in ``folder`` (default: the folder field) and open it."""
        self._switch_project(self.session.create_project, folder)

    @_reports_errors
    def open_case(self, case_id: str | None = None) -> None:
        """Show a case (default: the selected row): its image and latest label version."""
        case_id = case_id or selected_id(self.cases_table, "select a case in the table first")
        if not self._may_discard_edits():
            return
        opened = self.session.open_case(case_id)
        self._show_case(opened)
        select_row(self.cases_table, case_id)
        self._fill_history()
        self.set_status(f"Opened case {case_id}: {_describe_version(opened)}.")

    @_reports_errors
    def next_case(self) -> None:
        """Open the case to annotate next: rank 1 of the unlabelled cases (``rank_cases``)."""
        self.open_case(self.ranking.top_case())

    @_reports_errors
    def save_correction(self) -> None:
        """Save the Labels layer as a new ``corrected`` version of the open case."""
        layer = self._live_labels_layer()
        version = self.session.save_correction(np.asarray(layer.data))
        layer.metadata[LABEL_VERSION_KEY] = version.id
        self._fill_cases()
        self._fill_history()
        parent = f"version {version.parent_id}" if version.parent_id is not None else "an empty label"
        message = (f"Saved version {version.id} of case {version.case_id}: "
                   f"{version.voxels_changed} voxels changed against {parent}.")
        self.set_status(message)
        show_info(message)

    @_reports_errors
    def open_version(self, version_id: int | None = None) -> None:
        """Load a label version of the open case (default: the selected history row)."""
        if version_id is None:
            version_id = int(selected_id(self.history_table,
                                               "select a version in the history first"))
        if not self._may_discard_edits():
            return
        opened = self.session.open_version(int(version_id))
        layer = self._live_labels_layer()
        layer.data = np.array(opened.label, copy=True)
        layer.metadata[LABEL_VERSION_KEY] = opened.version_id
        layer.refresh()
        self._fill_history()
        self.set_status(f"Opened {_describe_version(opened)} of case {opened.case_id}.")

    @_reports_errors
    def set_split(self, case_id: str, split: str) -> None:
        """Move a case to another split; saved to the project at once (the Fine-tune panel follows)."""
        self.session.set_split(case_id, split)
        self.set_status(f"Case {case_id} is now in split {split!r}: {SPLIT_HINTS.get(split, '')}.")

    def import_volumes(self, paths) -> GeneratorJob | None:
        """Import volume files and folders into the open project, in a worker; returns the job."""
        if not self._may_start("an import"):
            return None
        modality, copy = self.modality_combo.currentText(), self.copy_check.isChecked()
        root = self.session.project.root
        self.progress_bar = progress(total=0, desc="Importing")
        self.set_status("Looking for volumes…")
        self.job = start_generator_job(
            lambda should_stop: import_steps(root, list(paths), modality=modality, copy=copy,
                                             should_stop=should_stop),
            on_report=self._on_import_step, on_result=self._on_imported, on_error=self._on_job_error,
            on_cancelled=self._on_import_cancelled, on_finished=self._on_job_finished)
        self._update_enabled()
        return self.job

    def export_case(self, folder: str | Path) -> GeneratorJob | None:
        """Write the open case's label, soft label and uncertainty into ``folder``, in a worker.

        The label as the format combo says: NIfTI, or a DICOM-SEG (offered for a case read from
        DICOM) naming the structure the segment field holds; soft label and uncertainty as NIfTI.
        """
        if not self._may_start("an export"):
            return None
        opened = self.session.opened
        if opened is None:
            self._report_error("no case is open: open a case first")
            return None
        if self.labels_layer is not None and self.session.unsaved_voxels(np.asarray(self.labels_layer.data)):
            show_warning(f"Case {opened.case_id}: unsaved corrections are not exported; save them first")
        root = self.session.project.root
        label_format = LABEL_FORMAT_NAMES[self.label_format_combo.currentText()]
        segment_label = self.segment_edit.text()
        self.progress_bar = progress(total=0, desc=f"Exporting {opened.case_id}")
        self.job = start_generator_job(
            lambda _should_stop: export_steps(root, opened.case_id, folder, label_format=label_format,
                                              segment_label=segment_label),
            on_report=lambda _message: None, on_result=self._on_exported, on_error=self._on_job_error,
            on_cancelled=lambda _message: None, on_finished=self._on_job_finished)
        self._update_enabled()
        return self.job

    # -- worker callbacks (GUI thread) ---------------------------------------------------------

    def _on_import_step(self, step) -> None:
        bar = self.progress_bar
        if bar is not None and step.total and bar.total != step.total:
            bar.total = step.total
        if bar is not None and step.done > bar.n:
            bar.update(step.done - bar.n)
        self.set_status(f"Importing: {step.done} of {step.total} cases" + (f" ({step.case_id})" if step.case_id else ""))

    def _on_imported(self, report) -> None:
        self._fill_cases()
        self.session.notify("cases")
        message = describe_import(report)
        self.set_status(message, error=bool(report.refused))
        (show_warning if report.refused else show_info)(message)

    def _on_import_cancelled(self, message: str) -> None:
        self._fill_cases()
        self.session.notify("cases")
        self.set_status(message[:1].upper() + message[1:] + "." if message != "cancelled" else
                        "Import cancelled; the cases imported before stay in the project.")

    def _on_exported(self, report) -> None:
        message = describe_export(report)
        self.set_status(message)
        show_info(message)

    def _on_job_error(self, error: BaseException) -> None:
        self._report_error(describe_error(error))

    def _on_job_finished(self) -> None:
        if self.progress_bar is not None:
            self.progress_bar.close()
            self.progress_bar = None
        self._update_enabled()

    def _may_start(self, what: str) -> bool:
        if self.job is not None and self.job.running:
            self._report_error(f"an import or export is running; wait for it before {what}")
            return False
        if not self.session.has_project:
            self._report_error("no project is open: create or open one first")
            return False
        return True

    def _on_session_change(self, change: str) -> None:
        """Another panel saved a label version (e.g. a prediction): show it in the tables."""
        if change == "labels" and self.session.has_project:
            self._fill_cases()
            self._fill_history()

    # -- helpers -----------------------------------------------------------------------------

    def _switch_project(self, open_or_create, folder) -> None:
        if folder is None:
            folder = self.folder_edit.text()
        if not self._may_discard_edits():
            return
        project = open_or_create(folder)
        self.folder_edit.setText(str(project.root))
        self._remove_case_layers()
        self._fill_cases()
        self._fill_history()
        count = self.cases_table.rowCount()
        self.set_status(f"Project {self.folder_edit.text()}: {count} case{'s' * (count != 1)}.")

    def _choose_import(self, files: bool) -> None:
        if files:
            paths, _filter = QFileDialog.getOpenFileNames(
                self, "Volumes to import", "", "Volumes (*.nii *.nii.gz *.nrrd *.nhdr *.mha *.mhd *.h5);;All files (*)")
        else:
            folder = QFileDialog.getExistingDirectory(self, "Folder of volumes or a DICOM series")
            paths = [folder] if folder else []
        if paths:
            self.import_volumes(paths)

    def _choose_export_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the case's label, soft label and uncertainty into")
        if folder:
            self.export_case(folder)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _show_case(self, opened: OpenedCase) -> None:
        """Replace the previous case's layers with this case's image and labels."""
        self._remove_case_layers()
        image, geometry = opened.image, opened.image.geometry
        self.image_layer = self.viewer.add_layer(Layer.create(*image_layer_data(
            image.array, geometry, opened.case_id, image.source, opened.modality, case=opened.case_id)))
        self.labels_layer = self.viewer.add_layer(Layer.create(*labels_layer_data(
            np.array(opened.label, copy=True), geometry, f"{opened.case_id} label",
            case=opened.case_id, label_version=opened.version_id)))
        self.viewer.layers.selection.active = self.labels_layer
        self.viewer.reset_view()
        self._show_labelled_slice(opened)

    def _show_labelled_slice(self, opened: OpenedCase) -> None:
        """Step to the plane through the label's centre, so the labels are in view."""
        occupied = np.argwhere(opened.label > 0)
        z = occupied[:, 0].mean() if len(occupied) else (opened.label.shape[0] - 1) / 2
        geometry = opened.image.geometry
        self.viewer.dims.set_point(0, geometry.origin[0] + round(z) * geometry.spacing[0])

    def _remove_case_layers(self) -> None:
        for layer in (self.labels_layer, self.image_layer):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.image_layer = self.labels_layer = None

    def _live_labels_layer(self):
        if self.session.opened is None:
            raise ProjectError("no case is open: open a case first")
        if self.labels_layer is None or self.labels_layer not in self.viewer.layers:
            raise ProjectError(f"the labels layer of case {self.session.opened.case_id} was closed; "
                               "open the case again")
        return self.labels_layer

    def _may_discard_edits(self) -> bool:
        """Ask before unsaved paint strokes are thrown away; True when it is fine to go on."""
        if self.labels_layer is None or self.labels_layer not in self.viewer.layers:
            return True
        changed = self.session.unsaved_voxels(np.asarray(self.labels_layer.data))
        if changed == 0:
            return True
        answer = QMessageBox.question(
            self, "Unsaved correction",
            f"{changed} voxels of case {self.session.opened.case_id} are not saved. Discard them?",
            QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Cancel)
        return answer == QMessageBox.Discard

    def _fill_cases(self) -> None:
        rows = self.session.cases() if self.session.has_project else []
        fill_rows(self.cases_table, [(c.id, c.split, c.latest_kind or "—", c.n_versions) for c in rows],
                  tips=[{0: _case_tip(c)} for c in rows])
        for row, case in enumerate(rows):
            self.cases_table.setCellWidget(row, SPLIT_COLUMN, self._split_combo(case.id, case.split))
        self.ranking.refresh()
        self._update_enabled()

    def _fill_history(self) -> None:
        versions = self.session.history()
        opened_id = self.session.opened.version_id if self.session.opened else None
        fill_rows(self.history_table, [(v.id, v.kind, "—" if v.parent_id is None else v.parent_id,
                                    v.voxels_changed, v.author or "—", _local_minute(v.created))
                                   for v in versions], bold_id=opened_id,
                  tips=[{SAVED_COLUMN: f"Saved {_local_time(v.created)}"} for v in versions])
        if versions:
            self.history_table.scrollToBottom()
        self._update_enabled()

    def _split_combo(self, case_id: str, split: str) -> QComboBox:
        """The Split cell: a choice among the project's splits, saved as soon as it changes."""
        combo = QComboBox()
        for index, name in enumerate(SPLITS):
            combo.addItem(name)
            combo.setItemData(index, SPLIT_HINTS.get(name, ""), Qt.ToolTipRole)
        combo.setCurrentText(split)
        combo.setToolTip(f"Split of case {case_id}: {SPLIT_HINTS.get(split, '')}")
        combo.currentTextChanged.connect(lambda chosen: self._split_chosen(case_id, chosen, combo))
        return combo

    def _split_chosen(self, case_id: str, split: str, combo: QComboBox) -> None:
        self.set_split(case_id, split)
        saved = self.session.project.case(case_id).split
        combo.setToolTip(f"Split of case {case_id}: {SPLIT_HINTS.get(saved, '')}")
        for row in range(self.cases_table.rowCount()):  # the item under the combo keeps the text
            if row_id(self.cases_table, row) == case_id:
                self.cases_table.item(row, SPLIT_COLUMN).setText(saved)
        if saved != split:  # refused: show what the project holds
            combo.blockSignals(True)
            combo.setCurrentText(saved)
            combo.blockSignals(False)

    def _update_enabled(self) -> None:
        case_open = self.session.opened is not None
        busy = self.job is not None and self.job.running
        for import_button in (self.import_files_button, self.import_folder_button):
            import_button.setEnabled(self.session.has_project and not busy)
        self.cancel_button.setEnabled(busy)
        self.export_button.setEnabled(case_open and not busy)
        self._offer_dicom_seg(case_open and self._opened_from_dicom(), busy)
        self.open_case_button.setEnabled(self.cases_table.rowCount() > 0)
        self.next_case_button.setEnabled(self.cases_table.rowCount() > 0)
        self.save_button.setEnabled(case_open)
        self.open_version_button.setEnabled(self.history_table.rowCount() > 0)

    def _offer_dicom_seg(self, from_dicom: bool, busy: bool) -> None:
        """DICOM-SEG is offered for a case read from DICOM only; NIfTI is always there."""
        if not from_dicom and self.label_format_combo.currentText() != "NIfTI":
            self.label_format_combo.setCurrentText("NIfTI")  # calls back here, once
        self.label_format_combo.setEnabled(from_dicom and not busy)
        self.label_format_combo.setToolTip(
            "Write the label as NIfTI, or as a DICOM-SEG that references the case's DICOM series "
            "(soft label and uncertainty stay NIfTI)" if from_dicom else
            "The open case was not read from DICOM: its label is exported as NIfTI")
        self.segment_edit.setEnabled(from_dicom and not busy and self.label_format_combo.currentText() == "DICOM-SEG")

    def _opened_from_dicom(self) -> bool:
        try:
            return is_from_dicom(self.session.project, self.session.opened.case_id)
        except SemisegError:
            return False


def _describe_version(opened: OpenedCase) -> str:
    if opened.version is None:
        return "no label yet (blank labels)"
    return f"label version {opened.version.id} ({opened.version.kind})"


def _case_tip(case) -> str:
    """'ab12: 88×140×183 voxels (z×y×x) of 0.625×0.625×0.625 mm, MR; double-click to open'."""
    shape = "×".join(map(str, case.shape))
    spacing = "×".join(f"{mm:g}" for mm in case.spacing)
    return f"{case.id}: {shape} voxels (z×y×x) of {spacing} mm, {case.modality}; double-click to open"


def _local_minute(iso: str) -> str:
    """'2025-11-23T14:02:11.123+00:00' → '2025-11-23 15:02' in Berlin: the clinician's clock, to the
    minute (seconds elided the date in the history's last column at 1400×900)."""
    return _local_time(iso)[:16]


def _local_time(iso: str) -> str:
    """A stored UTC time on the local clock, to the second, with its zone."""
    if not iso:
        return "—"
    try:
        moment = datetime.fromisoformat(iso).astimezone()
    except ValueError:  # not a time this project wrote: show it as stored
        return iso
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")
