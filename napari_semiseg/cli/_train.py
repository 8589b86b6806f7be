"""``semiseg train``: train a model version on a project's cases, in this process.

Which cases (decided here, printed, and recorded in the project's run record):

- labelled: cases (in catalogue order) that have a gold or corrected label version; the
  newest such version is trained on, pinned by its id. A later prediction version does not
  take a case out of the labelled set. ``--labelled N`` keeps the first N of them (the LA
  protocol: the first N of ``train.list``); the labels of the others are then ignored and
  those cases count as unlabelled.
- validation (never trained on, not even as unlabelled): ``--validation-cases`` if given,
  else the cases of split "validation", else the last K labelled cases are carved out, K =
  ``--validation-count`` or one in five (none with fewer than 5 labelled cases). A
  validation case's reference is its newest gold or corrected label, or the label its image
  file carries (an LA h5 file), so held-out LA cases can validate without becoming labelled.
- unlabelled: every other case, except those of split "test", which no training touches.

The run's folder is ``runs/train-<time>-<pid>/`` in the project (config, JSON-lines events,
checkpoints, model). Ctrl-C (SIGINT) or SIGTERM stops between two steps: the weights and a
checkpoint are kept, the exit status is 130, and ``--resume RUN_ID`` continues the run exactly
where it stopped. A finished run registers a new model version (card, config, parent, method,
validation metrics) with its best validated weights (``--keep last``: the last step's), makes
it active unless ``--no-activate``, and prints its id. A run without validation cases has no
Dice to say it is better than the active model, so it is registered but made active only with
``--activate-anyway``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import SemisegError
from ._common import add_labelled_count_argument, add_project_argument, open_project
from ..project import GOLD_KINDS
from ._engine_common import (StatusLine, check_cases, check_device, duration,
                             has_file_reference, non_negative_int, positive_int, require)
from ._methods import METHOD_NAMES, MethodNamesHelp

#: TrainConfig fields a ``--param`` may set; every other key is a method hyperparameter.
CONFIG_PARAMS = ("batch_labeled", "batch_unlabeled", "optimizer", "lr", "momentum", "weight_decay",
                 "schedule", "step_size", "gamma", "poly_horizon", "poly_power", "seed", "validate_every",
                 "checkpoint_every", "num_workers", "cache_volumes", "deterministic", "log_every",
                 "channels_last", "compile")
#: One labelled case in this many is carved out for validation when nothing else says which.
CARVE_ONE_IN = 5
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
                    "cases with a gold or corrected label; validation: --validation-cases, else split "
                    "'validation', else the last 1 in 5 labelled cases; unlabelled: the rest (split "
                    "'test' excluded). Ctrl-C stops and keeps the weights; --resume RUN_ID continues.",
        formatter_class=MethodNamesHelp)
    add_project_argument(parser)
    parser.add_argument("--card", metavar="NAME|PATH",
                        help="model card: a shipped name (cpu-small, la-vnet, pancreas-vnet) or a "
                             "YAML file")
    parser.add_argument("--method", metavar="NAME",
                        help=f"training method: {METHOD_NAMES} (default: the card's; "
                             "semiseg methods describes each)")
    parser.add_argument("--iterations", type=positive_int, metavar="N",
                        help="optimiser steps in total (default: the card's recipe; with --resume, "
                             "the new total)")
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
                        help="when carving: the last K labelled cases validate (0: no validation)")
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


# -- choosing the cases -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaseChoice:
    """The cases of a run and why the validation cases are those."""

    labeled: list[str]
    unlabeled: list[str]
    validation: list[str]
    validation_rule: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def choose_cases(project, labeled: int | None = None, validation_cases=None,
                 validation_count: int | None = None) -> CaseChoice:
    """Labelled, unlabelled and validation cases of a run (see the module docstring).

    Raises:
        SemisegError: unknown case, too few labelled cases, conflicting options.
    """
    splits = {case.id: case.split for case in project.cases()}
    usable = [case_id for case_id, split in splits.items() if split != "test"]
    validation, rule = _named_validation(project, splits, validation_cases, validation_count)
    candidates = [c for c in usable if c not in validation
                  and project.latest_label(c, kinds=GOLD_KINDS) is not None]
    if labeled is not None:
        require(labeled <= len(candidates), f"--labelled {labeled}: the project has only {len(candidates)} "
                                            "cases with a gold or corrected label (outside validation/test)")
        candidates = candidates[:labeled]
    if rule is None:
        count = len(candidates) // CARVE_ONE_IN if validation_count is None else validation_count
        require(count < len(candidates), f"--validation-count {count} leaves no labelled case to train on "
                                         f"({len(candidates)} labelled)")
        validation = candidates[len(candidates) - count:] if count else []
        candidates = candidates[:len(candidates) - count]
        rule = (f"carved: the last {count} of the labelled cases" if count else
                "none: no validation split, and too few labelled cases to carve one (or --validation-count 0)")
    require(bool(candidates), f"{project.root}: no case has a gold or corrected label to train on "
                              "(import labels, or save corrections first)")
    chosen = set(candidates) | set(validation)
    return CaseChoice(candidates, [c for c in usable if c not in chosen], validation, rule)


def _named_validation(project, splits, validation_cases, validation_count):
    if validation_cases:
        require(validation_count is None, "give --validation-cases or --validation-count, not both")
        names = check_cases(project, validation_cases)
        test = [c for c in names if splits[c] == "test"]
        if test:
            raise SemisegError(f"case {test[0]!r} is in the test split: it cannot validate")
        return names, "named with --validation-cases"
    in_split = [case_id for case_id, split in splits.items() if split == "validation"]
    if in_split and validation_count is None:
        return in_split, 'the cases of split "validation"'
    return [], None


def _validation_spec(project, case_id: str):
    from ..engine.training import CaseSpec

    version = project.latest_label(case_id, kinds=GOLD_KINDS)
    image = str(project.case(case_id).image_path)
    if version is not None:
        return CaseSpec(case_id, image, str(version.path), version.id)
    if has_file_reference(project, case_id):
        return CaseSpec(case_id, image, image)  # the h5 file carries the label
    raise SemisegError(f"validation case {case_id!r} has no gold or corrected label, and its image "
                       "file carries none")


def data_spec(project, choice: CaseChoice):
    """The run's cases by file (what the trainer, or a child process, reads)."""
    from ..engine.training import data_spec_from_project

    spec = data_spec_from_project(project, choice.labeled, choice.unlabeled, [])
    return dataclasses.replace(spec, validation=tuple(_validation_spec(project, c) for c in choice.validation))


