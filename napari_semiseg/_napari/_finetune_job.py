"""The Fine-tune panel's logic, free of napari and Qt: which cases, which recipe, the child run.

The panel builds a ``workflows.train.TrainRequest``, the same request ``semiseg train`` builds;
``FineTuneRun.start`` plans and records the run through the workflow and starts the trainer in
a child process; the panel then calls ``poll()`` from a timer, which never blocks. When the
child reports the end, ``conclude()`` closes the run through the workflow: a finished run's
model version is made active when a validation case measured it; a stopped run's weights are
kept as an inactive version, and ``resume()`` continues the run in its own folder from its
checkpoint, to the same number of iterations.
"""

from __future__ import annotations

import inspect
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ProjectError, SemisegError
from ..project import GOLD_KINDS
from ..workflows.cases import has_reference
from ..workflows.train import TrainRequest, close_run, fail_run, open_run, plan_resume, plan_training

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
        validation: cases of split "validation" with a reference (``workflows.cases``): never
            trained on, they give the validation Dice.
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
                if has_reference(project, case.id):
                    validation.append(case.id)
            elif has_label:
                labelled.append(case.id)
            else:
                unlabelled.append(case.id)
        return cls(tuple(labelled), tuple(unlabelled), tuple(validation))


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


def param_help(method: str) -> dict[str, str]:
    """Each hyperparameter's description, from the ``Attributes:`` of its method's ``Params``
    docstrings (the class's and its bases', so fields declared once in a base are found too).

    Lines like ``name: text`` or ``name_a, name_b: text`` start an entry; deeper-indented
    lines continue it. A field without a description is absent.
    """
    from ..engine.methods import get_method

    found: dict[str, str] = {}
    for cls in get_method(method).Params.__mro__:
        for name, text in _attributes(inspect.getdoc(cls) or "").items():
            found.setdefault(name, text)
    return found


def _attributes(doc: str) -> dict[str, str]:
    """``{name: description}`` of a Google-style docstring's ``Attributes:`` section."""
    entries: dict[str, str] = {}
    names: list[str] = []
    lines = doc.splitlines()
    start = next((i + 1 for i, line in enumerate(lines) if line.strip() == "Attributes:"), len(lines))
    for line in lines[start:]:
        entry = re.match(r"^ {4}(\w+(?:, \w+)*):\s*(.*)$", line)
        if entry:
            names = entry.group(1).split(", ")
            entries.update({name: entry.group(2) for name in names})
        elif line.startswith(" " * 8) and names:
            entries.update({name: f"{entries[name]} {line.strip()}" for name in names})
        elif line.strip() and not line.startswith(" "):
            break  # the next section
        else:
            names = [] if line.strip() else names
    return {name: text.replace("``", "").strip() for name, text in entries.items()}


class FineTuneRun:
    """One training run of the panel: a child process, its events, its project records.

    Attributes:
        project: the open project.
        plan: the workflow's ``TrainPlan`` (opened: its run record and folder).
        config: the run's ``TrainConfig``.
        run_id: the project's run record.
        process: the ``TrainingProcess`` handle.
        status: "running", then "finished", "stopped" or "failed".
        model: the ``ModelVersion`` registered by ``conclude`` (None before, or on failure).
        error: the failure's message.
        iteration, iterations: steps done (as last reported) and planned.
    """

    def __init__(self, project, plan, process, events_before: int = 0):
        self.project, self.plan, self.process = project, plan, process
        self.config, self.run_id = plan.config, plan.run_id
        self._events_before = events_before  # the earlier part's events, when resumed in the same folder
        self.status = "running"
        self.model = None
        self.error: str | None = None
        self.iteration = 0
        self.iterations = plan.config.iterations
        self.validation_dice: float | None = None
        self._final_event: dict | None = None

    # -- starting -------------------------------------------------------------------------------

    @classmethod
    def start(cls, project, request: TrainRequest, env: dict[str, str] | None = None) -> "FineTuneRun":
        """Record a run in the project and start its child process.

        Raises:
            SemisegError: the request cannot make a valid run (nothing is started then).
        """
        return cls._launch(project, open_run(project, plan_training(project, request)), env)

    @classmethod
    def _launch(cls, project, plan, env: dict[str, str] | None) -> "FineTuneRun":
        from ..engine.training import EVENTS_FILE, read_events, run_training_subprocess

        events_before = len(read_events(plan.run_dir / EVENTS_FILE))
        try:
            process = run_training_subprocess(plan.config, env=env)
        except BaseException as error:
            fail_run(project, plan, error)
            raise
        _lower_priority(process.pid)
        project.update_run(plan.run_id, pid=process.pid)
        return cls(project, plan, process, events_before)

    def resume(self, env: dict[str, str] | None = None) -> "FineTuneRun":
        """Continue this stopped run from its checkpoint: a new run record, the same run folder.

        Raises:
            ProjectError: the run did not stop (finished or failed runs are not resumed).
        """
        if self.status != "stopped":
            raise ProjectError(f"run {self.run_id} is {self.status}; only a stopped run can be resumed")
        plan = open_run(self.project, plan_resume(self.project, self.run_id))
        run = self._launch(self.project, plan, env)
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
        if self._events_before:  # the run folder's earlier part: already shown, already concluded
            skipped = min(self._events_before, len(events))
            events, self._events_before = events[skipped:], self._events_before - skipped
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
        """Record the end through the workflow: register the model version, close the run record.

        A finished run's version becomes active when a validation case measured it (nothing
        else shows it is better than the active model; ``semiseg train`` does the same); a
        stopped run's is kept inactive (its status says "stopped"). Returns the
        ``ModelVersion``, or None when the run failed.
        """
        if not self.running or self._final_event is None:
            return self.model
        kind = self._final_event["event"]
        if kind == "error":
            self.status, self.error = "failed", str(self._final_event.get("message"))
            fail_run(self.project, self.plan, self.error)
            return None
        try:  # the model file and the final event are complete: no need to wait for the exit
            outcome = close_run(self.project, self.plan, self.process.result(), register_stopped=True)
        except SemisegError as error:
            self.status, self.error = "failed", str(error)
            fail_run(self.project, self.plan, self.error)
            return None
        self.status, self.model = kind, outcome.model
        return self.model


def _lower_priority(pid: int) -> None:
    """Nice the child now, before it starts its compute threads (they inherit its priority)."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, CHILD_NICENESS)
    except (AttributeError, OSError):  # not on this platform, or not permitted: run as is
        pass


__all__ = ["CasePools", "FineTuneRun", "TERMINAL_EVENTS", "format_param", "parse_param"]
