"""The README's main job: napari with the plugin docked on a sample project.

    python -m napari_semiseg.demo --out DIR [--headless] [--shared-data PATH]
    python -m napari_semiseg.demo --screenshots docs/screenshots --shared-data PATH   # the README's pictures

Builds (or completes) a sample project in ``DIR/project``: the shipped hippocampus MRIs with
their gold labels, a few synthetic left-atrium phantoms and, when ``--shared-data`` holds the
LA benchmark, a handful of its cases (two with their gold label). Then it opens napari, docks
the Project, Fine-tune and Predict panels on that project and opens a case. With a display it
hands over to napari's event loop. With ``--headless`` it goes through the loop once, from the
panels: when the project has no model yet, the Fine-tune panel trains a first one for
``--train-iterations`` steps (a child process, on the labelled left-atrium cases); the Predict
panel then predicts the open case (labels, soft label, uncertainty); a screenshot of the whole
window goes to ``DIR/demo-screenshot.png`` and it exits 0 (``make demo`` runs it under
``xvfb-run`` when there is no display). ``--screenshots`` stages the same loop on real LA
volumes for the README's pictures (``_readme_screenshots``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..errors import SemisegError
from ..samples import SampleProjectSpec, build_sample_project
from ._demo_steps import bring_to_front, let_the_window_draw, train_and_predict
from ._readme_screenshots import LA_CASES as README_LA_CASES, TRAIN_ITERATIONS as README_ITERATIONS

#: The dock widgets the demo opens, in order; Fine-tune shares a tabbed dock with Project.
DEMO_WIDGETS: tuple[str, ...] = ("Project", "Fine-tune", "Predict")
TABBED_WIDGETS: tuple[str, ...] = ("Fine-tune",)
WINDOW_SIZE = (1600, 1000)
SCREENSHOT_NAME = "demo-screenshot.png"
#: The headless demo's first model: a short run (at ``_demo_steps.DEMO_LEARNING_RATE``) finds the atrium.
DEMO_TRAIN_ITERATIONS = 24


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m napari_semiseg.demo",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-output"),
                        help="folder for the project and the screenshot (default demo-output)")
    parser.add_argument("--headless", action="store_true",
                        help="draw once, save DIR/demo-screenshot.png and exit (needs an X server, "
                             "e.g. xvfb-run; one is started when pyvirtualdisplay is installed)")
    parser.add_argument("--shared-data", type=Path, default=None,
                        help="the shared data folder; its LA/ subfolder adds real LA cases")
    parser.add_argument("--la-cases", type=int, default=None,
                        help=f"how many LA cases to add (default 4; {README_LA_CASES} for --screenshots)")
    parser.add_argument("--train-iterations", type=int, default=None,
                        help="headless: steps of the first model's training when the project has none "
                             f"(default {DEMO_TRAIN_ITERATIONS}; {README_ITERATIONS} for --screenshots); 0 skips "
                             "training and prediction")
    parser.add_argument("--screenshots", type=Path, default=None, metavar="DIR",
                        help="make the README's pictures into DIR from real LA volumes (needs --shared-data): "
                             "a project in OUT/left-atrium, a window at 1400x900, author 'clinician'")
    return parser.parse_args(argv)


def demo_spec(shared_data: Path | None, la_cases: int) -> SampleProjectSpec:
    """The sample project's content: LA cases only when the benchmark folder is there."""
    la_root = None
    if shared_data is not None and (Path(shared_data) / "LA" / "train.list").is_file():
        la_root = Path(shared_data) / "LA"
    return SampleProjectSpec(la_root=la_root, la_cases=la_cases, la_labeled=min(2, la_cases))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (args.headless or args.screenshots) and not _has_display():
        return _rerun_on_virtual_display(argv if argv is not None else sys.argv[1:])
    if args.screenshots is not None:
        return _readme_screenshots(args)
    try:
        project_folder = prepare_project(args.out, demo_spec(args.shared_data, _or(args.la_cases, 4)))
    except SemisegError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    return show(project_folder, args.out / SCREENSHOT_NAME if args.headless else None,
                _or(args.train_iterations, DEMO_TRAIN_ITERATIONS))


