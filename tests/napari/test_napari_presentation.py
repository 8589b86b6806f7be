"""How the panels present themselves in a real napari window (Xvfb via pytest-xvfb), at the size
of a laptop screen (1400×900): every control within reach, histograms with their axes, the slice
slider named after its axis, and tooltips a clinician can read.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import numpy as np
import pytest
from qtpy.QtGui import QFontMetrics
from qtpy.QtWidgets import (QAbstractButton, QAbstractSpinBox, QApplication, QComboBox, QGroupBox, QLabel, QLineEdit,
                            QListWidget, QTableWidget, QWidget)

from napari_semiseg._napari._plain_words import RESEARCHER_PROPERTY
from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.pseudo import correct_case_soft_label
from napari_semiseg.project import Project
from napari_panel_support import build_project, dock, save_network_as_model, show_tab
from soft_label_panel_support import phantom_truth, store_teacher

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


def _user_controls(panel: QWidget) -> list[QWidget]:
    """The controls a user operates (not the parts of spin boxes and combos, not a table's corner button)."""
    return [widget for widget in panel.findChildren(QWidget) if isinstance(widget, CONTROLS)
            and not isinstance(widget.parentWidget(), (QAbstractSpinBox, QComboBox, QTableWidget))]


def _fully_in_view(widget: QWidget, viewport: QWidget) -> bool:
    top_left = widget.mapTo(viewport, widget.rect().topLeft())
    bottom_right = widget.mapTo(viewport, widget.rect().bottomRight())
    return viewport.rect().contains(top_left) and viewport.rect().contains(bottom_right)


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
    controls = [control for control in _user_controls(panel) if control.isVisible()]
    assert len(controls) > 30
    hidden = []
    for control in controls:
        panel.scroll.ensureWidgetVisible(control)
        QApplication.processEvents()
        if not _fully_in_view(control, viewport):
            hidden.append(f"{type(control).__name__} {control.toolTip()[:40]!r} at {control.geometry()}")
    assert not hidden, f"scrolled to, still cut off by the {viewport.size()} view: {hidden}"
    dock_widget = panel.parentWidget()
    while dock_widget.parentWidget() is not window:
        dock_widget = dock_widget.parentWidget()
    assert window.rect().contains(dock_widget.geometry()), "the dock lies inside the window"


def _corrected_soft_label_case(project_folder) -> str:
    """A phantom case pseudo-labelled, corrected and soft-label corrected: the Soft-label
    correction panel shows all it can. Returns the case id."""
    case = "la_phantom_02"
    with Project.open(project_folder) as project:
        store_teacher(project, case)
        project.save_label(case, phantom_truth(case).astype(np.uint8), "corrected")
        correct_case_soft_label(project, case)
    return case


def test_the_soft_label_histograms_show_both_axes_whole_at_1400x900(laptop_viewer, project_folder, qtbot):
    case = _corrected_soft_label_case(project_folder)
    viewer = laptop_viewer
    project_panel = dock(viewer, "Project")
    panel = dock(viewer, "Soft-label correction")  # stacked under Project, as the Plugins menu docks it
    project_panel.open_project(project_folder)
    project_panel.open_case(case)
    qtbot.waitUntil(lambda: panel.plot.histograms is not None, timeout=10_000)
    panel.scroll.ensureWidgetVisible(panel.plot, 0, 0)
    _settle(qtbot)
    window = viewer.window._qt_window
    assert (window.width(), window.height()) == WINDOW, "the docked panels fit the window"

    plot = panel.plot
    assert plot.canvas.height() >= plot.canvas.minimumHeight(), "the layout gives the figure its height"
    assert _fully_in_view(plot.canvas, panel.scroll.viewport()), "scrolled to, the whole figure is in view"
    figure = plot.figure
    assert (round(figure.bbox.width), round(figure.bbox.height)) == (plot.canvas.width(), plot.canvas.height())
    plot.canvas.draw()
    renderer = plot.canvas.get_renderer()
    for stage, ax in plot.axes.items():
        assert ax.get_xlabel() == "foreground probability", stage
        assert ax.get_xlim() == (0.0, 1.0)
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "0.5", "1"]
        assert ax.get_yscale() == "log"
        # Every piece of the axes (tick numbers, axis names, title) lies inside the drawn figure.
        box = ax.get_tightbbox(renderer)
        assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1, stage
        assert figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1, stage
    left = plot.axes["before"]
    assert left.get_ylabel() == "voxel count"
    numbers = [t.get_text() for t in left.get_yticklabels() if t.get_text()
               and left.get_ylim()[0] <= t.get_position()[1] <= left.get_ylim()[1]]
    assert len(numbers) >= 2 and "1" in numbers, numbers
    assert plot.legend_texts() == ["gold background", "gold foreground"]


