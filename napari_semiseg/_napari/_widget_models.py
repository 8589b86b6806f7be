"""The models section: every model version of the project, and "Make active" (rollback).

Used inside the Fine-tune panel; it reads and changes the project through the viewer's
shared ``ProjectSession`` and tells the other panels (``notify("models")``) when the active
model changes, so that Predict picks it up.
"""

from __future__ import annotations

from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QPushButton, QVBoxLayout

from ..errors import SemisegError
from ._model_rows import HEADER_TIPS, MODEL_COLUMNS, STRETCHED_COLUMN, model_rows
from ._tables import fill_rows, row_id, row_ids, select_row, selected_id, selection_table


class ModelsSection(QGroupBox):
    """Table of model versions (id, card, method, parent, validation Dice, status, active)."""

    def __init__(self, session, parent=None):
        super().__init__("Model versions", parent)
        self.session = session
        self.table = selection_table(MODEL_COLUMNS, stretch=STRETCHED_COLUMN)
        for column, name in enumerate(MODEL_COLUMNS):
            self.table.horizontalHeaderItem(column).setToolTip(HEADER_TIPS[name])
        self.table.setMinimumHeight(120)  # a few versions in view
        self.table.setToolTip("Every fine-tune is a new version; make any of them active again "
                              "to roll back (hover over a column's header for what it shows)")
        self.activate_button = QPushButton("Make active")
        self.activate_button.setToolTip("Make the selected version the model that Predict and Pseudo-label use; "
                                        "any earlier version can be made active again")
        self.activate_button.clicked.connect(lambda _checked=False: self.activate())
        self.table.cellDoubleClicked.connect(lambda row, _col: self.activate(row_id(self.table, row)))
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
        active = next((row.id for row in rows if row.active), None)
        fill_rows(self.table, [row.cells() for row in rows], bold_id=active)
        if rows:
            self.table.scrollToBottom()
        self.activate_button.setEnabled(bool(rows))

    def row_ids(self) -> list[int]:
        return row_ids(self.table)

    def active_id(self) -> int | None:
        """The active model's id as the table shows it."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, len(MODEL_COLUMNS) - 1).text():
                return row_id(self.table, r)
        return None

    def select(self, model_id: int) -> None:
        select_row(self.table, model_id)

    def activate(self, model_id: int | None = None) -> None:
        """Make a model version (default: the selected row) the project's active one."""
        try:
            if model_id is None:
                model_id = selected_id(self.table, "select a model version in the table first")
            model = self.session.project.activate_model(int(model_id))
        except SemisegError as error:
            show_error(str(error))
            return
        self.session.notify("models")  # refreshes this table too
        show_info(f"Model {model.id} ({model.method}) is now the active model.")


__all__ = ["ModelsSection"]
