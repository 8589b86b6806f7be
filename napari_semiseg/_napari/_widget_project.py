"""The "Project" dock widget: open a project, pick a case, correct its labels, save, go back.

The widget only turns ``ProjectSession`` results into layers and tables, and ``SemisegError``s
into napari notifications; all decisions live in the session, which is tested without Qt.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Layer
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QFont
from qtpy.QtWidgets import (QAbstractItemView, QFileDialog, QGroupBox, QHBoxLayout, QHeaderView,
                            QLabel, QLayout, QLineEdit, QMessageBox, QPushButton, QTableWidget,
                            QTableWidgetItem, QVBoxLayout, QWidget)

from ..errors import ProjectError, SemisegError
from ._case_ranking import RANK_COLUMNS, CaseRanking, show_ranks
from ._layers import LABEL_VERSION_KEY, image_layer_data, labels_layer_data
from ._session import OpenedCase, ProjectSession
from ._shared import session_for, share_session
from ._tables import bulk_update

if TYPE_CHECKING:
    import napari

CASE_COLUMNS = ("Case", "Shape z×y×x", "Split", "Latest", "Versions") + RANK_COLUMNS
HISTORY_COLUMNS = ("Version", "Kind", "Parent", "Changed", "Author", "Saved")


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


class ProjectWidget(QWidget):
    """Dock widget: project folder, case table, save correction, label history."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", session: ProjectSession | None = None):
        super().__init__()
        self.viewer = napari_viewer
        # The Predict and Fine-tune panels of this viewer work on the same project.
        self.session = share_session(napari_viewer, session) if session else session_for(napari_viewer)
        self.image_layer = None
        self.labels_layer = None
        # Rank/score columns and "Next case": unlabelled cases by uncertainty, ranked off the GUI thread.
        self.ranking = CaseRanking(self.session, lambda ranks: show_ranks(
            self.cases_table, ranks, first_column=len(CASE_COLUMNS) - len(RANK_COLUMNS)))
        self._build()
        self.session.listen(self._on_session_change)

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.folder_edit = QLineEdit(placeholderText="project folder")
        self.browse_button = QPushButton("Browse…")
        self.open_button = QPushButton("Open")
        self.create_button = QPushButton("Create")
        self.cases_table = _table(CASE_COLUMNS)
        self.open_case_button = QPushButton("Open case")
        self.save_button = QPushButton("Save correction")
        self.history_table = _table(HISTORY_COLUMNS)
        self.open_version_button = QPushButton("Open version")
        self.status_label = QLabel("Create or open a project.", wordWrap=True)
        self.setMinimumWidth(520)
        # Stacked under other panels the tables would shrink to one row; keep a few visible.
        self.cases_table.setMinimumHeight(_rows_height(self.cases_table, 5))
        self.history_table.setMinimumHeight(_rows_height(self.history_table, 2))
        self.cases_table.setToolTip("Double-click a case to open it")
        self.history_table.setToolTip("Double-click a version to open it into the labels layer; "
                                      "'Changed' counts voxels that differ from the parent")

        folder_row = QHBoxLayout()
        for widget in (self.folder_edit, self.browse_button, self.open_button, self.create_button):
            folder_row.addWidget(widget)
        case_buttons = QHBoxLayout()
        case_buttons.addWidget(self.open_case_button)
        case_buttons.addWidget(self.save_button)
        self.next_case_button = QPushButton("Next case")
        self.next_case_button.setToolTip("Open the unlabelled case the model is least sure about "
                                         "(rank 1: mean entropy plus teacher disagreement)")
        case_buttons.addWidget(self.next_case_button)
        self.next_case_button.clicked.connect(lambda _checked=False: self.next_case())

        layout = QVBoxLayout(self)
        layout.addWidget(_group("Project", folder_row))
        layout.addWidget(_group("Cases", self.cases_table, case_buttons), stretch=3)
        layout.addWidget(_group("Label history of the open case", self.history_table,
                                self.open_version_button), stretch=2)
        layout.addWidget(self.status_label)

        self.browse_button.clicked.connect(self._choose_folder)
        self.open_button.clicked.connect(lambda _checked=False: self.open_project())
        self.create_button.clicked.connect(lambda _checked=False: self.create_project())
        self.folder_edit.returnPressed.connect(lambda: self.open_project())
        self.open_case_button.clicked.connect(lambda _checked=False: self.open_case())
        self.cases_table.cellDoubleClicked.connect(
            lambda row, _col: self.open_case(self._row_id(self.cases_table, row)))
        self.save_button.clicked.connect(lambda _checked=False: self.save_correction())
        self.open_version_button.clicked.connect(lambda _checked=False: self.open_version())
        self.history_table.cellDoubleClicked.connect(
            lambda row, _col: self.open_version(self._row_id(self.history_table, row)))
        self._update_enabled()

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
        case_id = case_id or self._selected_id(self.cases_table, "select a case in the table first")
        if not self._may_discard_edits():
            return
        opened = self.session.open_case(case_id)
        self._show_case(opened)
        self._select_row(self.cases_table, case_id)
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
            version_id = int(self._selected_id(self.history_table,
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

    def set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #e06060;" if error else "")

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
        _fill(self.cases_table, [(c.id, "×".join(map(str, c.shape)), c.split, c.latest_kind or "—",
                                  c.n_versions) for c in rows])
        self.ranking.refresh()
        self._update_enabled()

    def _fill_history(self) -> None:
        versions = self.session.history()
        opened_id = self.session.opened.version_id if self.session.opened else None
        _fill(self.history_table, [(v.id, v.kind, "—" if v.parent_id is None else v.parent_id,
                                    v.voxels_changed, v.author or "—", _short_time(v.created))
                                   for v in versions], bold_id=opened_id)
        if versions:
            self.history_table.scrollToBottom()
        self._update_enabled()

    def _update_enabled(self) -> None:
        case_open = self.session.opened is not None
        self.open_case_button.setEnabled(self.cases_table.rowCount() > 0)
        self.next_case_button.setEnabled(self.cases_table.rowCount() > 0)
        self.save_button.setEnabled(case_open)
        self.open_version_button.setEnabled(self.history_table.rowCount() > 0)

    @staticmethod
    def _select_row(table: QTableWidget, row_id) -> None:
        for row in range(table.rowCount()):
            if table.item(row, 0).data(Qt.UserRole) == row_id:
                table.selectRow(row)
                return

    @staticmethod
    def _row_id(table: QTableWidget, row: int) -> str:
        return table.item(row, 0).data(Qt.UserRole)

    def _selected_id(self, table: QTableWidget, hint: str) -> str:
        rows = table.selectionModel().selectedRows()
        if not rows:
            raise ProjectError(hint)
        return self._row_id(table, rows[0].row())


def _table(columns) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectRows)
    table.setSelectionMode(QAbstractItemView.SingleSelection)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _rows_height(table: QTableWidget, rows: int) -> int:
    """Pixels a table needs to show its header and ``rows`` rows (and a scroll bar)."""
    header = table.horizontalHeader().sizeHint().height()
    return header + rows * table.verticalHeader().defaultSectionSize() + 2 * table.frameWidth() + 16


def _fill(table: QTableWidget, rows, bold_id=None) -> None:
    """Replace a table's rows; column 0's value is kept as the row's id (Qt.UserRole)."""
    with bulk_update(table):
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                item = QTableWidgetItem(str(value))
                if c == 0:
                    item.setData(Qt.UserRole, value)
                if bold_id is not None and row[0] == bold_id:
                    font = QFont()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(r, c, item)


def _group(title: str, *contents) -> QGroupBox:
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    for content in contents:
        if isinstance(content, QLayout):
            layout.addLayout(content)
        else:
            layout.addWidget(content)
    return box


def _describe_version(opened: OpenedCase) -> str:
    if opened.version is None:
        return "no label yet (blank labels)"
    return f"label version {opened.version.id} ({opened.version.kind})"


def _short_time(iso: str) -> str:
    """'2025-11-23T14:02:11.123+00:00' → '2025-11-23 14:02:11'."""
    return iso.replace("T", " ")[:19] if iso else "—"
