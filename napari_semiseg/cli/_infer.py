"""``semiseg infer``: run a model version over project cases or over volume files.

Project cases keep what the model said as versions: the hard label becomes a "prediction"
label version (its model recorded) and the class probabilities its soft label, whose row holds
the uncertainty summary (normalised entropy, confidence). Files get three NIfTI files beside
each other in ``--out``, on the source's own grid: ``<stem>_label.nii.gz`` (uint8 classes),
``<stem>_softlabel.nii.gz`` (float32 probability of foreground, i.e. 1 − p(background)) and
``<stem>_uncertainty.nii.gz`` (float32 normalised predictive entropy, 0 certain .. 1), plus
``<stem>_mcvariance.nii.gz`` with ``--mc N``. ``--out`` with project cases writes the same
files for them too.

A volume that cannot be predicted (a damaged or replaced image file, NaN voxels, a grid the card
cannot take) is reported as "CASE: problem" and the others are still done; the exit status is
then 1 and the last line names the volumes that failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SemisegError
from ..workflows.export import ResultNames, write_prediction
from ..workflows.predict import prediction_card
from ._common import add_project_argument, format_table, open_project, writable_folder
from ._engine_common import (StatusLine, add_prediction_arguments, check_cases, check_device, duration,
                             load_project_model, non_negative_int, require, volume_stem)


def register(subparsers) -> None:
    """Add ``semiseg infer`` to ``semiseg``'s sub-parsers."""
    parser = subparsers.add_parser(
        "infer", help="predict labels, soft labels and uncertainty with a model version",
        description="Predict with a model version (the active one by default). Project cases "
                    "get a 'prediction' label version and its soft label (probabilities, with "
                    "their uncertainty summary); --file volumes get _label, _softlabel "
                    "(foreground probability) and _uncertainty (normalised entropy) NIfTI files "
                    "in --out, on their own grid. Progress goes to stderr, one line per case.")
    add_project_argument(parser)
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--case", dest="cases", nargs="+", action="extend", metavar="ID",
                       help="the project cases to predict")
    which.add_argument("--all", action="store_true", help="every case of the project")
    which.add_argument("--file", dest="files", nargs="+", action="extend", metavar="PATH",
                       help="volume files (or DICOM folders) outside the project; needs --out")
    parser.add_argument("--out", metavar="DIR",
                        help="folder for the output files (created if needed)")
    add_prediction_arguments(parser)
    parser.add_argument("--overlap", type=float, metavar="F",
                        help="window overlap (0 ≤ F < 1) instead of the card's; 0.625 is within 0.5 Dice "
                             "points of --paper-grid at a sixth of its cost (benchmarks/RESULTS.md)")
    parser.add_argument("--mc", type=non_negative_int, default=0, metavar="N",
                        help="N Monte-Carlo dropout samples: probabilities averaged over them and "
                             "their variance written with --out (default 0: one plain pass)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")
    parser.set_defaults(handler=run_infer)


@dataclass(frozen=True)
class Outcome:
    """One predicted volume, for the summary table."""

    name: str
    label_version: int | None
    soft_label: int | None
    foreground_voxels: int
    mean_uncertainty: float
    seconds: float
    files: tuple[Path, ...] = ()


def run_infer(args: argparse.Namespace) -> int:
    require(bool(args.cases or args.all or args.files),
            "say what to predict: --case ID ..., --all, or --file PATH ... (with --out DIR)")
    require(not args.files or args.out is not None,
            "--file writes its results as files: give the folder with --out DIR")
    require(args.overlap is None or not args.paper_grid, "--overlap and --paper-grid choose the grid: give one")
    require(args.overlap is None or 0.0 <= args.overlap < 1.0, f"--overlap {args.overlap}: must be in [0, 1)")
    out = None if args.out is None else writable_folder(args.out, "--out")
    with open_project(args.project) as project:
        case_ids = project.case_ids() if args.all else check_cases(project, args.cases or ())
        for path in args.files or ():
            require(Path(path).exists(), f"{path}: no such file or folder")
        check_device(args.device)
        net, card, model = load_project_model(project, args.model)
        card = prediction_card(card, args.paper_grid)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        status = StatusLine()
        status.line(f"model version {model.id} ({model.name}, {model.method}) on "
                    f"{len(case_ids) or len(args.files)} volume(s)")
        if args.files:
            outcomes, failed = _each_volume(
                args.files, status,
                lambda i, path: _predict_file(Path(path), net, card, args, out, status, i, len(args.files)))
        else:
            outcomes, failed = _each_volume(
                case_ids, status,
                lambda i, case_id: _predict_case(project, case_id, model.id, net, card, args, out, status, i,
                                                 len(case_ids)))
    print_outcomes(outcomes, failed, args.json, with_versions=not args.files)
    if failed:
        total = len(outcomes) + len(failed)
        print(f"semiseg: {len(failed)} of {total} volumes could not be predicted: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def _each_volume(names: Sequence[str], status: StatusLine, predict: Callable[[int, str], Outcome]
                 ) -> tuple[list[Outcome], list[str]]:
    """``predict(index, name)`` for every volume; one that fails is reported and the others go on.

    Returns:
        The outcomes, and the names of the volumes that failed.

    Raises:
        Errors about the whole run (device, MC dropout) and errors that are not ``SemisegError``.
    """
    from ..engine.inference import Cancelled, DeviceError, McDropoutError

    outcomes, failed = [], []
    for index, name in enumerate(names, 1):
        try:
            outcomes.append(predict(index, name))
        except (Cancelled, DeviceError, McDropoutError):
            raise
        except SemisegError as error:
            status.line(f"semiseg: {_failure(name, error)}")
            failed.append(str(name))
    return outcomes, failed


