"""The README's pictures, made on purpose from real left-atrium volumes:

    python -m napari_semiseg.demo --screenshots docs/screenshots --shared-data ../shared/data

The demo's loop, staged for the README. It builds a project of LA benchmark volumes in a plainly
named folder (``--out``/left-atrium, ``demo-output/left-atrium`` by default): the first
``LABELLED`` cases of ``train.list`` with their gold label, the last one in the validation split
(its h5 file carries the reference), the others unlabelled. napari opens at 1400×900 with the
panels docked as tabs, the author of every saved label is "clinician", and the panels' own
buttons go through the loop, one picture per README panel:

1. ``finetune-panel.png``: the Fine-tune panel trains a first model (the demo's first run,
   longer), its plot and the new model version;
2. ``predict-panel.png``: the Predict panel segments an unlabelled case, saved as a
   "prediction" version; the label is shown, the soft label and the uncertainty added hidden;
3. ``project-panel-saved.png``: the clinician's correction of that prediction, saved (the
   benchmark's reference label, which the h5 file carries, stands in for the strokes);
4. ``inspect-panel.png``: the Soft-label correction panel corrects the prediction's soft label
   against the saved correction.

Each picture shows the plane through the atrium with the most reference voxels. The folder is
rebuilt at each run (a folder this script did not make is refused).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from ..errors import ProjectError, SemisegError
from ..project import Project
from ..samples import SampleProjectSpec, build_sample_project
from ._demo_steps import bring_to_front, let_the_window_draw, train_and_predict, wait_until

WINDOW_SIZE = (1400, 900)
AUTHOR = "clinician"
PROJECT_NAME = "left-atrium"
#: Written into the project folder, so that a rerun knows the folder is its own to rebuild.
MARKER = ".readme-screenshots"
LA_CASES = 8
LABELLED = 3
#: The first model's training steps: enough for a prediction that finds the atrium (about 3 min on
#: two CPU cores).
TRAIN_ITERATIONS = 200
PICTURES = ("finetune-panel.png", "predict-panel.png", "project-panel-saved.png", "inspect-panel.png")
#: The panels, as tabs beside Project: each picture shows one at the window's full height (stacked,
#: Project and Predict need more than 900 pixels).
TABBED = ("Fine-tune", "Predict", "Soft-label correction")
PANELS = ("Project", *TABBED)


def readme_spec(shared_data: Path | None, la_cases: int = LA_CASES, labelled: int = LABELLED) -> SampleProjectSpec:
    """LA volumes only (no phantom, no hippocampus): the README shows the real task.

    Raises:
        ProjectError: the shared data folder holds no LA benchmark.
    """
    la_root = None if shared_data is None else Path(shared_data) / "LA"
    if la_root is None or not (la_root / "train.list").is_file():
        raise ProjectError(f"{la_root or '--shared-data'}: no LA benchmark (train.list) here; the README's "
                           "pictures are made from real left-atrium volumes")
    if not 0 < labelled < la_cases - 1:
        raise ProjectError(f"--la-cases {la_cases}: needs room for {labelled} labelled, one unlabelled and one "
                           "validation case")
    return SampleProjectSpec(shipped=(), phantoms=0, la_root=la_root, la_cases=la_cases, la_labeled=labelled)


def prepare_readme_project(out: Path, spec: SampleProjectSpec) -> Path:
    """Build the project afresh in ``out/left-atrium``; its last case goes to the validation split.

    Raises:
        ProjectError: the folder exists and this script did not make it.
    """
    folder = Path(out).resolve() / PROJECT_NAME
    if folder.exists():
        if not (folder / MARKER).is_file():
            raise ProjectError(f"{folder}: exists and was not made by the screenshot script; remove it or "
                               "choose another --out")
        shutil.rmtree(folder)
    Project.create(folder).close()  # a project refuses a folder that is not empty: the marker comes next
    (folder / MARKER).write_text("made by python -m napari_semiseg.demo --screenshots\n", encoding="utf-8")
    with build_sample_project(folder, spec) as project:
        validation = project.cases()[-1].id
        project.set_split(validation, "validation")
    print(f"project {folder}: {spec.la_cases} LA cases, {spec.la_labeled} labelled, {validation} for validation")
    return folder


def atrium_plane(reference: np.ndarray) -> int:
    """The z plane with the most reference voxels (the middle one when the label is empty)."""
    counts = (np.asarray(reference) > 0).sum(axis=(1, 2))
    return int(np.argmax(counts)) if counts.any() else reference.shape[0] // 2


def open_window(project_folder: Path):
    """napari at ``WINDOW_SIZE`` with the panels docked on the project; returns (viewer, {name: panel})."""
    import napari

    viewer = napari.Viewer(title="napari-semiseg", show=True)
    viewer.window.resize(*WINDOW_SIZE)
    panels = {name: viewer.window.add_plugin_dock_widget("napari-semiseg", name, tabify=name in TABBED)[1]
              for name in PANELS}
    project_panel = panels["Project"]
    project_panel.session.author = AUTHOR  # the panels share this session: every save is the clinician's
    project_panel.open_project(project_folder)
    return viewer, panels


def take_screenshots(out_dir: Path, project_folder: Path, iterations: int = TRAIN_ITERATIONS) -> int:
    """Go through the loop in a window and save ``PICTURES`` into ``out_dir``; 0, or 1 on a failure."""
    viewer, panels = open_window(project_folder)
    project_panel, predict = panels["Project"], panels["Predict"]
    try:
        case_id = _first_unlabelled(project_panel)
        project_panel.open_case(case_id)
        reference = project_panel.session.opened.image.label
        predict.save_check.setChecked(True)  # the prediction is kept: the clinician corrects it next
        if train_and_predict(panels["Fine-tune"], predict, iterations):
            return 1
        wait_until(lambda: not project_panel.ranking.busy)
        _show_plane(viewer, project_panel, atrium_plane(reference))

        out_dir.mkdir(parents=True, exist_ok=True)
        bring_to_front(panels["Fine-tune"])
        _scroll_to_end(panels["Fine-tune"].scroll)  # the run's plot and the new model version
        _save(viewer, out_dir / "finetune-panel.png")
        bring_to_front(predict)
        _save(viewer, out_dir / "predict-panel.png")

        _correct_and_save(viewer, project_panel, case_id, reference)
        bring_to_front(project_panel)
        _save(viewer, out_dir / "project-panel-saved.png")

        bring_to_front(panels["Soft-label correction"])
        if not _correct_soft_label(viewer, panels["Soft-label correction"]):
            return 1
        _save(viewer, out_dir / "inspect-panel.png")
        return 0
    finally:
        wait_until(lambda: not project_panel.ranking.busy, 60)  # its worker reports to the cases table
        viewer.close()


def _first_unlabelled(project_panel) -> str:
    cases = [case for case in project_panel.session.cases() if case.split == "unlabelled"]
    if not cases:
        raise ProjectError(f"{project_panel.session.project.root}: no unlabelled case to predict")
    return cases[0].id


def _show_plane(viewer, project_panel, z: int) -> None:
    geometry = project_panel.session.opened.image.geometry
    viewer.reset_view()
    viewer.dims.set_point(0, geometry.origin[0] + z * geometry.spacing[0])


def _correct_and_save(viewer, project_panel, case_id: str, reference: np.ndarray) -> None:
    """Open the saved prediction, paint the reference label over it and press Save correction."""
    prediction = project_panel.session.project.latest_label(case_id, kinds="prediction")
    if prediction is None:
        raise ProjectError(f"case {case_id}: the prediction was not saved")
    project_panel.open_version(prediction.id)
    labels = project_panel.labels_layer
    labels.data = np.asarray(reference, dtype=labels.data.dtype)
    project_panel.save_correction()
    for layer in viewer.layers:  # the prediction's outline would hide the correction
        if layer.name.endswith(" prediction"):
            layer.visible = False
    viewer.layers.selection.active = labels


def _correct_soft_label(viewer, inspect) -> bool:
    """Press Correct soft label and wait; select the corrected soft label. False when it failed."""
    job = inspect.correct()
    done = job is not None and wait_until(lambda: not job.running)
    if not done or inspect.inspection is None or not inspect.inspection.has_correction:
        print(f"screenshots: the soft label was not corrected: {inspect.status_label.text()}", file=sys.stderr)
        return False
    after = [layer for name, layer in inspect.layers().items() if name.endswith("after correction")]
    viewer.layers.selection.active = after[0]
    return True


def _scroll_to_end(scroll_area) -> None:
    bar = scroll_area.verticalScrollBar()
    bar.setValue(bar.maximum())


def _save(viewer, path: Path) -> None:
    viewer.window.resize(*WINDOW_SIZE)
    let_the_window_draw(1.0)
    image = viewer.screenshot(str(path), canvas_only=False)
    if image.std() <= 10:
        raise SemisegError(f"{path}: the window screenshot is blank")
    print(f"screenshot {path}")


__all__ = ["AUTHOR", "PICTURES", "atrium_plane", "open_window", "prepare_readme_project", "readme_spec",
           "take_screenshots"]
