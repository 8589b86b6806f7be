"""The Qt parts several panels build alike: a button that does one thing, a row, a titled group, a panel
that scrolls, a model chooser."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QComboBox, QFrame, QGroupBox, QHBoxLayout, QLayout, QPushButton, QScrollArea,
                            QVBoxLayout, QWidget)

from ._model_rows import describe_model


def button(text: str, tip: str, on_click: Callable[[], object]) -> QPushButton:
    """A push button with its tooltip, calling ``on_click()`` (no arguments) when clicked."""
    widget = QPushButton(text)
    widget.setToolTip(tip)
    widget.clicked.connect(lambda _checked=False: on_click())
    return widget


def row_of(*widgets: QWidget) -> QHBoxLayout:
    """``widgets`` side by side."""
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    return row


def group_box(title: str, *contents: QWidget | QLayout) -> QGroupBox:
    """A titled box holding ``contents`` (widgets or layouts), one above the other."""
    box = QGroupBox(title)
    layout = QVBoxLayout(box)
    for content in contents:
        if isinstance(content, QLayout):
            layout.addLayout(content)
        else:
            layout.addWidget(content)
    return box


def scroll_panel(panel: QWidget, content: QWidget, min_height: int) -> QScrollArea:
    """Put ``content`` into ``panel`` inside a frameless, vertical-only scroll area that keeps at
    least ``min_height`` pixels in view; returns the scroll area.

    For the panels that dock under another in a short window (Fine-tune, Soft-label correction):
    Qt would otherwise squeeze them below their content and cut controls or plot axes off.
    """
    scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    scroll.setMinimumHeight(min_height)
    scroll.setWidget(content)
    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return scroll


def fill_model_choices(combo: QComboBox, models, *, extra: tuple[tuple[str, object], ...] = (),
                       fallback=None) -> None:
    """Offer "Active model" (data None), then each of ``models`` newest first (data: its id), then
    ``extra`` (text, data) entries. The choice made before stays when it is still offered; else the
    entry whose data is ``fallback``. No signal fires while the entries change."""
    chosen = combo.currentData()
    combo.blockSignals(True)
    try:
        combo.clear()
        active = next((m for m in models if m.active), None)
        combo.addItem("Active model" + (f" ({describe_model(active)})" if active else " (none yet)"), None)
        for model in reversed(models):
            combo.addItem(describe_model(model), model.id)
        for text, data in extra:
            combo.addItem(text, data)
        index = combo.findData(chosen)
        combo.setCurrentIndex(index if index >= 0 else max(combo.findData(fallback), 0))
    finally:
        combo.blockSignals(False)


__all__ = ["button", "fill_model_choices", "group_box", "row_of", "scroll_panel"]
