"""The models section: every model version of the project, and "Make active" (rollback).

Used inside the Fine-tune panel; it reads and changes the project through the viewer's
shared ``ProjectSession`` and tells the other panels (``notify("models")``) when the active
model changes, so that Predict picks it up.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QAbstractItemView, QGroupBox, QHBoxLayout, QHeaderView, QPushButton, QTableWidget,
                            QTableWidgetItem, QVBoxLayout)

from ..errors import ProjectError, SemisegError
from ._model_rows import MODEL_COLUMNS, model_rows


class ModelsSection(QGroupBox):
    """Table of model versions (id, card, method, parent, validation Dice, status, active)."""

    def __init__(self, session, parent=None):
        super().__init__("Model versions", parent)
        self.session = session
        self.table = QTableWidget(0, len(MODEL_COLUMNS))
        self.table.setHorizontalHeaderLabels(MODEL_COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setMinimumHeight(120)  # a few versions in view
        self.table.setToolTip("Every fine-tune is a new version; make any of them active again "
                              "to roll back. Val. Dice: on the validation cases at the end of its run.")
        self.activate_button = QPushButton("Make active")
        self.activate_button.setToolTip("Make the selected version the model that Predict and Pseudo-label use; "
                                        "any earlier version can be made active again")
        self.activate_button.clicked.connect(lambda _checked=False: self.activate())
        self.table.cellDoubleClicked.connect(lambda row, _col: self.activate(self._row_id(row)))
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.activate_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Reload the rows from the project (none when no project is open)."""
        rows = model_rows(self.session.project) if self.session.has_project else []
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, value in enumerate(row.cells()):
                item = QTableWidgetItem(str(value))
                if c == 0:
                    item.setData(Qt.UserRole, row.id)
                if row.active:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(r, c, item)
        if rows:
            self.table.scrollToBottom()
        self.activate_button.setEnabled(bool(rows))

    def row_ids(self) -> list[int]:
        return [self._row_id(r) for r in range(self.table.rowCount())]

    def active_id(self) -> int | None:
        """The active model's id as the table shows it."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, len(MODEL_COLUMNS) - 1).text():
                return self._row_id(r)
        return None

    def select(self, model_id: int) -> None:
        for r in range(self.table.rowCount()):
            if self._row_id(r) == model_id:
                self.table.selectRow(r)
                return

    def activate(self, model_id: int | None = None) -> None:
        """Make a model version (default: the selected row) the project's active one."""
        try:
            if model_id is None:
                rows = self.table.selectionModel().selectedRows()
                if not rows:
                    raise ProjectError("select a model version in the table first")
                model_id = self._row_id(rows[0].row())
            model = self.session.project.activate_model(int(model_id))
        except SemisegError as error:
            show_error(str(error))
            return
        self.session.notify("models")  # refreshes this table too
        show_info(f"Model {model.id} ({model.method}) is now the active model.")

    def _row_id(self, row: int) -> int:
        return int(self.table.item(row, 0).data(Qt.UserRole))


__all__ = ["ModelsSection"]
