"""The Fine-tune panel's logic, free of napari and Qt: which cases, which recipe, the child run.

The panel builds a ``FineTuneRequest``; ``FineTuneRun.start`` turns it into a ``TrainConfig``
inside the project (a run record, a run folder) and starts the trainer in a child process;
the panel then calls ``poll()`` from a timer, which never blocks. When the child reports the
end, ``conclude()`` keeps the result as a model version: active when the run finished, kept
inactive when it was stopped (its weights stay usable; ``resume()`` continues the run in a
new run folder from its checkpoint, to the same number of iterations).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProjectError, SemisegError
from ..project import GOLD_KINDS

TERMINAL_EVENTS = ("finished", "stopped", "error")
#: The OS priority of the training child: lower than the viewer's, so the window stays responsive
#: while the training takes every core that is otherwise idle.
CHILD_NICENESS = 10


@dataclass(frozen=True)
class CasePools:
    """The project's cases as the Fine-tune panel offers them.

    Attributes:
        labelled: cases with a gold or corrected label version (not validation or test).
        unlabelled: the other cases that are neither validation nor test.
        validation: cases of split "validation" with a label: never trained on, they give
            the validation Dice.
    """

    labelled: tuple[str, ...]
    unlabelled: tuple[str, ...]
    validation: tuple[str, ...]

    @classmethod
    def from_project(cls, project) -> "CasePools":
        labelled, unlabelled, validation = [], [], []
        for case in project.cases():
            has_label = project.latest_label(case.id, kinds=GOLD_KINDS) is not None
            if case.split == "test":
                continue
            if case.split == "validation":
                if has_label:
                    validation.append(case.id)
            elif has_label:
                labelled.append(case.id)
            else:
                unlabelled.append(case.id)
        return cls(tuple(labelled), tuple(unlabelled), tuple(validation))


@dataclass(frozen=True)
class FineTuneRequest:
    """What the Fine-tune panel asks for (``FineTuneRun.start`` consumes exactly this).

    Attributes:
        card: a shipped card's name (or a card file).
        method: a registered training method.
        method_params: overrides of the method's hyperparameters.
        labelled: case ids trained on with their newest gold or corrected label.
        unlabelled: case ids the semi-supervised methods learn from without labels.
        validation: case ids that give the validation Dice (never trained on).
        iterations: optimiser steps.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        validate_every: validation Dice every N steps (and after the last); None: the card's.
        start_from: the model version whose weights the run starts from (its parent); None
            starts from a fresh network.
        lr: the initial learning rate; None: the card's (its schedule then decays it).
    """

    card: str
    method: str
    method_params: dict[str, Any] = field(default_factory=dict)
    labelled: tuple[str, ...] = ()
    unlabelled: tuple[str, ...] = ()
    validation: tuple[str, ...] = ()
    iterations: int = 300
    device: str = "auto"
    validate_every: int | None = None
    start_from: int | None = None
    lr: float | None = None


def method_defaults(method: str, card, iterations: int | None = None) -> dict[str, Any]:
    """A method's hyperparameters as the form shows them: its defaults, its ramps fitted to a run
    of ``iterations`` steps (``Method.schedule_for``; a 6000-step ramp would never start in a
    300-step fine-tune), then the card's own values when the card names this method."""
    from ..engine.methods import get_method

    values = get_method(method).default_params()
    if iterations:
        values.update(get_method(method).schedule_for(iterations))
    if card.training.method == method:
        values.update(card.training.method_params)
    return values


def parse_param(text: str, default: Any, name: str = "value") -> Any:
    """A hyperparameter typed in the form, as the type of its default.

    Raises:
        ProjectError: the text is not a value of that type (the message names the parameter).
    """
    text = text.strip()
    try:
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return lowered in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, str):
            return text
        return json.loads(text)  # lists, dicts, None
    except (ValueError, json.JSONDecodeError):
        kind = "JSON" if not isinstance(default, (bool, int, float, str)) else type(default).__name__
        raise ProjectError(f"hyperparameter {name}: {text!r} is not a valid {kind}") from None


