"""Training a model version: one request, one recipe rule, one run record, for every face.

``semiseg train`` and the Fine-tune panel both build a ``TrainRequest`` and hand it here:

- ``plan_training`` picks the cases (``cases``), the card (or the parent model's) and the
  effective recipe: the card's ``training`` section, then the method's published recipe
  (``Method.recommended_training()``: optimiser, learning rate, schedule, iterations) unless the
  card is that method's own, then the user's settings; the user wins. Ramps counted in steps
  keep their share of the run (``Method.schedule_for``), which changes them only when the run
  is shorter (or longer) than the published one. A **fine-tune** (a run that starts from a
  trained model) takes the card's recipe whatever the method, and drops the consistency-weight
  ramps (its unsupervised terms weigh fully from the first step): the published recipes are
  from-scratch recipes (UA-MT's 6000 SGD steps at 0.01 from random weights), and what
  ``benchmarks/finetune_gain`` measured gaining over more supervised steps is every method on
  the card's recipe, its control too (``benchmarks/RESULTS.md`` §8, §11).
- ``open_run`` gives the run its folder ``runs/train-<time>-<pid>`` and records the run (kind
  ``"train"``, the folder in its configuration); ``plan_resume`` continues a stopped run in its own folder
  (one folder, one event log, one curve per run) when that folder lies in the project, else in
  a new one (a run never writes outside the project it runs in).
- ``close_run`` registers the model version, with the user's overrides recorded in its
  metrics (``user_overrides``), and makes it active only when a validation case measured it,
  unless the request says otherwise (``activate``).

The trainer runs in this process (``run_in_process``, the CLI) or in a child process the
caller starts from ``plan.config`` (the Fine-tune panel); both end in ``close_run``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ProjectError, SemisegError
from .cases import CaseChoice, choose_cases, data_spec
from .models import card_name, card_of, trained_with_network

#: The kind of a training run's record.
TRAIN_RUN_KIND = "train"
#: Kinds training runs were recorded under (the Fine-tune panel of earlier releases wrote "training").
TRAIN_RUN_KINDS = (TRAIN_RUN_KIND, "training")
#: ``TrainConfig`` fields a user may set besides the iterations (the ``--param`` keys of the recipe).
SETTINGS = ("batch_labeled", "batch_unlabeled", "optimizer", "lr", "momentum", "weight_decay", "schedule",
            "step_size", "gamma", "poly_horizon", "poly_power", "seed", "validate_every", "checkpoint_every",
            "num_workers", "cache_volumes", "deterministic", "log_every", "channels_last", "compile", "precision")
#: When a finished run's model version becomes the active one.
ACTIVATION = ("validated", "anyway", "never")
#: The output folder of a planned run until ``open_run`` gives it its own.
PENDING_FOLDER = "(run folder)"


@dataclass(frozen=True)
class TrainRequest:
    """What a user asks of a training run, in either face.

    Attributes:
        card: a shipped card's name or a card file; None: the card of ``start_from``.
        method: a registered method; None: the card's.
        iterations: optimiser steps; None: the recipe's.
        settings: ``TrainConfig`` recipe fields the user set (``SETTINGS``: lr, optimizer, ...).
        method_params: the method's hyperparameters the user set.
        labelled, unlabelled, validation: case ids; None: the project's (see ``cases``).
        labelled_count: keep the first N labelled cases (the others count as unlabelled).
        validation_count: validate on the last K labelled cases instead of split "validation".
        device: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
        start_from: a model version id (or "active") whose weights the run starts from; it
            becomes the new version's parent. None: a fresh network.
        name: the new model version's name (default: the card's).
        keep: "best" (the best validated weights) or "last" (the last step's).
        activate: "validated" (only when a validation case measured it), "anyway" or "never".
    """

    card: str | None = None
    method: str | None = None
    iterations: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    method_params: dict[str, Any] = field(default_factory=dict)
    labelled: tuple[str, ...] | None = None
    labelled_count: int | None = None
    unlabelled: tuple[str, ...] | None = None
    validation: tuple[str, ...] | None = None
    validation_count: int | None = None
    device: str = "auto"
    start_from: int | str | None = None
    name: str | None = None
    keep: str = "best"
    activate: str = "validated"

    def overrides(self) -> dict[str, Any]:
        """What the user set over the card and the method's recipe (recorded with the model version)."""
        chosen = dict(self.settings)
        if self.iterations is not None:
            chosen["iterations"] = self.iterations
        if self.method_params:
            chosen["method_params"] = dict(self.method_params)
        return chosen

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Recipe:
    """The effective recipe of a card and a method, before the user's settings.

    Attributes:
        method: the method.
        settings: every recipe field of ``TrainConfig`` (optimizer, lr, schedule, iterations, ...).
        method_params: the hyperparameters that differ from the method's defaults: the ramps
            fitted to the run's length, then the card's own values when the card names this method.
        source: "card" (the card names this method, or the method publishes no recipe),
            "method" (the method's published recipe over the card's) or "fine-tune" (a run from
            a trained model: the card's recipe, whatever the method).
    """

    method: str
    settings: dict[str, Any]
    method_params: dict[str, Any]
    source: str

    @property
    def iterations(self) -> int:
        return int(self.settings["iterations"])

    def form_params(self) -> dict[str, Any]:
        """Every hyperparameter of the method with its effective value (what a form shows)."""
        from ..engine.methods import get_method
        return {**get_method(self.method).default_params(), **self.method_params}


def effective_recipe(card, method: str | None = None, iterations: int | None = None, *,
                     warm_start: bool = False) -> Recipe:
    """The recipe a run of ``method`` with ``card`` gets (see the module docstring); ``warm_start``:
    the run starts from a trained model, so it is a fine-tune on the card's recipe with the
    consistency-weight ramps dropped (``Method.schedule_for``; docs/METHODS.md §8).

    Raises:
        SemisegError: an unknown method.
    """
    from ..engine.methods import get_method

    method = method or card.training.method
    method_class = get_method(method)
    own = method == card.training.method
    settings = {f.name: getattr(card.training, f.name) for f in dataclasses.fields(card.training)
                if f.name not in ("method", "method_params")}
    published = {} if own or warm_start else dict(method_class.recommended_training())
    settings.update(published)
    if iterations is not None:
        settings["iterations"] = int(iterations)
    params = dict(method_class.schedule_for(settings["iterations"], warm_start=warm_start))
    if own:
        params.update(card.training.method_params)
    source = "fine-tune" if warm_start else "method" if published else "card"
    return Recipe(method, settings, params, source)


@dataclass(frozen=True)
class TrainPlan:
    """A run ready to start: its configuration and what its record keeps.

    Attributes:
        config: the ``TrainConfig`` (``output_dir`` is set by ``open_run``).
        record: the run record's configuration (request, cases, recipe source, resumed run).
        overrides: the user's settings over the recipe (recorded with the model version).
        choice: the cases (None for a resumed run: they are the run's own).
        keep, activate, name: how ``close_run`` registers the model version.
        run_id: the run record, once ``open_run`` made it.
    """

    config: Any
    record: dict[str, Any]
    overrides: dict[str, Any]
    choice: CaseChoice | None = None
    keep: str = "best"
    activate: str = "validated"
    name: str | None = None
    run_id: int | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.config.output_dir)


