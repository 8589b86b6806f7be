"""``semiseg atso``: ATSO (or its self-learning / STSO baselines) on a project, in this process.

Cases: the labelled set S is every case with a gold or corrected label (outside the
validation and test splits); the reference set R is every case of split "unlabelled" without
one (``--max-reference N`` keeps the first N, for quick runs); cases of split "validation" give
each model a validation Dice and are never trained on.

What it leaves in the project: one model version per model (M0, the students of every
generation, the final model; parent = the model whose weights it started from; only the final
one is activated), a "pseudo" label version (and soft label) per reference case per
generation, recording the model that made it, a run record of kind "atso", and
``runs/atso-<run id>/report.json`` with the pseudo-label Dice per generation, model and case.

Ctrl-C (SIGINT) or SIGTERM stops between two training steps or window batches: what was
made so far is kept, the report says where it stopped, and the exit status is 130.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import signal
import threading

from ._common import add_project_argument, open_project, writable_file
from ._engine_common import StatusLine, check_device, duration, positive_int, require
from ._progress import EtaProgress

INTERRUPTED = 130
#: TrainConfig fields a ``--param`` may set for every training of the run.
TRAIN_PARAMS = ("batch_labeled", "optimizer", "lr", "momentum", "weight_decay", "schedule", "step_size", "gamma",
                "poly_horizon", "poly_power", "seed", "validate_every", "checkpoint_every", "num_workers",
                "cache_volumes", "deterministic", "log_every")


def register(subparsers) -> None:
    """Add ``semiseg atso`` to ``semiseg``'s sub-parsers."""
    parser = subparsers.add_parser(
        "atso", help="ATSO (asynchronous teacher-student optimisation) or its baselines on a project",
        description="Train M0 on the labelled cases, split the unlabelled cases into two fixed folds, and for "
                    "each generation pseudo-label each fold with the model fine-tuned on the other one, then "
                    "fine-tune two students re-initialised from M0; finally train a model on everything and "
                    "activate it. --mode self-learning / stso run the paper's baselines. Prints the "
                    "pseudo-label Dice per generation and model (cases whose image file carries a held-out "
                    "label, or that have a gold label).")
    add_project_argument(parser)
    parser.add_argument("--card", metavar="NAME|PATH",
                        help="model card: a shipped name (cpu-small, la-vnet, ...) or a YAML file "
                             "(default with --m0: that model's card)")
    parser.add_argument("--mode", choices=("atso", "self-learning", "stso"), default="atso",
                        help="atso (default), self-learning (continual) or stso (re-initialised, no split)")
    parser.add_argument("--generations", type=positive_int, default=3, metavar="T",
                        help="teacher-student generations (default 3)")
    parser.add_argument("--iterations-m0", type=positive_int, metavar="N",
                        help="training steps of M0 (default: the card's recipe)")
    parser.add_argument("--iterations-gen", type=positive_int, metavar="N",
                        help="fine-tuning steps of each student (default: the card's recipe)")
    parser.add_argument("--iterations-final", type=positive_int, metavar="N",
                        help="fine-tuning steps of ATSO's final model (default: as --iterations-gen)")
    parser.add_argument("--folds-seed", type=int, default=0, metavar="S",
                        help="seed of the split of the unlabelled cases into two folds (default 0)")
    parser.add_argument("--labelled-share", type=_share, default=0.5, metavar="F",
                        help="expected share of labelled patches in a fine-tuning batch, 0 < F < 1, or 'none' "
                             "for the plain union of labelled and pseudo-labelled cases (default 0.5)")
    parser.add_argument("--batch", type=positive_int, metavar="N",
                        help="patches per fine-tuning step (default: the card's labelled + unlabelled halves)")
    parser.add_argument("--m0", type=int, metavar="ID",
                        help="use model version ID as M0 instead of training one")
    parser.add_argument("--final-init", choices=("m0", "scratch"), default="m0",
                        help="where ATSO's final model starts (default m0)")
    parser.add_argument("--max-reference", type=positive_int, metavar="N",
                        help="use only the first N unlabelled cases as the reference set")
    parser.add_argument("--overlap", type=float, metavar="F",
                        help="sliding-window overlap of the pseudo-labelling instead of the card's")
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help=f"a training setting for every model ({', '.join(TRAIN_PARAMS)}); VALUE is read "
                             "as JSON when it can be; repeatable")
    parser.add_argument("--report", metavar="PATH", help="also copy the JSON report to PATH")
    parser.add_argument("--per-case", action="store_true",
                        help="also print the pseudo-label Dice of every reference case per generation")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(handler=run_atso_command)


def _share(text: str) -> float | None:
    if text.lower() == "none":
        return None
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive) or 'none', got {text}")
    return value