#: A case id as long as the LA benchmark's.
LONG_ID = "1GU15S0GJ6PFNARO469W"


@pytest.fixture
def berlin_clock(monkeypatch):
    """The machine's clock in Berlin (UTC+1 in winter), for the length of one test."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _elided_cells(table: QTableWidget, row: int) -> list:
    """(header, text) of the cells of ``row`` too narrow for their text (drawn elided)."""
    return [(table.horizontalHeaderItem(c).text(), table.item(row, c).text()) for c in range(table.columnCount())
            if QFontMetrics(table.item(row, c).font()).horizontalAdvance(table.item(row, c).text()) + 8
            > table.horizontalHeader().sectionSize(c)]


def test_the_panels_tables_fit_their_panels_at_1400x900(laptop_viewer, project_folder, qtbot, tmp_path,
                                                         berlin_clock):
    with Project.open(project_folder) as project:
        phantom = project.case("la_phantom_00")
        project.add_case(LONG_ID, phantom.image_path)
        project.save_label(LONG_ID, project.load_label(project.label_versions("la_phantom_00")[-1].id), "gold")
        saved_utc = project.label_versions(LONG_ID)[-1].created
        model_file = save_network_as_model(tmp_path / "model.pt", load_card("cpu-small"))
        project.register_model(load_card("cpu-small").to_dict(), model_file, method="dual-branch-kd", config={},
                               metrics={"status": "finished", "validation_dice": 0.8123, "iterations": 6000})
    viewer = laptop_viewer
    panels = [dock(viewer, name, tabify=name != "Project")  # docked as the README's pictures dock them
              for name in ("Project", "Fine-tune", "Predict", "Soft-label correction")]
    project_panel, finetune = panels[0], panels[1]
    project_panel.open_project(project_folder)
    project_panel.open_case(LONG_ID)
    show_tab(project_panel)
    _settle(qtbot)

    cases = project_panel.cases_table
    assert cases.horizontalScrollBar().maximum() == 0, "every column of the case table is in view"
    header = cases.horizontalHeader()
    assert sum(header.sectionSize(c) for c in range(cases.columnCount())) <= cases.viewport().width()
    row = [cases.item(r, 0).text() for r in range(cases.rowCount())].index(LONG_ID)
    assert cases.item(row, 0).toolTip().startswith(f"{LONG_ID}: 24×48×48 voxels (z×y×x)")

    history = project_panel.history_table
    assert history.horizontalScrollBar().maximum() == 0
    shown = history.item(0, 5).text()
    saved = datetime.fromisoformat(saved_utc)
    assert shown == (saved + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M"), "saved on the local clock"
    assert not _elided_cells(history, 0)

    show_tab(finetune)
    finetune.scroll.ensureWidgetVisible(finetune.models.table)
    _settle(qtbot)
    models = finetune.models.table
    assert models.horizontalScrollBar().maximum() == 0, "the Active column is in view"
    assert [models.item(0, c).text() for c in range(models.columnCount())] == [
        "1", "cpu-small", "dual-branch-kd", "—", "0.812", "6000", "finished", "●"]
    assert not _elided_cells(models, 0)


def test_the_slice_slider_is_named_after_its_axis(laptop_viewer, project_folder, qtbot):
    viewer = laptop_viewer
    project_panel = dock(viewer, "Project")
    project_panel.open_project(project_folder)
    project_panel.open_case("la_phantom_00")
    _settle(qtbot)
    assert tuple(viewer.dims.axis_labels) == ("z", "y", "x")
    slider = viewer.window._qt_viewer.dims.slider_widgets[0]
    assert slider.isVisible() and slider.axis_label.text() == "z", "not napari's '-3'"


#: Words a clinician should not meet unexplained: the issue named "Card cpu-small", "MC-dropout samples"
#: and "false-pixel assistant fixed 1446". A term may stand in parentheses after plain words,
#: where a researcher needs the technical name.
JARGON = ("(?<!graphics )card", "mc-dropout", "dropout", "assistants?", "entropy", "stride", "hyperparameters?",
          "checkpoint", "cuda", "adamw", "poly", "lr", "ema", "logits?")


def _words_outside_parentheses(text: str) -> str:
    """``text`` without its HTML tags and its parenthesised parts (nested ones too)."""
    text = re.sub(r"<[^>]+>", " ", text)
    depth, kept = 0, []
    for character in text:
        depth += character == "("
        if depth == 0:
            kept.append(character)
        depth -= character == ")" and depth > 0
    return "".join(kept)


def _for_researchers(widget: QWidget, panel: QWidget) -> bool:
    """Whether ``widget`` lies in a part of ``panel`` marked as the methods' own terms."""
    while widget is not None and widget is not panel:
        if widget.property(RESEARCHER_PROPERTY):
            return True
        widget = widget.parentWidget()
    return False


