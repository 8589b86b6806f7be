"""``semiseg train``: train a model version on a project's cases, in this process.

The command line becomes a ``workflows.train.TrainRequest``, the same request the Fine-tune
panel builds; the workflow chooses the cases and the recipe, records the run and registers the
model version (see ``napari_semiseg.workflows.train`` and ``workflows.cases``). In short:

- labelled: cases with a gold or corrected label version (newest one, pinned by its id),
  outside splits "validation" and "test"; ``--labelled N`` keeps the first N of them (the LA
  protocol) and the others count as unlabelled.
- validation (never trained on): ``--validation-cases`` if given, else the last K labelled
  cases with ``--validation-count K``, else the cases of split "validation" that have a
  reference (a gold or corrected label, or the label an LA h5 file carries). Nothing is carved
  out unless asked.
- unlabelled: every other case outside splits "validation" and "test".
- recipe: the card's, then the method's published one (``semiseg methods``) when the card is
  not that method's own and the run starts from a fresh network (a fine-tune, ``--init-from``,
  keeps the card's for every method), then ``--iterations``/``--param``/``--precision``; ramps
  keep their share of a shortened run. What was set on the command line is recorded with the model version.

The run's folder is ``runs/train-<time>-<pid>/`` in the project (config, JSON-lines events,
checkpoints, model). Ctrl-C (SIGINT) or SIGTERM stops between two steps: the weights and a
checkpoint are kept, the exit status is 130, and ``--resume RUN_ID`` continues the run in its
own folder. A finished run registers a new model version with its best validated weights
(``--keep last``: the last step's), makes it active unless ``--no-activate``, and prints its
id. A run without validation cases has no Dice to say it is better than the active model, so
it is registered but made active only with ``--activate-anyway``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from ..workflows.train import (PENDING_FOLDER, SETTINGS, TrainRequest, plan_resume, plan_training, run_folder,
                               run_in_process)
from ._common import add_labelled_count_argument, add_project_argument, open_project
from ._engine_common import StatusLine, duration, non_negative_int, positive_int, require
from ._methods import METHOD_NAMES, MethodNamesHelp

#: TrainConfig fields a ``--param`` may set; every other key is a method hyperparameter.
CONFIG_PARAMS = SETTINGS
INTERRUPTED = 130
#: How the progress line names a logged value whose key alone reads like a score: the "dice"
#: a method logs is its Dice loss, not the Dice. Only the display changes, not the events.
LOSS_DISPLAY_NAMES = {"dice": "dice loss", "kd_soft_dice": "kd soft-dice loss"}


def register(subparsers) -> None:
    """Add ``semiseg train`` to ``semiseg``'s sub-parsers."""
    parser = subparsers.add_parser(
        "train", help="train a model version on the project's labelled and unlabelled cases",
        description="Train (or resume) a run on the project's cases and register the result as a "
                    "new model version, made active when a validation case measured it. Labelled: "
                    "cases with a gold or corrected label; validation: --validation-cases, else the last "
                    "K labelled cases with --validation-count K, else split 'validation'; unlabelled: the "
                    "rest (split 'test' excluded). The recipe: the card's, then the method's published "
                    "one (from a fresh network; a fine-tune keeps the card's), then your settings. Ctrl-C "
                    "stops and keeps the weights; --resume RUN_ID continues.",
        formatter_class=MethodNamesHelp)
    add_project_argument(parser)
    parser.add_argument("--card", metavar="NAME|PATH",
                        help="model card: a shipped name (cpu-small, la-vnet, pancreas-vnet) or a "
                             "YAML file")
    parser.add_argument("--method", metavar="NAME",
                        help=f"training method: {METHOD_NAMES} (default: the card's; "
                             "semiseg methods describes each)")
    parser.add_argument("--iterations", type=positive_int, metavar="N",
                        help="optimiser steps in total (default: the recipe's: the method's published "
                             "run, or the card's when the card is the method's own or the run a fine-tune; "
                             "with --resume, the new total)")
    add_labelled_count_argument(parser, type=positive_int,
                                help="use only the first N labelled cases (the others count as unlabelled)")
    parser.add_argument("--device", default=None,
                        help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default auto; "
                             "with --resume, the run's)")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=None,
                        help="auto (bf16 autocast on CUDA, fp32 on the CPU), bf16 or fp32 (default: the "
                             "card's recipe; with --resume, the run's)")
    parser.add_argument("--resume", metavar="RUN|CHECKPOINT",
                        help="continue a stopped (or finished) run: its run id, its folder, or a "
                             "checkpoint.pt")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a method hyperparameter, or one of the recipe's settings "
                             f"({', '.join(CONFIG_PARAMS)}); VALUE is read as JSON when it can be, "
                             "else as text; repeatable")
    parser.add_argument("--validation-cases", nargs="+", action="extend", metavar="ID",
                        help="the validation cases (never trained on)")
    parser.add_argument("--validation-count", type=non_negative_int, metavar="K",
                        help="validate on the last K labelled cases instead of split 'validation' (0: no validation)")
    parser.add_argument("--init-from", metavar="MODEL_ID|active",
                        help="start from a model version's weights (fine-tuning; recorded as the "
                             "parent)")
    parser.add_argument("--name", help="name of the new model version (default: the card's)")
    activation = parser.add_mutually_exclusive_group()
    activation.add_argument("--no-activate", action="store_true",
                            help="register the new model version without making it active")
    activation.add_argument("--activate-anyway", action="store_true",
                            help="make the new model version active even when no validation case "
                                 "measured it (by default such a version is only registered)")
    parser.add_argument("--keep", choices=("best", "last"), default="best",
                        help="weights the model version keeps: those of the best validation Dice "
                             "(default, when the run validated) or the last step's")
    parser.set_defaults(handler=run_train)

