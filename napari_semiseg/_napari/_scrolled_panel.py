"""A panel whose content scrolls vertically, for the panels that dock under another in a short
window (Fine-tune, Soft-label correction): Qt would otherwise squeeze them below their content
and cut controls or plot axes off."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget


def scroll_panel(panel: QWidget, content: QWidget, min_height: int) -> QScrollArea:
    """Put ``content`` into ``panel`` inside a frameless, vertical-only scroll area that keeps at
    least ``min_height`` pixels in view; returns the scroll area."""
    scroll = QScrollArea(widgetResizable=True, frameShape=QFrame.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    scroll.setMinimumHeight(min_height)
    scroll.setWidget(content)
    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return scroll
