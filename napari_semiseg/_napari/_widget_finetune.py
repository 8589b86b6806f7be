"""The "Fine-tune" dock widget: train a new model version in a child process, watch it live.

The widget shows the effective recipe of the chosen card and method (``workflows.train``: the
card's, then the method's published one: optimiser, learning rate, iterations, ramps) and
builds a ``TrainRequest`` from what the user changed (the user's edits win and are recorded
with the model version), the cases ticked, the device and the model to start from.
``FineTuneRun`` starts the trainer in a child process, so the window never waits on it;
a timer reads the child's JSON-lines events and feeds the plot (loss per iteration,
validation Dice) and the progress bar. Stop is graceful (the child saves its weights and a
checkpoint); Resume continues a stopped run. The new model version shows in the models
table, where any version can be made active again. An ``EventLoopProbe`` records how
responsive the window stayed during each run (``stall_report``): from the first event-loop
turn after the Start (or Resume) click has been handled and drawn, to the run's final event.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING

from napari.utils.notifications import show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                            QListWidgetItem, QProgressBar, QSpinBox, QVBoxLayout, QWidget)

from ..errors import ProjectError, SemisegError
from ..workflows.models import trained_with_network
from ..workflows.train import TrainRequest, effective_recipe
from ._finetune_job import CasePools, FineTuneRun, format_param, param_help, parse_param
from ._model_rows import describe_model
from ._plot import TrainingPlot
from ._responsiveness import EventLoopProbe, StallReport
from ._panel_parts import button, group_box, row_of, scroll_panel
from ._panel_status import PanelStatus
from ._params_form import ParamsForm
from ._plain_words import DEVICE_TIP, for_researchers
from ._shared import session_for
from ._widget_models import ModelsSection

if TYPE_CHECKING:
    import napari

#: How often the child's events are read, in milliseconds.
POLL_INTERVAL_MS = 250
FRESH = "fresh network"
#: The least height of the panel's scrolled form, in pixels. Docked under the Project panel in a
#: 1400×900 window, the dock would otherwise shrink to its title bar (the scroll area asks for
#: nothing); this keeps several form rows in view and still leaves the Project panel its
#: five case rows.
MIN_FORM_HEIGHT = 180


class FineTuneWidget(PanelStatus, QWidget):
    """Dock widget: recipe, cases, Start / Stop / Resume, live plot, model versions."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer"):
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.run: FineTuneRun | None = None
        self.runs: list[FineTuneRun] = []
        self.probe = EventLoopProbe(parent=self)
        self.last_stall_report: StallReport | None = None
        self.child_env: dict[str, str] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.timeout.connect(self._poll)
        self._build()
        self.session.listen(self._on_session_change)
        self._refresh_all()

    # -- layout ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.setMinimumWidth(460)
        self.models = ModelsSection(self.session)
        content = QWidget()
        layout = QVBoxLayout(content)
        layout.addWidget(self._recipe_group())
        layout.addWidget(self._cases_group())
        layout.addWidget(self._run_group(), stretch=2)
        layout.addWidget(self.models, stretch=1)
        # A short window scrolls the panel rather than squeezing the plot under its neighbours.
        self.scroll = scroll_panel(self, content, MIN_FORM_HEIGHT)
        self._recipe_shown = False
        self._recipe_warm: bool | None = None  # the start the form's recipe is for; None: none shown yet
        self.card_combo.setCurrentIndex(max(self.card_combo.findText("cpu-small"), 0))
        self._on_recipe_changed()

    def _recipe_group(self) -> QGroupBox:
        from ..engine.cards import OPTIMIZERS, load_card, shipped_card_names
        from ..engine.methods import get_method, list_methods

        self.card_combo = _combo_with_item_tips({name: load_card(name).description for name in shipped_card_names()})
        self.card_combo.setToolTip("The network to train and its image settings (model card): cpu-small is small "
                                   "and quick without a graphics card; the V-Nets are the papers' networks, for a "
                                   "GPU. Hover over an entry for details")
        self.card_combo.currentTextChanged.connect(lambda _text: self._on_recipe_changed(card_changed=True))
        self.method_combo = _combo_with_item_tips({name: get_method(name).description for name in list_methods()})
        self.method_combo.setToolTip("How the network learns: supervised from the labelled cases alone, the "
                                     "others from the unlabelled cases too (semi-supervised). Each comes with its "
                                     "paper's recommended settings. Hover over an entry for details")
        self.method_combo.currentTextChanged.connect(lambda _text: self._on_recipe_changed())
        self.params_form = for_researchers(ParamsForm())
        self.recipe_label = QLabel(wordWrap=True)
        self.iterations_spin = QSpinBox(minimum=1, maximum=1_000_000)
        self.iterations_spin.setToolTip("How many training steps: more steps learn more and take longer "
                                        "(the status line shows the time left while it runs)")
        self.iterations_spin.valueChanged.connect(self._fit_ramps)
        self.optimizer_combo = QComboBox()
        self.optimizer_combo.addItems(OPTIMIZERS)
        self.optimizer_combo.setToolTip("The rule that updates the network at each step (optimiser); keep the "
                                        "recipe's unless you compare methods")
        self.lr_edit = QLineEdit()
        self.lr_edit.setToolTip("How far each step moves the network at first (learning rate); the recipe's "
                                "schedule lowers it as the run goes on")
        self.validate_spin = QSpinBox(minimum=1, maximum=1_000_000)
        self.validate_spin.setToolTip("How often the validation cases measure the network, in steps (and after "
                                      "the last): the plot's validation Dice")
        self.device_combo = QComboBox()
        self.device_combo.addItems(_devices())
        self.device_combo.setToolTip(DEVICE_TIP)
        self.start_from_combo = QComboBox()
        self.start_from_combo.setToolTip("Fine-tune a model version (it becomes the parent), or train a "
                                         "fresh network")
        self._start_from_picked = False  # until the user picks one, follow the active model
        self.start_from_combo.activated.connect(lambda _index: self._start_from_chosen())
        recipe = QFormLayout()
        recipe.addRow("Network (card)", self.card_combo)
        recipe.addRow("Method", self.method_combo)
        recipe.addRow("Method settings (hyperparameters)", self.params_form)
        recipe.addRow(self.recipe_label)
        recipe.addRow("Iterations", self.iterations_spin)
        recipe.addRow("Optimiser", self.optimizer_combo)
        recipe.addRow("Learning rate", self.lr_edit)
        recipe.addRow("Validate every", self.validate_spin)
        recipe.addRow("Device", self.device_combo)
        recipe.addRow("Start from", self.start_from_combo)
        return group_box("Recipe", recipe)

    def _cases_group(self) -> QGroupBox:
        self.labelled_title, self.labelled_list = QLabel(), _checklist()
        self.unlabelled_title, self.unlabelled_list = QLabel(), _checklist()
        self.validation_label = QLabel(wordWrap=True)
        lists = QHBoxLayout()
        for title, widget in ((self.labelled_title, self.labelled_list),
                              (self.unlabelled_title, self.unlabelled_list)):
            widget.itemChanged.connect(lambda _item: self._update_titles())
            column = QVBoxLayout()
            column.addWidget(title)
            column.addWidget(widget)
            lists.addLayout(column)
        return group_box("Cases", lists, self.validation_label)

    def _run_group(self) -> QGroupBox:
        self.start_button = button("Start", "Train a new model version from the ticked cases, in the background: "
                                   "the window stays usable and the plot follows the run", self.start)
        self.stop_button = button("Stop", "Stop after the current step; the weights are kept (a checkpoint and an "
                                  "inactive model version) and the run can be resumed", self.stop)
        self.resume_button = button("Resume", "Continue the stopped run where it stopped, to the same number of "
                                    "steps", self.resume)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m iterations")
        self.plot = TrainingPlot()
        self.status_label = QLabel(wordWrap=True)
        box = group_box("Run", row_of(self.start_button, self.stop_button, self.resume_button), self.progress)
        box.layout().addWidget(self.plot, stretch=1)
        box.layout().addWidget(self.status_label)
        return box

    # -- the request the child run consumes -----------------------------------------------------------

    def request(self) -> TrainRequest:
        """The ``TrainRequest`` the controls describe: the recipe values the user changed, the cases ticked.

        A value equal to the effective recipe's is not an override (the recipe gives it anyway),
        so the same choice in ``semiseg train`` makes the same request and the same run.

        Raises:
            ProjectError: a hyperparameter field holds no valid value.
        """
        card, method, iterations = self._card(), self.method_combo.currentText(), self.iterations_spin.value()
        warm = self.start_from_combo.currentData() is not None
        published = effective_recipe(card, method, warm_start=warm)
        fitted = effective_recipe(card, method, iterations, warm_start=warm)
        shown = {"optimizer": self.optimizer_combo.currentText(),
                 "lr": parse_param(self.lr_edit.text(), 0.0, "learning rate"),
                 "validate_every": self.validate_spin.value()}
        params = self.params_form.values()
        return TrainRequest(
            card=self.card_combo.currentText(), method=method,
            iterations=None if iterations == published.iterations else iterations,
            settings={key: value for key, value in shown.items() if value != fitted.settings[key]},
            method_params={key: value for key, value in params.items() if fitted.form_params().get(key) != value},
            labelled=_checked(self.labelled_list), unlabelled=_checked(self.unlabelled_list),
            device=self.device_combo.currentText(), start_from=self.start_from_combo.currentData())

    # -- actions ----------------------------------------------------------------------------------------

    def start(self) -> FineTuneRun | None:
        """Start a run from ``request()`` in a child process; returns it (None when refused)."""
        if self.run is not None and self.run.running:
            self._report_error("a training run is already running; stop it first")
            return None
        try:
            project = self.session.project
            request = self.request()
            run = FineTuneRun.start(project, request, env=self.child_env)
        except SemisegError as error:
            self._report_error(str(error))
            return None
        self.plot.clear(run.iterations)
        self._follow(run, f"Started run {run.run_id} ({request.method}, {run.iterations} iterations, "
                          f"{len(run.config.data.labeled)} labelled + {len(run.config.data.unlabeled)} unlabelled cases) "
                          f"in process {run.pid}…")
        return run

    def stop(self) -> None:
        """Ask the running child to stop after its current step (the weights are kept)."""
        if self.run is not None and self.run.running:
            self.run.stop()
            self.set_status(f"Stopping run {self.run.run_id} after its current step…")
            self.stop_button.setEnabled(False)

    def resume(self) -> FineTuneRun | None:
        """Continue the stopped run from its checkpoint (a new run, same iterations target)."""
        try:
            if self.run is None:
                raise ProjectError("no stopped run to resume")
            run = self.run.resume(env=self.child_env)
        except SemisegError as error:
            self._report_error(str(error))
            return None
        self._follow(run, f"Resuming run {self.run.run_id} as run {run.run_id} from iteration "
                          f"{self.run.iteration}…")
        return run

    def _start_probe(self) -> None:
        if self.run is not None and self.run.running:
            self.probe.start()

    def show_run(self) -> None:
        """Scroll the panel to the run: buttons, progress and plot."""
        self.scroll.ensureWidgetVisible(self.status_label)
        self.scroll.ensureWidgetVisible(self.start_button)

    def stall_report(self) -> StallReport | None:
        """Event-loop stalls of the current run (live), else of the last one."""
        if self.probe.running:
            return self.probe.report()
        return self.last_stall_report

    # -- following a run ----------------------------------------------------------------------------------

    def _follow(self, run: FineTuneRun, message: str) -> None:
        self.run = run
        self.runs.append(run)
        atexit.register(run.stop)  # a closed viewer leaves no training behind; the weights are kept
        self.progress.setRange(0, run.iterations)
        _set_progress(self.progress, run.iteration)
        self.set_status(message)
        self._timer.start()
        self._update_enabled()
        # Measure the run, not the Start click: the probe starts once the click's own repaint,
        # already queued, is done.
        QTimer.singleShot(0, self._start_probe)

    def _poll(self) -> None:
        run = self.run
        if run is None:
            self._timer.stop()
            return
        for event in run.poll():
            self._show_event(event)
        if run.ended and run.running:
            self.last_stall_report = self.probe.stop()  # the run is over: what follows is bookkeeping
            self._conclude(run)

    def _show_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self.progress.setRange(0, int(event.get("iterations") or self.run.iterations))
            self.plot.set_iterations(self.progress.maximum())
            self.set_status(f"Training on {event.get('device')}: {event.get('n_labeled')} labelled, "
                            f"{event.get('n_unlabeled')} unlabelled, {event.get('n_validation')} validation "
                            f"case(s); starting at iteration {event.get('iteration')}.")
        elif kind == "iteration":
            iteration = int(event["iteration"])
            self.plot.add_loss(iteration, (event.get("losses") or {}).get("total"))
            _set_progress(self.progress, iteration)
            eta = event.get("eta_s")
            self.set_status(f"Iteration {iteration} of {self.run.iterations}"
                            + (f", about {_duration(eta)} left." if eta is not None else "."))
        elif kind == "validation":
            self.plot.add_dice(int(event["iteration"]), event.get("dice"))

    def _conclude(self, run: FineTuneRun) -> None:
        self._timer.stop()
        model = run.conclude()
        self._update_enabled()
        if run.status == "failed":
            self._report_error(f"Run {run.run_id} failed: {run.error}")
            return
        self.session.notify("models")
        dice = run.validation_dice
        if run.status == "finished" and model.active:
            message = (f"Run {run.run_id} finished: model {model.id} is now active"
                       + (f" (validation Dice {dice:.3f})." if dice is not None else "."))
        elif run.status == "finished":
            message = (f"Run {run.run_id} finished: model {model.id} is kept but not made active, because no "
                       "validation case measured it. Check its predictions, then use Make active.")
        else:
            message = (f"Run {run.run_id} stopped at iteration {run.iteration}: its weights are kept as "
                       f"inactive model {model.id}; Resume continues it.")
        self.models.select(model.id)
        self.set_status(message)
        show_info(message)

    # -- keeping in step with the project -----------------------------------------------------------------

    def _on_session_change(self, change: str) -> None:
        if change == "project":
            self._refresh_all()
        elif change in ("labels", "cases"):
            self._refresh_cases()
        elif change == "models":
            self.models.refresh()
            self._refresh_start_from()

    def _refresh_all(self) -> None:
        self._refresh_cases()
        self.models.refresh()
        self._refresh_start_from()

    def _refresh_cases(self) -> None:
        pools = CasePools.from_project(self.session.project) if self.session.has_project else CasePools((), (), ())
        for widget, ids in ((self.labelled_list, pools.labelled), (self.unlabelled_list, pools.unlabelled)):
            unticked = {item.text() for item in _items(widget) if item.checkState() != Qt.Checked}
            widget.blockSignals(True)
            widget.clear()
            for case_id in ids:
                item = QListWidgetItem(case_id)
                item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Unchecked if case_id in unticked else Qt.Checked)
                widget.addItem(item)
            widget.blockSignals(False)
        self._validation = pools.validation
        self.validation_label.setText(
            f"Validation (split \"validation\", never trained on): {', '.join(pools.validation)}"
            if pools.validation else
            "No validation case: the new model will be kept but not made active. Give a labelled case the "
            "split \"validation\" to get a validation Dice.")
        self._update_titles()

    def _update_titles(self) -> None:
        for title, widget, what in ((self.labelled_title, self.labelled_list, "Labelled (gold + corrected)"),
                                    (self.unlabelled_title, self.unlabelled_list, "Unlabelled")):
            title.setText(f"{what}: {len(_checked(widget))} of {widget.count()}")
        self._update_enabled()

    def _start_from_chosen(self) -> None:
        self._start_from_picked = True
        self._follow_start_from()

    def _follow_start_from(self) -> None:
        """A fine-tune and a fresh network have different recipes (``effective_recipe``): show the
        one of the current choice."""
        if self._recipe_warm is not None and self._warm_start() != self._recipe_warm:
            self._show_recipe()

    def _warm_start(self) -> bool:
        return self.start_from_combo.currentData() is not None

    def _refresh_start_from(self) -> None:
        self._fill_start_from()
        self._follow_start_from()

    def _fill_start_from(self) -> None:
        chosen = self.start_from_combo.currentData()
        self.start_from_combo.clear()
        self.start_from_combo.addItem(FRESH, None)
        models = self.session.project.models() if self.session.has_project else []
        card = self._card()
        compatible = [m for m in reversed(models) if trained_with_network(m, card)]
        for model in compatible:
            self.start_from_combo.addItem(describe_model(model) + (" (active)" if model.active else ""), model.id)
        if self._start_from_picked and self.start_from_combo.findData(chosen) >= 0:
            self.start_from_combo.setCurrentIndex(self.start_from_combo.findData(chosen))
        else:  # by default a fine-tune continues from the active model
            active = next((m.id for m in compatible if m.active), None)
            self.start_from_combo.setCurrentIndex(max(self.start_from_combo.findData(active), 0))

    def _on_recipe_changed(self, card_changed: bool = False) -> None:
        """A card or method change: the models to start from, then the hyperparameters and iterations."""
        card = self._card()
        if card_changed or not self._recipe_shown:
            self._recipe_shown = True
            self._show_method(card.training.method)  # a card comes with its default method
        self._fill_start_from()  # the card decides which models can be fine-tuned
        self._show_recipe()

    def _show_recipe(self) -> None:
        """The effective recipe of the card, the method and the start (fresh or fine-tune) in the form."""
        card, warm = self._card(), self._warm_start()
        try:
            recipe = effective_recipe(card, self.method_combo.currentText(), warm_start=warm)
        except SemisegError as error:
            self._report_error(str(error))
            return
        self._recipe_warm = warm
        self.iterations_spin.blockSignals(True)  # the form below is fitted to it once
        self.iterations_spin.setValue(recipe.iterations)
        self.iterations_spin.blockSignals(False)
        self.params_form.set_params(recipe.form_params(), param_help(self.method_combo.currentText()))
        settings = recipe.settings
        self.optimizer_combo.setCurrentText(settings["optimizer"])
        self.lr_edit.setText(format_param(settings["lr"]))
        self.validate_spin.setValue(settings["validate_every"] or recipe.iterations)
        self.recipe_label.setText(_describe_recipe(recipe, card))

    def _fit_ramps(self, iterations: int) -> None:
        """The ramp lengths (``Method.schedule_for``) follow the number of iterations."""
        from ..engine.methods import get_method
        try:
            self.params_form.set_values(get_method(self.method_combo.currentText()).schedule_for(iterations))
        except SemisegError as error:
            self._report_error(str(error))

    def _show_method(self, method: str) -> None:
        index = self.method_combo.findText(method)
        if index >= 0:
            self.method_combo.blockSignals(True)
            self.method_combo.setCurrentIndex(index)
            self.method_combo.blockSignals(False)

    def _card(self):
        from ..engine.cards import load_card

        return load_card(self.card_combo.currentText())

    def _update_enabled(self) -> None:
        running = self.run is not None and self.run.running
        can_start = self.session.has_project and self.labelled_list.count() > 0
        self.start_button.setEnabled(not running and can_start)
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(not running and self.run is not None and self.run.status == "stopped")
        # The recipe and case controls stay editable: a run reads them once, at Start (and
        # re-styling a dozen disabled controls would cost the window a long repaint).


