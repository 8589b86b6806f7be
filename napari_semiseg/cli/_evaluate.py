"""``semiseg evaluate``: Dice, Jaccard, 95HD and ASD (voxels and mm) per case, their mean, a CSV.

A model version on project cases with a reference (the newest gold or corrected label, else
the label an LA h5 file carries; by default the cases it was not trained on; the mean is
recorded with the model version and shown by ``semiseg models``), or ``--pred DIR --ref DIR``:
two folders of label files matched by case name. The scoring is ``workflows.evaluate``'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..workflows.evaluate import EvaluateRequest, evaluate_folders, evaluate_model
from ._common import add_project_argument, open_project, writable_file
from ._engine_common import StatusLine, add_prediction_arguments, check_cases, check_device, require


def register(subparsers) -> None:
    """Add ``semiseg evaluate`` to ``semiseg``'s sub-parsers."""
    parser = subparsers.add_parser(
        "evaluate", help="score a model on cases with a reference, or a folder of predictions",
        description="Per-case Dice, Jaccard, 95HD and ASD (voxels, and mm) and their mean, as a "
                    "table and optionally a CSV. Either a model version (the active one by "
                    "default) on project cases with a reference (gold or corrected label, or the "
                    "label an LA h5 file carries), or --pred DIR --ref DIR.")
    add_project_argument(parser)
    parser.add_argument("--cases", nargs="+", action="extend", metavar="ID",
                        help="the cases to score (default: every case with a reference that the "
                             "model was not trained on)")
    parser.add_argument("--csv", metavar="FILE", help="write the per-case table (and means) as CSV")
    add_prediction_arguments(parser)
    parser.add_argument("--stored", action="store_true",
                        help="score this model's stored prediction versions (from semiseg infer) "
                             "where a case has one, instead of predicting again")
    parser.add_argument("--pred", metavar="DIR", help="folder of predicted label files (with --ref)")
    parser.add_argument("--ref", metavar="DIR", help="folder of reference label files (with --pred)")
    parser.set_defaults(handler=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    csv_path = None if args.csv is None else writable_file(args.csv, "--csv")
    if args.pred is not None or args.ref is not None:
        require(args.pred is not None and args.ref is not None, "--pred DIR and --ref DIR go together")
        require(args.project is None and not args.cases and args.model is None,
                "--pred/--ref compare two folders: give no PROJECT, --cases or --model with them")
        table = evaluate_folders(Path(args.pred), Path(args.ref), StatusLine().line)
    else:
        table = _evaluate_model(args, StatusLine())
    print(table.format_table())
    if csv_path is not None:
        print(f"wrote {table.to_csv(csv_path)}")
    return 0


def _evaluate_model(args: argparse.Namespace, status: StatusLine):
    with open_project(args.project) as project:
        cases = check_cases(project, args.cases) if args.cases else None
        check_device(args.device)
        request = EvaluateRequest(args.model, cases, args.device, args.lcc, args.paper_grid, args.stored)
        return evaluate_model(project, request, report=status.line, update=status.update)