# -- configuration ---------------------------------------------------------------------------------------

def parse_params(items: list[str]) -> tuple[dict, dict]:
    """``KEY=VALUE`` items → (recipe overrides, method hyperparameters)."""
    config, method = {}, {}
    for item in items:
        key, sep, text = item.partition("=")
        require(bool(sep and key), f"--param {item!r}: write KEY=VALUE")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        (config if key in CONFIG_PARAMS else method)[key.strip()] = value
    return config, method


def _model_to_start_from(project, text: str | None):
    if text is None:
        return None
    if text == "active":
        model = project.active_model()
        require(model is not None, f"{project.root}: --init-from active, but no model is active")
        return project.verified_model(model.id)
    require(text.isdigit(), f"--init-from {text!r}: give a model version id or 'active'")
    return project.verified_model(int(text))


def new_config(project, args: argparse.Namespace, run_dir: Path):
    """(TrainConfig, CaseChoice) of a new run, every choice checked before anything starts."""
    from ..engine.cards import card_from_dict, load_card
    from ..engine.methods import get_method
    from ..engine.training import TrainConfig

    parent = _model_to_start_from(project, args.init_from)
    if args.card is not None:
        card = load_card(args.card)
    else:
        require(parent is not None, "say which model card to train: --card NAME|PATH (e.g. cpu-small)")
        card = card_from_dict(parent.card, where=f"model version {parent.id}: card")
    method = args.method or card.training.method
    overrides, method_params = parse_params(args.param)
    base_params = dict(card.training.method_params) if method == card.training.method else {}
    # Ramps keep their share of a shorter (or longer) run than the published one; --param wins.
    fitted = get_method(method).schedule_for(args.iterations or card.training.iterations)
    method_params = {**fitted, **base_params, **method_params}
    get_method(method).make_params(method_params)  # a bad name or value stops here, before any work
    device = args.device or "auto"
    check_device(device)
    choice = choose_cases(project, args.labeled, args.validation_cases, args.validation_count)
    extra = {"iterations": args.iterations} if args.iterations else {}
    if args.precision:
        extra["precision"] = args.precision
    if parent is not None:
        extra.update(init_from=str(parent.checkpoint_path), parent_model_id=parent.id)
    config = TrainConfig.from_card(card, run_dir, method=method, method_params=method_params, device=device,
                                   data=data_spec(project, choice), **extra, **overrides)
    return config, choice


