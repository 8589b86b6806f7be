"""Shared pieces of the Predict and Fine-tune panel tests: a tiny project, a model, the panels.

The project holds four synthetic left-atrium phantoms of 24×48×48 voxels (0.625 mm): two with
a gold label (one of them in the validation split) and two unlabelled. A model version is
registered the way the trainer writes one (``make_model_payload``), from a freshly built
network, so the tests need no training unless they test training.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from napari_semiseg.engine.cards import load_card
from napari_semiseg.engine.methods import create_method
from napari_semiseg.engine.training import TrainConfig, data_spec_from_project, train
from napari_semiseg.project import Project
from napari_semiseg.engine.training._checkpoint import make_model_payload, save_atomically
from napari_semiseg.samples import SampleProjectSpec, build_sample_project

SPEC = SampleProjectSpec(shipped=(), phantoms=4, phantom_gold=2, phantom_shape=(24, 48, 48))
LABELLED, VALIDATION, UNLABELLED = ("la_phantom_00",), ("la_phantom_01",), ("la_phantom_02", "la_phantom_03")


def build_project(folder: Path) -> Path:
    """The tiny project (see the module docstring); returns its folder."""
    project = build_sample_project(folder, SPEC)
    try:
        project.set_split(VALIDATION[0], "validation")
    finally:
        project.close()
    return folder


def save_network_as_model(path: Path, card, seed: int = 0) -> Path:
    """A fresh network of ``card`` written in the trainer's model-file format."""
    torch.manual_seed(seed)
    method = create_method("supervised", card)
    config = TrainConfig.from_card(card, path.parent / "untrained-run", iterations=1)
    save_atomically(make_model_payload(method=method, iteration=0, metrics={"status": "untrained"},
                                       config_dict=config.to_dict()), path)
    return path


def register_model(project, scratch: Path, card=None, seed: int = 0, activate: bool = True, model_file=None):
    """Register a model version in ``project``: ``model_file`` (a trainer's model file), else a
    fresh ``card`` network (cpu-small by default)."""
    card = card or load_card("cpu-small")
    path = model_file or save_network_as_model(Path(scratch) / f"model-{seed}.pt", card, seed)
    return project.register_model(card.to_dict(), path, method="supervised", config={"test model": str(path)},
                                  metrics={"status": "test model"}, activate=activate)


def train_briefly(folder: Path, run_dir: Path, iterations: int = 24) -> Path:
    """Train cpu-small on the tiny project's labelled phantom, in process; returns the model file.

    A constant, fairly high learning rate gives a model that finds the phantom's atrium
    (validation Dice about 0.5 after 24 steps): enough for predictions worth looking at.
    """
    with Project.open(folder) as project:
        data = data_spec_from_project(project, labeled=LABELLED, unlabeled=(), validation=())
    config = TrainConfig.from_card(load_card("cpu-small"), run_dir, iterations=iterations, lr=0.01,
                                   schedule="constant", validate_every=0, checkpoint_every=0, data=data,
                                   device="cpu")
    return train(config).model


def dock(viewer, name: str, tabify: bool = False):
    """Dock one of the plugin's panels, as the Plugins menu does; returns the widget."""
    return viewer.window.add_plugin_dock_widget("napari-semiseg", name, tabify=tabify)[1]


def show_tab(panel) -> None:
    """Bring a tabified panel's dock to the front."""
    from qtpy.QtWidgets import QDockWidget

    widget = panel
    while not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    widget.raise_()


def open_case(project_panel, folder: Path, case_id: str) -> None:
    """Open the project and a case through the Project panel's buttons."""
    project_panel.folder_edit.setText(str(folder))
    project_panel.open_button.click()
    table = project_panel.cases_table
    rows = [table.item(r, 0).text() for r in range(table.rowCount())]
    table.selectRow(rows.index(case_id))
    project_panel.open_case_button.click()


@contextlib.contextmanager
def notifications():
    """Collect the napari notifications shown inside the block: a list of (severity, message)."""
    from napari.utils.notifications import notification_manager

    shown: list[tuple[str, str]] = []

    def collect(notification) -> None:
        shown.append((str(notification.severity), str(notification.message)))

    notification_manager.notification_ready.connect(collect)
    try:
        yield shown
    finally:
        notification_manager.notification_ready.disconnect(collect)


def screenshot(viewer, qtbot, path: Path) -> np.ndarray:
    """The whole window, saved to ``path``; checked not to be blank."""
    qtbot.wait(300)  # let the canvas and the dock widgets draw
    image = viewer.screenshot(str(path), canvas_only=False)
    assert image.std() > 10
    return image
