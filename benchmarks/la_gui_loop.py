"""The clinician's loop on a real LA project, driven through the napari panels (issue 5, done-when).

A real napari window (re-run under ``xvfb-run`` when there is no ``DISPLAY``) docks the
Project, Pseudo-label and Soft-label correction panels on an existing project, for instance
the LA benchmark imported with 8 gold labels and a model trained on them::

    semiseg init la && semiseg import la --la-h5 ../shared/data/LA --labeled 8
    semiseg train la --card cpu-small --iterations 300
    python -m benchmarks.la_gui_loop --project la

Then, as a clinician would, by the panels' buttons:

1. **Pseudo-label** every unlabelled case not done yet with the active model; the probe of
   ``benchmarks.responsiveness`` records the event-loop stalls meanwhile;
2. **Next case** opens the most uncertain case (rank 1) with its pseudo-label (screenshot);
3. the clinician's correction: one brush stroke, then the case's reference label painted in
   (the LA h5 files carry a held-out label), and **Save correction**;
4. **Correct soft label** in the inspection panel: before / after / crossed layers and the
   histograms.

Prints and writes (``bench-results/la_gui_loop/``) the throughput, the stalls, the correction's
counts, and two screenshots of the window.
"""

from __future__ import annotations

import argparse

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import register_all_methods, report, rerun_under_xvfb, results_dir
from .responsiveness import wait_in_event_loop

WAIT_S = 4 * 3600.0


def _dock(viewer, name: str, tabify: bool = False):
    return viewer.window.add_plugin_dock_widget("napari-semiseg", name, tabify=tabify)[1]


def _raise_dock(panel) -> None:
    from qtpy.QtWidgets import QDockWidget
    while not isinstance(panel, QDockWidget):
        panel = panel.parentWidget()
    panel.raise_()


def _screenshot(viewer, path: Path) -> Path:
    wait_in_event_loop(lambda: False, timeout_s=0.5)  # let the canvas and the docks draw
    image = viewer.screenshot(str(path), canvas_only=False)
    if image.std() <= 10:
        raise RuntimeError(f"{path}: the window screenshot is blank")
    return path


def pseudo_label_all(pseudo_panel, project_panel) -> dict:
    """Click Run, wait for the end under the stall probe; the row of the report."""
    from napari_semiseg._napari._responsiveness import EventLoopProbe
    probe = EventLoopProbe(interval_ms=10)
    probe.start()
    started = time.perf_counter()
    pseudo_panel.run_button.click()
    job = pseudo_panel.job
    if job is None:
        raise RuntimeError(f"the Pseudo-label panel did not start: {pseudo_panel.status_label.text()}")
    wait_in_event_loop(lambda: not job.running, timeout_s=WAIT_S)
    seconds = time.perf_counter() - started
    stalls = probe.stop()
    long_ones = probe.stalls_longer_than(200.0)
    print(f"[la_gui_loop] stalls over 200 ms (s after the click, ms): "
          f"{[(round(t, 1), round(ms)) for t, ms in long_ones]}", flush=True)
    wait_in_event_loop(lambda: not project_panel.ranking.busy, timeout_s=600)
    summary = pseudo_panel.last_summary
    done = len(summary.cases) if summary is not None else 0
    return {"step": "pseudo-label (GUI)", "cases": done, "seconds": round(seconds, 1),
            "volumes_per_min": round(60 * done / seconds, 2) if done else 0.0,
            "stall_p99_ms": round(stalls.p99_ms, 1), "stall_max_ms": round(stalls.longest_ms, 1),
            "stalls_over_200ms": len(long_ones),
            "status": pseudo_panel.status_label.text()}


def reference_label(project, case_id: str) -> np.ndarray:
    """The held-out label the case's image file carries (LA h5): the "clinician's" correction."""
    label = project.load_image(case_id).label
    if label is None:
        raise RuntimeError(f"case {case_id}: its image file carries no label to correct it with")
    return (np.asarray(label) > 0).astype(np.uint8)


