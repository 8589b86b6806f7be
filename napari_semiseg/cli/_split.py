"""``semiseg split PROJECT CASE... --to train|validation|test``: move cases between splits.

"train" puts a case with a gold or corrected label into "labelled" and any other into
"unlabelled" (``workflows.splits``); the project's own names are accepted as well. Every case id
is checked before anything moves: an unknown one is a user error (exit 2) naming it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ._common import PROJECT_ENV, add_project_argument, open_project


def register(subparsers) -> None:
    """Add ``semiseg split`` to ``semiseg``'s sub-parsers."""
    from ..workflows.splits import SPLIT_CHOICES

    parser = subparsers.add_parser(
        "split", help="move cases to the train, validation or test split",
        description="Move cases to another split. --to train: 'labelled' for a case with a gold or "
                    "corrected label, else 'unlabelled' (training uses both); validation cases are "
                    "never trained on and measure each run; test cases are used by no training. "
                    f"With ${PROJECT_ENV} set, PROJECT may be left out.")
    add_project_argument(parser)
    parser.add_argument("cases", nargs="+", metavar="CASE", help="the case ids")
    parser.add_argument("--to", required=True, choices=SPLIT_CHOICES, metavar="SPLIT",
                        help=f"one of {', '.join(SPLIT_CHOICES)}")
    parser.add_argument("--json", action="store_true", help="print the moves as JSON")
    parser.set_defaults(handler=run_split)


def run_split(args: argparse.Namespace) -> int:
    from ..workflows.splits import move_cases

    project_arg, case_ids = _positionals(args)
    with open_project(project_arg) as project:
        changes = move_cases(project, case_ids, args.to)
    if args.json:
        print(json.dumps([{"case": c.case_id, "from": c.before, "to": c.after, "note": c.note or None}
                          for c in changes], indent=1))
        return 0
    for change in changes:
        note = f" ({change.note})" if change.note else ""
        print(f"{change.case_id}: {change.before} -> {change.after}{note}")
    return 0


def _positionals(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """(PROJECT, cases): with ``$SEMISEG_PROJECT`` set, a first name that is no folder is a case."""
    if args.project is not None and os.environ.get(PROJECT_ENV) and not Path(args.project).is_dir():
        return None, [args.project, *args.cases]
    return args.project, list(args.cases)
