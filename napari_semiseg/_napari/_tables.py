"""The panels' row tables: built alike, filled without a quadratic cost, rows found by id.

Every table of the panels selects whole rows, one at a time, and is never edited in place;
column 0's value is kept as the row's id (``Qt.UserRole``), so code finds a row by its id,
wherever the row stands.

A table whose columns resize to their contents (``QHeaderView.ResizeToContents``) measures every
row again at each ``setItem``: filling the 80-case LA table (560 cells) took 0.7 s of the GUI thread,
at every stored case of a pseudo-labelling run. ``bulk_update`` switches the measuring off while
the cells are set and measures once at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

from ..errors import ProjectError


@contextlib.contextmanager
def bulk_update(table: QTableWidget) -> Iterator[QTableWidget]:
    """Set many cells of ``table`` inside the block; columns are sized once, after it."""
    header = table.horizontalHeader()
    modes = [header.sectionResizeMode(column) for column in range(table.columnCount())]
    header.setSectionResizeMode(QHeaderView.Interactive)
    table.setUpdatesEnabled(False)
    try:
        yield table
    finally:
        for column, mode in enumerate(modes):
            header.setSectionResizeMode(column, mode)
        table.setUpdatesEnabled(True)


def selection_table(columns, stretch: int | None = None) -> QTableWidget:
    """A read-only table of ``columns`` whose rows are selected whole, one at a time, its columns
    sized to their contents and the last one stretched.

    With ``stretch``, that column takes the width the others leave instead, and its text is elided
    in the middle when it does not fit (long case ids differ at both ends): the table fits its
    panel without scrolling sideways.
    """
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setEditTriggers(QAbstractItemView.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectRows)
    table.setSelectionMode(QAbstractItemView.SingleSelection)
    table.verticalHeader().setVisible(False)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeToContents)
    if stretch is None:
        header.setStretchLastSection(True)
    else:
        header.setSectionResizeMode(stretch, QHeaderView.Stretch)
        table.setTextElideMode(Qt.ElideMiddle)
    return table


def rows_height(table: QTableWidget, rows: int) -> int:
    """Pixels a table needs to show its header and ``rows`` rows (and a scroll bar)."""
    header = table.horizontalHeader().sizeHint().height()
    return header + rows * table.verticalHeader().defaultSectionSize() + 2 * table.frameWidth() + 16


def fill_rows(table: QTableWidget, rows, bold_id=None, tips=None) -> None:
    """Replace a table's rows (sequences of cells); column 0's value becomes the row's id, and
    the row whose id is ``bold_id`` is set in bold. ``tips``, one ``{column: tooltip}`` per row,
    are cell tooltips."""
    with bulk_update(table):
        table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            row_tips = tips[r] if tips else {}
            for c, value in enumerate(row):
                item = QTableWidgetItem(str(value))
                if c in row_tips:
                    item.setToolTip(row_tips[c])
                if c == 0:
                    item.setData(Qt.UserRole, value)
                if bold_id is not None and row[0] == bold_id:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(r, c, item)


def row_id(table: QTableWidget, row: int):
    """The id of ``row`` (its column 0's value)."""
    return table.item(row, 0).data(Qt.UserRole)


def row_ids(table: QTableWidget) -> list:
    """Every row's id, top to bottom."""
    return [row_id(table, row) for row in range(table.rowCount())]


def select_row(table: QTableWidget, wanted_id) -> None:
    """Select the row whose id is ``wanted_id`` (nothing when no row has it)."""
    for row in range(table.rowCount()):
        if row_id(table, row) == wanted_id:
            table.selectRow(row)
            return


def selected_id(table: QTableWidget, hint: str):
    """The selected row's id.

    Raises:
        ProjectError: no row is selected; ``hint`` tells the user what to select.
    """
    rows = table.selectionModel().selectedRows()
    if not rows:
        raise ProjectError(hint)
    return row_id(table, rows[0].row())


__all__ = ["bulk_update", "fill_rows", "row_id", "row_ids", "rows_height", "select_row", "selected_id",
           "selection_table"]