def parse_train_params(items: list[str]) -> dict:
    """``KEY=VALUE`` items → TrainConfig overrides (a key outside ``TRAIN_PARAMS`` is a user error)."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        require(bool(sep and key), f"--param {item!r}: write KEY=VALUE")
        require(key in TRAIN_PARAMS, f"--param {key}: not a training setting; use one of {', '.join(TRAIN_PARAMS)}")
        try:
            overrides[key] = json.loads(text)
        except json.JSONDecodeError:
            overrides[key] = text
    return overrides


def atso_config(project, args: argparse.Namespace):
    """The ``AtsoConfig`` the arguments ask for (every choice checked before any work)."""
    from ..engine.atso import AtsoConfig
    from ..engine.cards import card_from_dict, load_card

    if args.card is not None:
        card = load_card(args.card)
    else:
        require(args.m0 is not None, "say which model card to train: --card NAME|PATH (e.g. cpu-small)")
        model = project.model(args.m0)
        card = card_from_dict(model.card, where=f"model version {model.id}: card")
    check_device(args.device)
    config = AtsoConfig(card, mode=args.mode, generations=args.generations, iterations_m0=args.iterations_m0,
                        iterations_generation=args.iterations_gen, iterations_final=args.iterations_final,
                        folds_seed=args.folds_seed, labelled_share=args.labelled_share,
                        batch_size_generation=args.batch, m0_model_id=args.m0, final_init=args.final_init,
                        reference_limit=args.max_reference, device=args.device, overlap=args.overlap,
                        train_overrides=parse_train_params(args.param))
    config.check()
    return config


class AtsoPrinter:
    """Turns ``AtsoProgress`` reports into stderr lines: every step's start and end, every stored
    pseudo-label with its Dice, about ten iteration lines per training, and the whole run's share
    done with its elapsed time and ETA (``EtaProgress``: the redrawn line on a terminal, a line
    every 5 % in a log). Every training and labelling pass weighs the same in that share."""

    def __init__(self, status: StatusLine, verb: str = "atso", lines_per_training: int = 10):
        self.status, self.lines = status, lines_per_training
        self.eta = EtaProgress(verb, status)
        self.total = 1

    def __call__(self, report) -> None:
        event = report.event
        if report.step == "pseudo-label":
            if type(event).__name__ == "PseudoLabelCase":
                self._line(report, report.message)
            else:
                window = f"window {event.windows_done}/{event.windows_total}"
                self.eta.report(report.fraction, f"{report.message}: {window}")
        elif report.step == "train":
            self._on_train(report, event)
        elif report.step == "done":
            self.status.line(report.message)  # no ETA: "done" also ends a stopped run

    def _line(self, report, text: str) -> None:
        """``text`` on a line that stays; in a log, the ETA line carries it when one is due."""
        if not self.eta.report(report.fraction, text):
            self.status.line(text)

    def _on_train(self, report, event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            self.total = event["iterations"]
        if kind != "iteration":
            self._line(report, report.message)
            return
        text = f"{report.message}  loss {event['losses'].get('total', float('nan')):.4f}"
        done = event["iteration"]
        if not self.status.tty and (done == self.total or done % max(1, self.total // self.lines) == 0):
            self._line(report, text)
        else:
            self.eta.report(report.fraction, text)


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT / SIGTERM set a flag the run polls (main thread only), instead of killing it mid-write."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested.is_set
        return

    def handler(signum, frame):
        requested.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested.is_set
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def run_atso_command(args: argparse.Namespace) -> int:
    from ..engine.atso import run_atso

    if args.report:
        writable_file(args.report, "--report")  # before hours of work, not after
    with open_project(args.project) as project:
        config = atso_config(project, args)
        status = StatusLine()
        progress = None if args.quiet else AtsoPrinter(status, verb=config.mode)
        with _stop_on_signals() as should_stop:
            result = run_atso(project, config, progress=progress, should_stop=should_stop)
        report = result.report
        print(f"{config.mode} run {report.run_id}: {result.status} in {duration(report.seconds)} "
              f"({len(report.cases['labelled'])} labelled, {len(report.cases['reference'])} reference cases, "
              f"{config.generations} generation{'s' if config.generations != 1 else ''})")
        if report.folds is not None:
            print(f"folds (seed {report.folds['seed']}): R1 = {', '.join(report.folds['R1'])}; "
                  f"R2 = {', '.join(report.folds['R2'])}")
        print()
        print(report.models_table())
        print()
        print(report.dice_table())
        if args.per_case:
            print()
            print(report.per_case_table())
        print()
        print(f"report: {result.report_path}")
        if args.report:
            shutil.copyfile(result.report_path, args.report)
            print(f"report copied to {args.report}")
        if result.status != "completed":
            print(f"stopped; models and pseudo-labels made so far are kept (run {report.run_id})")
            return INTERRUPTED
        final = project.model(result.final_model_id)
        print(f"final model version {final.id} ({final.name}) is active")
    return 0


__all__ = ["AtsoPrinter", "TRAIN_PARAMS", "atso_config", "parse_train_params", "register", "run_atso_command"]