def resumed_config(project, args: argparse.Namespace):
    """(TrainConfig, previous run record or None) to continue a stopped or finished run."""
    from ..engine.training import CHECKPOINT_FILE, TrainConfig, load_checkpoint

    for given, flag in ((args.labeled, "--labelled"), (args.validation_cases, "--validation-cases"),
                        (args.validation_count, "--validation-count"), (args.param, "--param"),
                        (args.init_from, "--init-from")):
        require(not given, f"--resume continues a run with its own cases and settings: drop {flag}")
    checkpoint_path, previous = _checkpoint_to_resume(project, args.resume, CHECKPOINT_FILE)
    checkpoint = load_checkpoint(checkpoint_path)
    # The trainer recorded absolute paths: a copied project reads them in the copy, not the original.
    config = TrainConfig.from_dict(project.portable_run_config(checkpoint["config"]),
                                   where=f"{checkpoint_path}: config")
    if args.card is not None:
        require(Path(args.card).stem == config.card.name or args.card == config.card.name,
                f"--resume: the run was trained with card {config.card.name!r}, not {args.card!r}")
    if args.method is not None:
        require(args.method == config.method,
                f"--resume: the run was trained with method {config.method!r}, not {args.method!r}")
    done = int(checkpoint["iteration"])
    iterations = args.iterations or config.iterations
    require(iterations > done, f"{checkpoint_path}: the run is already at iteration {done} of {config.iterations}; "
                               f"give --iterations more than {done} to continue it")
    device = args.device or config.device
    check_device(device)
    config = dataclasses.replace(config, resume_from=str(checkpoint_path), iterations=iterations, device=device,
                                 output_dir=str(_resumed_run_folder(project, checkpoint_path)),
                                 precision=args.precision or config.precision)
    return config, previous


def _resumed_run_folder(project, checkpoint_path: Path) -> Path:
    """The run's own folder when it lies in this project; else a new one (the checkpoint is only read).

    A run never writes outside the project it runs in: not into another project, nor into the
    original of a copied one.
    """
    runs = project.root / "runs"
    return checkpoint_path.parent if checkpoint_path.is_relative_to(runs) else _run_folder(project)


def _checkpoint_to_resume(project, text: str, checkpoint_file: str):
    previous = None
    if text.isdigit():
        previous = project.run(int(text))
        require(previous.kind == "train", f"run {previous.id} is a {previous.kind!r} run, not a training run")
        path = Path(previous.config["run_dir"]) / checkpoint_file
    else:
        path = Path(text)
        path = path / checkpoint_file if path.is_dir() else path
    require(path.is_file(), f"{path}: no checkpoint to resume from")
    return path.resolve(), previous


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
        text = f"iteration {it}/{self.total}  {losses}  lr {e['lr']:.2e}  eta {duration(e['eta_s'] or 0.0)}"
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


