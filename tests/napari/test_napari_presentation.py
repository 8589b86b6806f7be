"""How the panels present themselves in a real napari window (Xvfb via pytest-xvfb), at the size
of a laptop screen (1400×900): every control within reach, histograms with their axes, the slice
slider named after its axis, and tooltips a clinician can read.
"""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import (QAbstractButton, QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QListWidget,
                            QTableWidget, QWidget)

from napari_panel_support import build_project, dock

pytestmark = pytest.mark.gui

#: A laptop's window, the issue's yardstick.
WINDOW = (1400, 900)
#: What a user works with in a panel.
CONTROLS = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QListWidget, QTableWidget)


@pytest.fixture
def project_folder(tmp_path):
    return build_project(tmp_path / "project")


@pytest.fixture
def laptop_viewer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(*WINDOW)
    qtbot.wait(50)
    return viewer


def _controls(panel: QWidget) -> list[QWidget]:
    """The panel's visible controls (the spin boxes' own line edits are part of the spin box)."""
    return [widget for widget in panel.findChildren(QWidget)
            if isinstance(widget, CONTROLS) and widget.isVisible()
            and not isinstance(widget.parentWidget(), QAbstractSpinBox)
            and not isinstance(widget.parentWidget(), QComboBox)]


def _settle(qtbot) -> None:
    QApplication.processEvents()
    qtbot.wait(50)


@pytest.mark.parametrize("tabbed", [False, True], ids=["under-project", "tab-beside-project"])
def test_every_fine_tune_control_can_be_scrolled_into_full_view_at_1400x900(
        laptop_viewer, project_folder, qtbot, tabbed):
    viewer = laptop_viewer
    project_panel = dock(viewer, "Project")
    panel = dock(viewer, "Fine-tune", tabify=tabbed)  # the Plugins menu stacks it under Project
    project_panel.open_project(project_folder)
    project_panel.open_case("la_phantom_00")
    panel.method_combo.setCurrentText("crossmatch")  # the method with the most hyperparameters
    _settle(qtbot)
    window = viewer.window._qt_window
    assert (window.width(), window.height()) == WINDOW, "the docked panels fit the window"

    viewport = panel.scroll.viewport()
    controls = _controls(panel)
    assert len(controls) > 30
    hidden = []
    for control in controls:
        panel.scroll.ensureWidgetVisible(control)
        QApplication.processEvents()
        top_left = control.mapTo(viewport, control.rect().topLeft())
        bottom_right = control.mapTo(viewport, control.rect().bottomRight())
        if not (viewport.rect().contains(top_left) and viewport.rect().contains(bottom_right)):
            hidden.append(f"{type(control).__name__} {control.toolTip()[:40]!r} at {top_left}..{bottom_right}")
    assert not hidden, f"scrolled to, still cut off by the {viewport.size()} view: {hidden}"
    dock_widget = panel.parentWidget()
    while dock_widget.parentWidget() is not window:
        dock_widget = dock_widget.parentWidget()
    assert window.rect().contains(dock_widget.geometry()), "the dock lies inside the window"