def format_param(value: Any) -> str:
    """How the form shows a hyperparameter's value (``parse_param`` reads it back)."""
    if isinstance(value, (bool, int, float, str)):
        return str(value)
    return json.dumps(value)


def build_train_config(project, request: FineTuneRequest, run_dir):
    """The ``TrainConfig`` of a request, its cases named by file and pinned by label version.

    Raises:
        SemisegError: no labelled case, an unknown card or method, a model to start from that
            was trained with another network, or hyperparameters the method refuses.
    """
    from ..engine.cards import load_card
    from ..engine.methods import get_method
    from ..engine.training import TrainConfig, data_spec_from_project

    if not request.labelled:
        raise ProjectError("no labelled case chosen: fine-tuning needs at least one case with a gold or "
                           "corrected label")
    card = load_card(request.card)
    method_class = get_method(request.method)
    method_class.make_params(request.method_params)  # refuses unknown or bad values here, not in the child
    if not request.unlabelled and method_class.uses_unlabeled:
        raise ProjectError(f"method {request.method!r} learns from unlabelled cases; choose at least one")
    unlabelled = request.unlabelled if method_class.uses_unlabeled else ()
    data = data_spec_from_project(project, labeled=request.labelled, unlabeled=unlabelled,
                                  validation=request.validation)
    overrides: dict[str, Any] = {"method": request.method, "method_params": dict(request.method_params),
                                 "iterations": int(request.iterations), "device": request.device, "data": data}
    if request.validate_every is not None:
        overrides["validate_every"] = int(request.validate_every)
    if request.lr is not None:
        overrides["lr"] = float(request.lr)
    if request.start_from is not None:
        parent = project.verified_model(request.start_from)
        if parent.card.get("network") != card.to_dict()["network"]:
            raise ProjectError(f"model {parent.id} was trained with card {parent.card.get('name')!r}, whose "
                               f"network differs from card {card.name!r}'s; choose that card or start from "
                               "a fresh network")
        overrides.update(init_from=str(parent.checkpoint_path), parent_model_id=parent.id)
    return TrainConfig.from_card(card, run_dir, **overrides)