def _run_folder(project) -> Path:
    """A new run folder's path (the trainer creates it when the run starts)."""
    return project.path_for("runs", f"train-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")


def run_train(args: argparse.Namespace) -> int:
    with open_project(args.project) as project:
        if args.resume:
            config, previous = resumed_config(project, args)
            choice = None if previous is None else previous.config.get("cases")
            record = {"resumed_run": None if previous is None else previous.id, "cases": choice}
        else:
            require(args.card is not None or args.init_from is not None,
                    "say which model card to train: --card NAME|PATH (e.g. cpu-small)")
            config, chosen = new_config(project, args, _run_folder(project))
            record = {"cases": chosen.to_dict()}
            _print_choice(chosen)
        run_id = project.start_run("train", {"run_dir": str(config.run_dir), "card": config.card.name,
                                             "method": config.method, "iterations": config.iterations,
                                             "device": config.device, "resume_from": config.resume_from,
                                             "parent_model_id": config.parent_model_id, **record})
        return _execute(project, run_id, config, args)


def _print_choice(choice: CaseChoice) -> None:
    status = StatusLine()
    status.line(f"labelled ({len(choice.labeled)}): {', '.join(choice.labeled)}")
    status.line(f"validation ({len(choice.validation)}): {', '.join(choice.validation) or '-'} "
                f"[{choice.validation_rule}]")
    status.line(f"unlabelled: {len(choice.unlabeled)} cases")


def _execute(project, run_id: int, config, args: argparse.Namespace) -> int:
    from ..engine.training import register_run_in_project, train

    started = time.perf_counter()
    progress = TrainProgress(StatusLine())
    try:
        result = train(config, progress=progress, handle_signals=True)
    except BaseException as exc:
        # What stopped the run is the message; a full disk may refuse this record as well.
        with contextlib.suppress(SemisegError):
            project.finish_run(run_id, "failed", {"error": str(exc), "error_type": type(exc).__name__})
        raise
    seconds = time.perf_counter() - started
    outcome = {"iteration": result.iteration, "checkpoint": str(result.checkpoint), "model": str(result.model),
               "metrics": result.metrics, "seconds": round(seconds, 1)}
    if result.status != "finished":
        project.finish_run(run_id, "stopped", outcome)
        print(f"stopped at iteration {result.iteration} of {config.iterations} after {duration(seconds)}; "
              f"weights kept in {result.run_dir}")
        print(f"continue with: semiseg train {project.root} --resume {run_id}")
        return INTERRUPTED
    validated = result.metrics.get("validation_dice") is not None
    activate = not args.no_activate and (validated or args.activate_anyway)
    model = register_run_in_project(project, result, activate=activate, name=args.name, keep=args.keep)
    project.finish_run(run_id, "completed", {**outcome, "model_id": model.id})
    dice = model.metrics.get("validation_dice")
    kept = model.metrics.get("weights_iteration")
    print(f"trained {progress.steps_done(result.iteration)} in {duration(seconds)} (run {run_id}, {result.run_dir})")
    print(f"registered model version {model.id}{' (active)' if model.active else ''}: card {config.card.name}, "
          f"method {model.method}, parent {model.parent_id if model.parent_id is not None else '-'}, "
          f"validation Dice {_percent(dice)}"
          + (f" (best weights, iteration {kept}; last {_percent(model.metrics.get('last_validation_dice'))})"
             if model.metrics.get("weights") == "best" else ""))
    if not validated and not model.active and not args.no_activate:
        print(f"not made active: no validation case measured it, so no Dice says it is better than the "
              f"active model (or good at all); check it (semiseg evaluate {project.root} --model {model.id}), then "
              f"semiseg models {project.root} --activate {model.id}, or train with --activate-anyway")
    return 0