def _failure(name: str, error: SemisegError) -> str:
    """"NAME: problem", without naming a file twice when the problem starts with its path."""
    message = str(error)
    return message if message.startswith(f"{Path(name)}: ") else f"{name}: {message}"


def _predict(net, card, volume, args, status: StatusLine, prefix: str):
    from ..workflows.predict import LoadedModel, PredictOptions, predict

    def progress(report) -> None:
        status.update(f"{prefix}: window {report.windows_done}/{report.windows_total}")

    options = PredictOptions(device=args.device, mc_samples=args.mc, largest_component=args.lcc,
                             overlap=args.overlap)
    return predict(LoadedModel(net, card, None), volume, options, progress)


def _details(prediction, args) -> dict:
    return {"grid": prediction.grid, "device": prediction.device, "seconds": round(prediction.seconds, 3),
            "mc_samples": args.mc, "largest_component": args.lcc, "paper_grid": args.paper_grid}


def _predict_case(project, case_id: str, model_id: int, net, card, args, out: Path | None,
                  status: StatusLine, index: int, total: int) -> Outcome:
    from ..workflows.predict import save_prediction

    prefix = f"[{index}/{total}] {case_id}"
    prediction = _predict(net, card, project.load_image(case_id), args, status, prefix)
    version, soft = save_prediction(project, case_id, prediction, model_id,
                                    note=f"semiseg infer with model version {model_id}",
                                    details=_details(prediction, args))
    files = write_prediction(out, ResultNames.suffixed(case_id), prediction) if out is not None else ()
    outcome = Outcome(case_id, version.id, soft.id, version.foreground_voxels,
                      soft.summary.mean_entropy, prediction.seconds, files)
    status.line(f"{prefix}: label version {version.id}, soft label {soft.id}, "
                f"{outcome.foreground_voxels} foreground voxels, mean uncertainty "
                f"{outcome.mean_uncertainty:.4f} ({duration(prediction.seconds)} on {prediction.device})")
    return outcome


def _predict_file(path: Path, net, card, args, out: Path, status: StatusLine, index: int,
                  total: int) -> Outcome:
    from ..io import read_volume

    stem = volume_stem(path)
    prefix = f"[{index}/{total}] {stem}"
    prediction = _predict(net, card, read_volume(path), args, status, prefix)
    files = write_prediction(out, ResultNames.suffixed(stem), prediction)
    outcome = Outcome(stem, None, None, int((prediction.labels > 0).sum()),
                      float(prediction.uncertainty.mean()), prediction.seconds, files)
    status.line(f"{prefix}: wrote {', '.join(f.name for f in files)} "
                f"({duration(prediction.seconds)} on {prediction.device})")
    return outcome


def print_outcomes(outcomes: list[Outcome], failed: list[str], as_json: bool, with_versions: bool) -> None:
    """The summary on stdout: a table, or with ``--json`` every outcome and the failed names."""
    if as_json:
        print(json.dumps({"predicted": [_outcome_dict(o, with_versions) for o in outcomes], "failed": failed},
                         indent=1))
    elif outcomes:
        print(_summary(outcomes, with_versions))


def _outcome_dict(outcome: Outcome, with_versions: bool) -> dict:
    record = {"case" if with_versions else "input": outcome.name}
    if with_versions:
        record.update(label_version=outcome.label_version, soft_label=outcome.soft_label)
    return {**record, "files": [str(f) for f in outcome.files], "foreground_voxels": outcome.foreground_voxels,
            "mean_uncertainty": outcome.mean_uncertainty, "seconds": round(outcome.seconds, 3)}


def _summary(outcomes: list[Outcome], with_versions: bool) -> str:
    headers = ["case" if with_versions else "file"]
    headers += ["label version", "soft label"] if with_versions else []
    headers += ["foreground voxels", "mean uncertainty", "time"]
    rows = []
    for o in outcomes:
        row = [o.name] + ([o.label_version, o.soft_label] if with_versions else [])
        rows.append(row + [o.foreground_voxels, f"{o.mean_uncertainty:.4f}", duration(o.seconds)])
    numeric = tuple(range(1, len(headers)))
    return format_table(headers, rows, right_aligned=numeric)