def _readme_screenshots(args: argparse.Namespace) -> int:
    from ._readme_screenshots import prepare_readme_project, readme_spec, take_screenshots

    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")  # no toast over the pictures
    try:
        folder = prepare_readme_project(args.out, readme_spec(args.shared_data, _or(args.la_cases, README_LA_CASES)))
        return take_screenshots(args.screenshots, folder, _or(args.train_iterations, README_ITERATIONS))
    except SemisegError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2


def _or(value, default):
    return default if value is None else value


def prepare_project(out: Path, spec: SampleProjectSpec) -> Path:
    """Build the sample project in ``out/project``; return its folder."""
    folder = Path(out) / "project"
    project = build_sample_project(folder, spec)
    try:
        cases = project.cases()
    finally:
        project.close()
    labelled = sum(case.latest_kind is not None for case in cases)
    print(f"sample project {folder}: {len(cases)} cases, {labelled} with labels")
    return folder


def show(project_folder: Path, screenshot: Path | None, train_iterations: int = DEMO_TRAIN_ITERATIONS) -> int:
    """Open napari on the project; go through the loop, save ``screenshot`` and return, or run
    the event loop."""
    if screenshot is not None:
        # A warning toast (e.g. napari's PyQt5 deprecation) would cover the screenshot; the
        # environment variable changes this run's setting without saving it.
        os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")
    import napari

    viewer = napari.Viewer(title="napari-semiseg demo", show=True)
    viewer.window.resize(*WINDOW_SIZE)
    docked = {name: viewer.window.add_plugin_dock_widget("napari-semiseg", name,
                                                         tabify=name in TABBED_WIDGETS)[1]
              for name in DEMO_WIDGETS}
    panel = docked["Project"]
    panel.open_project(project_folder)
    case_id = _case_to_show(panel)
    panel.open_case(case_id)
    bring_to_front(panel)
    if screenshot is None:
        napari.run()
        return 0
    if train_iterations > 0:
        let_the_window_draw()  # the first drawing of the window, before the run is measured
        status = train_and_predict(docked["Fine-tune"], docked["Predict"], train_iterations)
        if status:
            viewer.close()
            return status
        bring_to_front(docked["Fine-tune"])
        docked["Fine-tune"].show_run()
    let_the_window_draw()
    viewer.reset_view()  # now that the window has its final size
    let_the_window_draw(0.5)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(screenshot), canvas_only=False)
    print(f"screenshot {screenshot}")
    viewer.close()
    return 0


def _case_to_show(panel) -> str:
    """A real LA case with its gold label when there is one, else the labelled phantom."""
    cases = panel.session.cases()
    for case in cases:
        if case.latest_kind == "gold" and case.shape[0] >= 80:  # LA volumes have 88 planes
            return case.id
    return next((c.id for c in cases if c.id.startswith("la_phantom") and c.latest_kind), cases[0].id)


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _rerun_on_virtual_display(argv: list[str]) -> int:
    """Run this demo again in a child process on a private Xvfb (pyvirtualdisplay).

    The child, not this process, talks to the X server, so the server can be stopped cleanly
    once the child has exited (stopping it under a live Qt application kills the process).
    """
    try:
        from pyvirtualdisplay import Display
    except ImportError:
        print("demo: no display; run it under xvfb-run (make demo does), or install "
              "pyvirtualdisplay", file=sys.stderr)
        return 2
    with Display(visible=False, size=WINDOW_SIZE, color_depth=24) as display:
        env = dict(os.environ, DISPLAY=f":{display.display}")
        return subprocess.run([sys.executable, "-m", "napari_semiseg.demo", *argv], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