def plan_training(project, request: TrainRequest) -> TrainPlan:
    """The plan of a new run, every choice checked before anything starts.

    Raises:
        SemisegError: an unknown card, method, case or model; a setting or hyperparameter the
            run cannot take; no labelled case; a parent trained with another network.
    """
    from ..engine.cards import load_card
    from ..engine.methods import get_method
    from ..engine.training import TrainConfig

    _check_choices(request)
    parent = _model_to_start_from(project, request.start_from)
    if request.card is not None:
        card = load_card(request.card)
    else:
        _require(parent is not None, "say which model card to train (e.g. cpu-small)")
        card = card_of(parent)
    recipe = effective_recipe(card, request.method, request.iterations, warm_start=parent is not None)
    method_class = get_method(recipe.method)
    method_params = {**recipe.method_params, **request.method_params}
    method_class.make_params(method_params)  # a bad name or value stops here, before any work
    check_device(request.device)
    extra: dict[str, Any] = {}
    if parent is not None:
        _require(trained_with_network(parent, card),
                 f"model {parent.id} was trained with card {card_name(parent)!r}, whose network differs "
                 f"from card {card.name!r}'s; choose that card or start from a fresh network")
        extra.update(init_from=str(parent.checkpoint_path), parent_model_id=parent.id)
    choice = choose_cases(project, request, method_class.uses_unlabeled)
    _require(bool(choice.unlabeled) or not method_class.uses_unlabeled,
             f"method {recipe.method!r} learns from unlabelled cases; choose at least one")
    config = TrainConfig.from_card(card, PENDING_FOLDER, **{**recipe.settings, **request.settings},
                                   method=recipe.method, method_params=method_params, device=request.device,
                                   data=data_spec(project, choice), **extra)
    record = {"request": request.to_dict(), "cases": choice.to_dict(), "recipe": recipe.source,
              "overrides": request.overrides()}
    return TrainPlan(config, record, request.overrides(), choice, request.keep, request.activate, request.name)