def _texts(panel: QWidget) -> list[str]:
    """What the panel says to a clinician: labels, button and box titles, table headers, tooltips."""
    texts = []
    for widget in [panel, *panel.findChildren(QWidget)]:
        if _for_researchers(widget, panel):
            continue
        texts.append(widget.toolTip())
        if isinstance(widget, (QLabel, QAbstractButton)):
            texts.append(widget.text())
        elif isinstance(widget, QGroupBox):
            texts.append(widget.title())
        elif isinstance(widget, QTableWidget):
            texts += [widget.horizontalHeaderItem(c).text() for c in range(widget.columnCount())]
    return [text for text in texts if text]


def _unexplained_jargon(texts: list[str]) -> list[tuple[str, str]]:
    found = []
    for text in texts:
        plain = _words_outside_parentheses(text).lower()
        found += [(term, text) for term in JARGON if re.search(rf"(?<![\w-]){term}(?![\w-])", plain)]
    return found


def _named(control: QWidget) -> str:
    for attribute in ("text", "currentText", "placeholderText"):
        if hasattr(control, attribute) and getattr(control, attribute)():
            return f"{type(control).__name__} {getattr(control, attribute)()!r}"
    return type(control).__name__


def test_every_control_of_every_panel_says_what_it_does_in_plain_words(laptop_viewer, project_folder, qtbot):
    from napari_semiseg.engine.methods import list_methods

    case = _corrected_soft_label_case(project_folder)
    viewer = laptop_viewer
    project_panel = dock(viewer, "Project")
    panels = [project_panel] + [dock(viewer, name, tabify=True) for name in
                                ("Predict", "Fine-tune", "Pseudo-label", "Soft-label correction")]
    project_panel.open_project(project_folder)
    project_panel.open_case(case)
    qtbot.waitUntil(lambda: panels[-1].plot.histograms is not None, timeout=10_000)
    assert panels[-1].steps_label.text()

    def silent(panel) -> list[str]:
        return [f"{type(panel).__name__}: {_named(control)}" for control in _user_controls(panel)
                if control.isEnabled() and not control.toolTip().strip()]

    def jargon(panel) -> list[str]:
        return [f"{type(panel).__name__}: {term!r} in {text!r}" for term, text in _unexplained_jargon(_texts(panel))]

    problems = {"controls without a tooltip": [], "jargon a clinician meets unexplained": []}
    for panel in panels:
        problems["controls without a tooltip"] += silent(panel)
        problems["jargon a clinician meets unexplained"] += jargon(panel)
    finetune = panels[2]
    for method in list_methods():  # each method brings its own settings
        finetune.method_combo.setCurrentText(method)
        problems["controls without a tooltip"] += silent(finetune)
        problems["jargon a clinician meets unexplained"] += jargon(finetune)
    report = {kind: sorted(set(found)) for kind, found in problems.items() if found}
    assert not report, "\n".join(f"{kind}:\n  " + "\n  ".join(found) for kind, found in report.items())
