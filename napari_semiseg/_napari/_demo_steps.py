"""Steps the demo and the README's pictures both take in a live window: train a first model and
predict through the panels' own buttons, wait on the event loop, bring a tabbed panel forward.

Its own module so that ``_demo`` (the entry point, which also dispatches ``--screenshots``) and
``_readme_screenshots`` both use these steps without importing each other.
"""

from __future__ import annotations

import sys
import time

from ..project import GOLD_KINDS

#: The headless demo's first model: a short run at a fairly high learning rate finds the atrium.
DEMO_LEARNING_RATE = 0.01
#: The longest the headless demo waits for its training run and its prediction, in seconds (the
#: README's 200-step run took 15 min on two CPU cores that other work kept busy).
DEMO_WAIT_S = 3600


def train_and_predict(finetune, predict, iterations: int) -> int:
    """Through the panels: train a first model when there is none, then predict the open case.

    Returns:
        0, or 1 when the training or the prediction failed (the message is printed).
    """
    project = finetune.session.project
    if project.active_model() is None:
        _choose_training_cases(finetune, _left_atrium_cases(project, finetune))
        finetune.iterations_spin.setValue(iterations)
        finetune.lr_edit.setText(str(DEMO_LEARNING_RATE))
        finetune.validate_spin.setValue(max(1, iterations // 4))
        run = finetune.start()
        if run is None or not wait_until(lambda: not run.running):
            print(f"demo: training did not finish: {finetune.status_label.text()}", file=sys.stderr)
            return 1
        print(f"demo: {finetune.status_label.text()} {finetune.stall_report().describe()}")
        if run.status != "finished":
            return 1
        if project.active_model() is None:
            # The sample project has no validation case, so the run is kept but not made active;
            # the demo's clinician does what the panel's message asks: Make active.
            finetune.models.activate()
    job = predict.predict()
    if job is None or not wait_until(lambda: not job.running) or predict.last_prediction is None:
        print(f"demo: prediction failed: {predict.status_label.text()}", file=sys.stderr)
        return 1
    print(f"demo: {predict.status_label.text()}")
    return 0


def _left_atrium_cases(project, finetune) -> set[str]:
    """Labelled cases whose labels the card's classes can hold (the 3-class hippocampus cannot)."""
    from ..engine.cards import load_card

    classes = load_card(finetune.card_combo.currentText()).network.num_classes
    chosen = set()
    for case_id in _texts(finetune.labelled_list):
        version = project.latest_label(case_id, kinds=GOLD_KINDS)
        if int(project.load_label(version.id).max()) < classes:
            chosen.add(case_id)
    return chosen


def _choose_training_cases(finetune, labelled: set[str]) -> None:
    from qtpy.QtCore import Qt

    for row in range(finetune.labelled_list.count()):
        item = finetune.labelled_list.item(row)
        item.setCheckState(Qt.Checked if item.text() in labelled else Qt.Unchecked)


def _texts(widget) -> list[str]:
    return [widget.item(row).text() for row in range(widget.count())]


def wait_until(condition, seconds: float = DEMO_WAIT_S) -> bool:
    """Run the event loop until ``condition()`` holds; False when ``seconds`` ran out."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        process_events()
        time.sleep(0.01)
    return True


def bring_to_front(panel) -> None:
    """Show a tabbed panel's tab."""
    from qtpy.QtWidgets import QDockWidget

    widget = panel
    while widget is not None and not isinstance(widget, QDockWidget):
        widget = widget.parentWidget()
    if widget is not None:
        widget.raise_()


def let_the_window_draw(seconds: float = 1.5) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        process_events()
        time.sleep(0.02)


def process_events() -> None:
    """One turn of the event loop, widgets deleted later included: ``processEvents`` alone leaves
    them (a replaced split combo of the cases table stayed drawn over the first cell)."""
    from qtpy.QtCore import QEvent
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    QApplication.sendPostedEvents(None, QEvent.DeferredDelete)