def _check_choices(request: TrainRequest) -> None:
    unknown = sorted(set(request.settings) - set(SETTINGS))
    _require(not unknown, f"unknown training setting(s) {unknown}; the settings are {', '.join(SETTINGS)}")
    _require(request.keep in ("best", "last"), f"keep must be 'best' or 'last', got {request.keep!r}")
    _require(request.activate in ACTIVATION, f"activate must be one of {list(ACTIVATION)}, got {request.activate!r}")


def _model_to_start_from(project, start_from):
    if start_from is None:
        return None
    if start_from == "active":
        model = project.active_model()
        _require(model is not None, f"{project.root}: no model is active to start from")
        return project.verified_model(model.id)
    _require(str(start_from).isdigit(), f"start from {start_from!r}: give a model version id or 'active'")
    return project.verified_model(int(start_from))


def check_device(device: str) -> None:
    """Raise a user error now for a device torch cannot use (before any work starts)."""
    from ..engine.inference import resolve_device
    resolve_device(device)


# -- resuming ---------------------------------------------------------------------------------------------

def plan_resume(project, target: int | str, *, iterations: int | None = None, device: str | None = None,
                precision: str | None = None, card: str | None = None, method: str | None = None,
                keep: str = "best", activate: str = "validated", name: str | None = None) -> TrainPlan:
    """The plan that continues a stopped (or finished) run from its checkpoint.

    Args:
        target: a run id, a run folder or a ``checkpoint.pt``.
        iterations: the new total (default: the run's); device, precision: default the run's.
        card, method: when given, checked against the run's (a resume cannot change them).

    Raises:
        SemisegError: no such run or checkpoint, a run that is not a training run, a card or
            method that is not the run's, or a run already at ``iterations``.
    """
    from ..engine.training import CHECKPOINT_FILE, TrainConfig, load_checkpoint

    checkpoint_path, previous = _checkpoint_to_resume(project, target, CHECKPOINT_FILE)
    checkpoint = load_checkpoint(checkpoint_path)
    # The trainer recorded absolute paths: a copied project reads them in the copy, not the original.
    config = TrainConfig.from_dict(project.portable_run_config(checkpoint["config"]),
                                   where=f"{checkpoint_path}: config")
    _require(card is None or Path(card).stem == config.card.name or card == config.card.name,
             f"resume: the run was trained with card {config.card.name!r}, not {card!r}")
    _require(method is None or method == config.method,
             f"resume: the run was trained with method {config.method!r}, not {method!r}")
    done = int(checkpoint["iteration"])
    total = iterations or config.iterations
    _require(total > done, f"{checkpoint_path}: the run is already at iteration {done} of {config.iterations}; "
                           f"give more than {done} iterations to continue it")
    device = device or config.device
    check_device(device)
    own = checkpoint_path.parent if checkpoint_path.is_relative_to(project.root / "runs") else PENDING_FOLDER
    config = config.replace(resume_from=str(checkpoint_path), iterations=total, device=device,
                            output_dir=str(own), precision=precision or config.precision)
    earlier = {} if previous is None else dict(previous.config.get("overrides") or {})
    overrides = {**earlier, **({"iterations": iterations} if iterations else {})}
    record = {"resumed_run": None if previous is None else previous.id,
              "cases": None if previous is None else previous.config.get("cases"), "overrides": overrides}
    return TrainPlan(config, record, overrides, None, keep, activate, name)


def _checkpoint_to_resume(project, target, checkpoint_file: str):
    previous = None
    if isinstance(target, int) or str(target).isdigit():
        previous = project.run(int(target))
        _require(previous.kind in TRAIN_RUN_KINDS,
                 f"run {previous.id} is a {previous.kind!r} run, not a training run")
        folder = run_folder_of(previous)
        _require(folder is not None, f"run {previous.id}: its record names no run folder")
        path = Path(folder) / checkpoint_file
    else:
        path = Path(target)
        path = path / checkpoint_file if path.is_dir() else path
    _require(path.is_file(), f"{path}: no checkpoint to resume from")
    return path.resolve(), previous