def open_next_case(project_panel, pseudo_panel) -> str:
    """Next case: the most uncertain unlabelled case opens with its pseudo-label; returns its id."""
    project_panel.next_case_button.click()
    wait_in_event_loop(lambda: project_panel.labels_layer is not None, timeout_s=120)
    _raise_dock(pseudo_panel)
    return project_panel.session.opened.case_id


def correct_open_case(project_panel, inspect_panel) -> dict:
    """Paint → Save correction → Correct soft label; the row of the report."""
    case_id = project_panel.session.opened.case_id
    truth = reference_label(project_panel.session.project, case_id)
    layer = project_panel.labels_layer
    layer.brush_size = 5
    layer.paint(tuple(np.argwhere(truth).mean(axis=0).round().astype(int)), 1, refresh=True)
    layer.data = truth
    project_panel.save_button.click()
    saved = project_panel.status_label.text()
    _raise_dock(inspect_panel)
    wait_in_event_loop(lambda: inspect_panel.correct_button.isEnabled(), timeout_s=60)
    started = time.perf_counter()
    inspect_panel.correct_button.click()
    job = inspect_panel.job
    wait_in_event_loop(lambda: not job.running, timeout_s=1800)
    seconds = time.perf_counter() - started
    wait_in_event_loop(lambda: False, timeout_s=1.0)
    histograms = inspect_panel.plot.histograms
    crossed = int((inspect_panel.inspection.crossed > 0).sum())
    return {"step": "correct soft label (GUI)", "case": case_id, "seconds": round(seconds, 1),
            "saved": saved, "crossed_voxels": crossed,
            "wrong_before_fg": histograms.wrong_before["foreground"],
            "wrong_before_bg": histograms.wrong_before["background"],
            "wrong_after_fg": histograms.wrong_after["foreground"],
            "wrong_after_bg": histograms.wrong_after["background"],
            "status": inspect_panel.status_label.text()}


def run(project: Path) -> list[dict]:
    import napari
    register_all_methods()
    out = results_dir("la_gui_loop")
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1700, 1050)
    project_panel = _dock(viewer, "Project")
    pseudo_panel = _dock(viewer, "Pseudo-label")
    inspect_panel = _dock(viewer, "Soft-label correction", tabify=True)
    _raise_dock(pseudo_panel)
    project_panel.folder_edit.setText(str(project))
    project_panel.open_button.click()
    print(f"[la_gui_loop] {pseudo_panel.todo_label.text()}", flush=True)
    rows = [pseudo_label_all(pseudo_panel, project_panel)]
    print(f"[la_gui_loop] {rows[-1]}", flush=True)
    case_id = open_next_case(project_panel, pseudo_panel)
    print(f"[la_gui_loop] Next case opened {case_id}", flush=True)
    _screenshot(viewer, out / "la-pseudo-label.png")
    rows.append(correct_open_case(project_panel, inspect_panel))
    print(f"[la_gui_loop] {rows[-1]}", flush=True)
    viewer.layers.selection.active = viewer.layers[-2]  # the corrected soft label
    _screenshot(viewer, out / "la-inspect.png")
    viewer.close()
    report("la_gui_loop", rows, title=f"The clinician's loop through the GUI on {project}",
           notes=["pseudo-labelling under the 10 ms event-loop probe; correction = the h5 file's reference label",
                  f"screenshots: {out / 'la-pseudo-label.png'}, {out / 'la-inspect.png'}"])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", required=True, type=Path, help="an LA project with an active model")
    parser.add_argument("--shared-data", default=None, help="unused (run_all passes it to every script)")
    args = parser.parse_args(argv)
    rerun_under_xvfb("benchmarks.la_gui_loop", argv)
    run(args.project.resolve())


if __name__ == "__main__":
    main()