# -- the request ---------------------------------------------------------------------------------------------

def parse_params(items: list[str]) -> tuple[dict, dict]:
    """``KEY=VALUE`` items → (recipe settings, method hyperparameters)."""
    config, method = {}, {}
    for item in items:
        key, sep, text = item.partition("=")
        require(bool(sep and key), f"--param {item!r}: write KEY=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        (config if key.strip() in SETTINGS else method)[key.strip()] = value
    return config, method


def train_request(args: argparse.Namespace) -> TrainRequest:
    """The ``TrainRequest`` the command line describes (the Fine-tune panel builds the same one)."""
    settings, method_params = parse_params(args.param)
    if args.precision:
        settings["precision"] = args.precision
    activate = "never" if args.no_activate else "anyway" if args.activate_anyway else "validated"
    return TrainRequest(card=args.card, method=args.method, iterations=args.iterations, settings=settings,
                        method_params=method_params, labelled_count=args.labeled,
                        validation=tuple(args.validation_cases) if args.validation_cases else None,
                        validation_count=args.validation_count, device=args.device or "auto",
                        start_from=args.init_from, name=args.name, keep=args.keep, activate=activate)


def resumed_config(project, args: argparse.Namespace):
    """(TrainConfig, previous run record or None) to continue a stopped or finished run."""
    plan = _resume_plan(project, args)
    previous = plan.record.get("resumed_run")
    return plan.config, None if previous is None else project.run(previous)


def _resume_plan(project, args: argparse.Namespace):
    for given, flag in ((args.labeled, "--labelled"), (args.validation_cases, "--validation-cases"),
                        (args.validation_count, "--validation-count"), (args.param, "--param"),
                        (args.init_from, "--init-from")):
        require(not given, f"--resume continues a run with its own cases and settings: drop {flag}")
    activate = "never" if args.no_activate else "anyway" if args.activate_anyway else "validated"
    plan = plan_resume(project, args.resume, iterations=args.iterations, device=args.device,
                       precision=args.precision, card=args.card, method=args.method, keep=args.keep,
                       activate=activate, name=args.name)
    if plan.config.output_dir == PENDING_FOLDER:
        plan = dataclasses.replace(plan, config=dataclasses.replace(plan.config, output_dir=str(run_folder(project))))
    return plan


# -- running -----------------------------------------------------------------------------------------------

class TrainProgress:
    """Turns the trainer's events into compact stderr lines."""

    def __init__(self, status: StatusLine, lines: int = 20):
        self.status, self.lines = status, lines
        self.first: int | None = None
        self.total = 0

    def __call__(self, event: dict) -> None:
        handler = getattr(self, f"_on_{event['event']}", None)
        if handler is not None:
            handler(event)

    def steps_done(self, last_iteration: int) -> str:
        """What this process trained: a resumed run counts its own steps, not the run's total."""
        first = self.first if self.first is not None else 1
        steps = last_iteration - first + 1
        if first == 1:
            return f"{steps} iterations"
        return f"{steps} iterations (steps {first}-{last_iteration} of the run, resumed at {first - 1})"

    def _on_start(self, e: dict) -> None:
        self.total, self.first = e["iterations"], e["iteration"] + 1
        resumed = f", resumed at step {e['iteration']}" if e.get("resumed_from") else ""
        self.status.line(f"training {e['method']} with card {e['card']} on {e['device']}: {e['n_labeled']} "
                         f"labelled, {e['n_unlabeled']} unlabelled, {e['n_validation']} validation cases; "
                         f"{e['iterations']} iterations{resumed}")

    def _on_iteration(self, e: dict) -> None:
        it = e["iteration"]
        losses = "  ".join(f"{LOSS_DISPLAY_NAMES.get(name, name)} {_number(value)}"
                           for name, value in e["losses"].items())
        clock = f"elapsed {duration(e.get('elapsed_s') or 0.0)}, ETA {duration(e['eta_s'] or 0.0)}"
        text = f"iteration {it}/{self.total}  {losses}  lr {e['lr']:.2e}  {clock}"
        every = max(1, self.total // self.lines)
        if self.status.tty:
            self.status.update(text)
            if it == self.total:
                self.status.line(text)
        elif it == self.first or it % every == 0 or it == self.total:
            self.status.line(text)

    def _on_validation(self, e: dict) -> None:
        branches = "".join(f"; {name} branch {_percent(value)}" for name, value in (e.get("branch_dice") or {}).items())
        self.status.line(f"validation at iteration {e['iteration']}: Dice {_percent(e['dice'])} "
                         f"(best {_percent(e['best_dice'])} at {e['best_iteration']}){branches}")

    def _on_stopped(self, e: dict) -> None:
        self.status.line(f"stopped at iteration {e['iteration']} ({e['reason']}); weights and checkpoint kept")

    def _on_error(self, e: dict) -> None:
        self.status.line(f"training failed: {e['message']}")


def _number(value) -> str:
    return "nan" if value is None else f"{value:.4f}"


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"

def run_train(args: argparse.Namespace) -> int:
    with open_project(args.project) as project:
        if args.resume:
            plan = _resume_plan(project, args)
        else:
            require(args.card is not None or args.init_from is not None,
                    "say which model card to train: --card NAME|PATH (e.g. cpu-small)")
            plan = plan_training(project, train_request(args))
            _print_choice(plan.choice)
        return _execute(project, plan)


def _print_choice(choice) -> None:
    status = StatusLine()
    status.line(f"labelled ({len(choice.labeled)}): {', '.join(choice.labeled)}")
    status.line(f"validation ({len(choice.validation)}): {', '.join(choice.validation) or '-'} "
                f"[{choice.validation_rule}]")
    status.line(f"unlabelled: {len(choice.unlabeled)} cases")


def _execute(project, plan) -> int:
    started = time.perf_counter()
    progress = TrainProgress(StatusLine())
    plan, outcome = run_in_process(project, plan, progress=progress, handle_signals=True)
    seconds = time.perf_counter() - started
    config, result = plan.config, outcome.result
    if outcome.status != "finished":
        print(f"stopped at iteration {result.iteration} of {config.iterations} after {duration(seconds)}; "
              f"weights kept in {result.run_dir}")
        print(f"continue with: semiseg train {project.root} --resume {plan.run_id}")
        return INTERRUPTED
    model = outcome.model
    dice = model.metrics.get("validation_dice")
    print(f"trained {progress.steps_done(result.iteration)} in {duration(seconds)} (run {plan.run_id}, "
          f"{result.run_dir})")
    print(f"registered model version {model.id}{' (active)' if model.active else ''}: card {config.card.name}, "
          f"method {model.method}, parent {model.parent_id if model.parent_id is not None else '-'}, "
          f"validation Dice {_percent(dice)}"
          + (f" (best weights, iteration {model.metrics.get('weights_iteration')}; last "
             f"{_percent(model.metrics.get('last_validation_dice'))})" if model.metrics.get("weights") == "best" else ""))
    if not outcome.validated and not model.active and plan.activate != "never":
        print(f"not made active: no validation case measured it, so no Dice says it is better than the "
              f"active model (or good at all); check it (semiseg evaluate {project.root} --model {model.id}), then "
              f"semiseg models {project.root} --activate {model.id}, or train with --activate-anyway")
    return 0