def run_folder_of(record) -> str | None:
    """The folder of a training run's record (the Fine-tune panel of earlier releases kept it in the result)."""
    return (record.config or {}).get("run_dir") or (record.result or {}).get("run_dir")


# -- the run record ----------------------------------------------------------------------------------------

def open_run(project, plan: TrainPlan) -> TrainPlan:
    """Give the run its folder and record it (kind "train"); returns the plan with both."""
    folder = Path(plan.config.output_dir) if plan.config.output_dir != PENDING_FOLDER else run_folder(project)
    config = dataclasses.replace(plan.config, output_dir=str(folder))
    record = {**plan.record, "run_dir": str(folder), "card": config.card.name, "method": config.method,
              "iterations": config.iterations, "device": config.device, "resume_from": config.resume_from,
              "parent_model_id": config.parent_model_id}
    run_id = project.start_run(TRAIN_RUN_KIND, record)
    return dataclasses.replace(plan, config=config, run_id=run_id)


def run_folder(project) -> Path:
    """A new run's folder, named before its record exists (which then names it): when and which process.

    The trainer creates it when the run starts; a name already taken (two starts within a
    second in one process) gets a number.
    """
    base = f"train-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder, number = project.path_for("runs", base), 1
    while folder.exists():
        number += 1
        folder = project.path_for("runs", f"{base}-{number}")
    return folder


@dataclass(frozen=True)
class TrainOutcome:
    """How a run ended: "finished" or "stopped", and the model version it registered (or None)."""

    status: str
    iteration: int
    model: Any
    validated: bool
    result: Any


def close_run(project, plan: TrainPlan, result, *, register_stopped: bool = False) -> TrainOutcome:
    """Record the end of a run: register its model version and close the run record.

    A finished run's version is made active per ``plan.activate``: "validated" (the default)
    only when a validation case measured it, since nothing else says it is better than the
    active model. A stopped run's weights are registered (inactive) only when
    ``register_stopped``; its checkpoint stays for ``plan_resume`` either way.
    """
    from ..engine.training import register_run_in_project

    outcome = {"run_dir": str(result.run_dir), "iteration": result.iteration, "checkpoint": str(result.checkpoint),
               "model": str(result.model), "metrics": result.metrics}
    validated = result.metrics.get("validation_dice") is not None
    finished = result.status == "finished"
    if not finished and not register_stopped:
        project.finish_run(plan.run_id, "stopped", outcome)
        return TrainOutcome("stopped", result.iteration, None, validated, result)
    activate = finished and (plan.activate == "anyway" or (plan.activate == "validated" and validated))
    recorded = dataclasses.replace(result, metrics={**result.metrics, "user_overrides": plan.overrides})
    model = register_run_in_project(project, recorded, activate=activate, name=plan.name, keep=plan.keep)
    project.finish_run(plan.run_id, "completed" if finished else "stopped", {**outcome, "model_id": model.id})
    return TrainOutcome(result.status, result.iteration, model, validated, result)


def fail_run(project, plan: TrainPlan, error: BaseException | str) -> None:
    """Record that a run failed (what stopped it is the message)."""
    details = {"error": str(error), "run_dir": str(plan.run_dir)}
    if isinstance(error, BaseException):
        details["error_type"] = type(error).__name__
    project.finish_run(plan.run_id, "failed", details)


def run_in_process(project, plan: TrainPlan, progress: Callable[[dict], None] | None = None,
                   handle_signals: bool = False) -> tuple[TrainPlan, TrainOutcome]:
    """Open, train in this process, close: the whole run (``semiseg train``)."""
    import contextlib

    from ..engine.training import train

    plan = open_run(project, plan)
    try:
        result = train(plan.config, progress=progress, handle_signals=handle_signals)
    except BaseException as exc:
        with contextlib.suppress(SemisegError):  # a full disk may refuse this record as well
            fail_run(project, plan, exc)
        raise
    return plan, close_run(project, plan, result)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ProjectError(message)


__all__ = ["ACTIVATION", "PENDING_FOLDER", "Recipe", "SETTINGS", "TRAIN_RUN_KIND", "TRAIN_RUN_KINDS", "TrainOutcome",
           "TrainPlan", "TrainRequest", "close_run", "effective_recipe", "fail_run", "open_run", "plan_resume",
           "plan_training", "run_folder", "run_folder_of", "run_in_process"]