class FineTuneRun:
    """One training run of the panel: a child process, its events, its project records.

    Attributes:
        project: the open project.
        config: the run's ``TrainConfig``.
        run_id: the project's run record.
        process: the ``TrainingProcess`` handle.
        status: "running", then "finished", "stopped" or "failed".
        model: the ``ModelVersion`` registered by ``conclude`` (None before, or on failure).
        error: the failure's message.
        iteration, iterations: steps done (as last reported) and planned.
    """

    def __init__(self, project, config, run_id: int, process):
        self.project, self.config, self.run_id, self.process = project, config, run_id, process
        self.status = "running"
        self.model = None
        self.error: str | None = None
        self.iteration = 0
        self.iterations = config.iterations
        self.validation_dice: float | None = None
        self._final_event: dict | None = None

    # -- starting -------------------------------------------------------------------------------

    @classmethod
    def start(cls, project, request: FineTuneRequest, env: dict[str, str] | None = None) -> "FineTuneRun":
        """Record a run in the project and start its child process.

        Raises:
            SemisegError: the request cannot make a valid run (nothing is started then).
        """
        config = build_train_config(project, request, "(run folder)")  # refuses a bad request first
        run_id = project.start_run("training", {"request": dataclasses.asdict(request)})
        config = dataclasses.replace(config, output_dir=str(_run_dir(project, run_id, request.method)))
        return cls._launch(project, config, run_id, env)

    @classmethod
    def _launch(cls, project, config, run_id: int, env: dict[str, str] | None) -> "FineTuneRun":
        from ..engine.training import run_training_subprocess

        try:
            process = run_training_subprocess(config, env=env)
        except BaseException as error:
            project.finish_run(run_id, "failed", {"error": str(error)})
            raise
        _lower_priority(process.pid)
        project.update_run(run_id, pid=process.pid, result={"run_dir": str(config.run_dir)})
        return cls(project, config, run_id, process)

    def resume(self, env: dict[str, str] | None = None) -> "FineTuneRun":
        """Continue this stopped run from its checkpoint, in a new run (folder and record).

        Raises:
            ProjectError: the run did not stop (finished or failed runs are not resumed).
        """
        if self.status != "stopped":
            raise ProjectError(f"run {self.run_id} is {self.status}; only a stopped run can be resumed")
        checkpoint = self._final_event.get("checkpoint") if self._final_event else None
        run_id = self.project.start_run("training", {"resumes_run": self.run_id, "checkpoint": checkpoint})
        config = dataclasses.replace(self.config, resume_from=checkpoint,
                                     output_dir=str(_run_dir(self.project, run_id, self.config.method)))
        run = self._launch(self.project, config, run_id, env)
        run.iteration = self.iteration
        return run

    # -- while it runs -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> list[dict]:
        """New events from the child (never blocks); notes the progress and the end.

        A child that exits without a final event (killed, crashed) counts as failed, with the
        end of its log as the message.
        """
        if not self.running:
            return []
        exited = not self.process.running
        events = self.process.poll_events()
        for event in events:
            kind = event.get("event")
            if kind in ("iteration", "validation", "start"):
                self.iteration = int(event.get("iteration") or self.iteration)
            if kind == "validation":
                self.validation_dice = event.get("dice")
            if kind in TERMINAL_EVENTS:
                self._final_event = event
        if self._final_event is None and exited:
            tail = self.process.log_tail(1500).strip().splitlines()
            self._final_event = {"event": "error", "message": f"the training process exited with code "
                                 f"{self.process.returncode}: " + (tail[-1] if tail else "no output")}
        return events

    @property
    def ended(self) -> bool:
        """True once the final event (finished, stopped, error) has been read."""
        return self._final_event is not None

    def stop(self) -> None:
        """Ask the child to stop after its current step; it keeps the weights (a checkpoint)."""
        if self.running:
            self.process.stop()

    def kill(self) -> None:
        """End the child now (the last periodic checkpoint stays)."""
        if self.process.running:
            self.process.kill()

    # -- the end -------------------------------------------------------------------------------------

    def conclude(self):
        """Record the end: register the model version and close the run record.

        A finished and validated run's model becomes the active one. A stopped run's is kept
        inactive (its status says "stopped"), and so is one no validation case measured:
        nothing shows it is better than the active model (``semiseg train`` does the same).
        Returns the ``ModelVersion``, or None when the run failed.
        """
        from ..engine.training import register_run_in_project

        if not self.running or self._final_event is None:
            return self.model
        kind = self._final_event["event"]
        if kind == "error":
            self.status, self.error = "failed", str(self._final_event.get("message"))
            self.project.finish_run(self.run_id, "failed", {"error": self.error})
            return None
        try:  # the model file and the final event are complete: no need to wait for the exit
            result = self.process.result()
            validated = result.metrics.get("validation_dice") is not None
            self.model = register_run_in_project(self.project, result, activate=kind == "finished" and validated)
        except SemisegError as error:
            self.status, self.error = "failed", str(error)
            self.project.finish_run(self.run_id, "failed", {"error": self.error})
            return None
        self.status = kind
        self.project.finish_run(self.run_id, "completed" if kind == "finished" else "stopped",
                                {"model_id": self.model.id, "iteration": result.iteration,
                                 "metrics": result.metrics, "run_dir": str(result.run_dir)})
        return self.model


def _run_dir(project, run_id: int, method: str):
    return project.path_for("runs", f"{run_id:04d}-{method}")


def _lower_priority(pid: int) -> None:
    """Nice the child now, before it starts its compute threads (they inherit its priority)."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, CHILD_NICENESS)
    except (AttributeError, OSError):  # not on this platform, or not permitted: run as is
        pass


__all__ = ["CasePools", "FineTuneRequest", "FineTuneRun", "TERMINAL_EVENTS", "build_train_config", "format_param",
           "method_defaults", "parse_param"]