def _describe_recipe(recipe, card) -> str:
    """Where the shown values come from, in one line: plain words first, the engine's names in parentheses."""
    settings = recipe.settings
    schedule = settings["schedule"] + (f" over {settings['poly_horizon']} steps"
                                       if settings["schedule"] == "poly" and settings.get("poly_horizon") else "")
    source = {"method": f"The {recipe.method} paper's recommended settings",
              "fine-tune": f"Fine-tuning the chosen model: the recommended settings of {card.name}, the same for "
                           "every method"}.get(recipe.source, f"The recommended settings of {card.name}")
    return (f"{source}: {settings['iterations']} steps, learning rate {format_param(settings['lr'])} "
            f"({settings['optimizer']} optimiser, {schedule} schedule). Your changes below win and are kept "
            "with the model version.")


def _combo_with_item_tips(items: dict[str, str]) -> QComboBox:
    """A combo box of ``items``' names, each entry's tooltip its description."""
    combo = QComboBox()
    for index, (name, description) in enumerate(items.items()):
        combo.addItem(name)
        combo.setItemData(index, description, Qt.ToolTipRole)
    return combo


def _set_progress(bar: QProgressBar, value: int) -> None:
    """Move a progress bar without ``QProgressBar.setValue``'s immediate repaint.

    Repainting any part of napari's window re-composes the whole window with its OpenGL
    canvas (tens of milliseconds, more on a busy CPU); deferred, it joins the next paint.
    """
    bar.setUpdatesEnabled(False)
    try:
        bar.setValue(value)
    finally:
        bar.setUpdatesEnabled(True)  # schedules an ordinary (deferred) update


def _devices() -> list[str]:
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _checklist() -> QListWidget:
    widget = QListWidget()
    widget.setMaximumHeight(90)
    widget.setToolTip("Untick a case to leave it out of the run")
    return widget


def _items(widget: QListWidget) -> list[QListWidgetItem]:
    return [widget.item(row) for row in range(widget.count())]


def _checked(widget: QListWidget) -> tuple[str, ...]:
    return tuple(item.text() for item in _items(widget) if item.checkState() == Qt.Checked)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


__all__ = ["FineTuneWidget"]
