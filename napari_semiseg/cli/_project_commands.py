"""``semiseg init``, ``semiseg import``, ``semiseg cases``, ``semiseg check``: the project store."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from ..errors import SemisegError
from ..project import LABEL_KINDS, SPLITS, CaseSummary, Project, import_folder, import_la
from ._common import (add_labelled_count_argument, add_project_argument, format_table, open_project,
                      progress_printer, project_folder)

#: Summary-line name of cases that have no label version yet.
NO_LABEL = "unlabelled"


def register(subparsers) -> None:
    """Add the project commands to ``semiseg``'s sub-parsers."""
    _register_init(subparsers)
    _register_import(subparsers)
    _register_cases(subparsers)
    _register_check(subparsers)


# -- init -------------------------------------------------------------------------------------

def _register_init(subparsers) -> None:
    parser = subparsers.add_parser("init", help="create a new, empty project folder",
                                   description="Create a project: a folder with its catalogue.")
    add_project_argument(parser)
    parser.set_defaults(handler=run_init)


def run_init(args: argparse.Namespace) -> int:
    with Project.create(project_folder(args.project)) as project:
        print(f"created project {project.root}")
    return 0


# -- import -----------------------------------------------------------------------------------

def _register_import(subparsers) -> None:
    parser = subparsers.add_parser(
        "import", help="add volumes (a folder, or the LA benchmark layout) to a project",
        description="Add cases to a project. Either a FOLDER of volumes (labels matched by name "
                    "from --labels: X.nii.gz or X_seg/_label/_labels/_mask/_gt.nii.gz), or the LA "
                    "layout with --la-h5 ROOT --list FILE --labelled N. Re-running adds only what "
                    "is missing. Every voxel is checked first: a truncated, unreadable or NaN/inf "
                    "file is refused and listed with its reason, the others are imported, and the "
                    "exit status is 1.")
    add_project_argument(parser)
    parser.add_argument("folder", nargs="?", metavar="FOLDER",
                        help="folder of image files (NIfTI, NRRD, MetaImage, h5, DICOM folders)")
    parser.add_argument("--labels", metavar="DIR", help="folder of label files matched by name")
    parser.add_argument("--modality", default="MR", help="MR, CT, ... (default MR)")
    parser.add_argument("--pattern", default="*", help="glob selecting image names (default *)")
    parser.add_argument("--copy", action="store_true",
                        help="copy the images into the project instead of referencing them")
    parser.add_argument("--la-h5", metavar="ROOT",
                        help="LA benchmark folder: ROOT/<ID>/mri_norm2.h5 (or ROOT/2018LA_Seg_"
                             "Training Set/<ID>/...)")
    parser.add_argument("--list", metavar="FILE",
                        help="with --la-h5: the case list in benchmark order "
                             "(default ROOT/train.list)")
    add_labelled_count_argument(parser, type=int,
                                help="with --la-h5: the first N listed cases are labelled (gold)")
    parser.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    project_arg, folder = _import_positionals(args)
    with open_project(project_arg) as project:
        if args.la_h5:
            report = import_la(project, args.la_h5, _la_list(args), args.labeled,
                               modality=args.modality, progress=progress_printer("importing"))
        else:
            report = import_folder(project, folder, args.labels, modality=args.modality,
                                   pattern=args.pattern, copy=args.copy,
                                   progress=progress_printer("importing"))
        print(f"{project.root}: {report.summary()}")
        for path in report.unmatched_labels:
            print(f"  label file matched no image: {path}")
        if report.refused:
            print("refused (nothing of these cases was added):")
        for refused in report.refused:
            print(f"  {refused.message}")
    return 1 if report.refused else 0


def _import_positionals(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(PROJECT, FOLDER) from one or two positionals; PROJECT may come from the environment."""
    if args.la_h5:
        if args.folder is not None:
            raise SemisegError("give either a FOLDER to import or --la-h5 ROOT, not both")
        if args.labeled is None:
            raise SemisegError("--la-h5 needs --labelled N (how many of the first listed cases "
                               "are labelled)")
        return args.project, None
    if args.list is not None or args.labeled is not None:
        raise SemisegError("--list and --labelled go with --la-h5 ROOT")
    if args.folder is None:
        if args.project is None:
            raise SemisegError("nothing to import: give PROJECT FOLDER, or PROJECT --la-h5 ROOT "
                               "--list FILE --labelled N")
        # One positional: the folder to import into $SEMISEG_PROJECT.
        return None, args.project
    return args.project, args.folder


def _la_list(args: argparse.Namespace) -> Path:
    if args.list is not None:
        return Path(args.list)
    default = Path(args.la_h5) / "train.list"
    if not default.is_file():
        raise SemisegError(f"{default}: no case list there; give one with --list FILE")
    return default


# -- cases ------------------------------------------------------------------------------------

def _register_cases(subparsers) -> None:
    parser = subparsers.add_parser("cases", help="list a project's cases and their labels",
                                   description="List the cases: id, shape (z,y,x), spacing (mm), "
                                               "modality, split, latest label kind, versions.")
    add_project_argument(parser)
    parser.add_argument("--split", choices=SPLITS, help="only the cases of this split")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run_cases)


def run_cases(args: argparse.Namespace) -> int:
    with open_project(args.project) as project:
        cases = project.cases()
    if args.split:
        cases = [case for case in cases if case.split == args.split]
    if args.json:
        print(json.dumps([_case_dict(case) for case in cases], indent=1))
        return 0
    if cases:
        print(cases_table(cases))
    print(cases_summary(cases))
    return 0


def cases_table(cases: list[CaseSummary]) -> str:
    """The ``semiseg cases`` table."""
    headers = ("id", "shape z,y,x", "spacing mm", "modality", "split", "latest label", "versions")
    rows = [(case.id, "x".join(str(n) for n in case.shape), _spacing_text(case.spacing),
             case.modality, case.split, case.latest_kind or "-", case.n_versions)
            for case in cases]
    return format_table(headers, rows, right_aligned=(6,))


def cases_summary(cases: list[CaseSummary]) -> str:
    """"80 cases: 8 gold, 72 unlabelled" — cases counted by the kind of their latest label."""
    counts = Counter(case.latest_kind or NO_LABEL for case in cases)
    order = [*LABEL_KINDS, NO_LABEL]
    parts = [f"{counts[kind]} {kind}" for kind in order if counts[kind]]
    noun = "case" if len(cases) == 1 else "cases"
    return f"{len(cases)} {noun}" + (f": {', '.join(parts)}" if parts else "")


def _spacing_text(spacing: tuple[float, float, float]) -> str:
    if max(spacing) - min(spacing) <= 1e-6 * max(spacing):
        return f"{spacing[0]:g}"
    return "x".join(f"{s:g}" for s in spacing)


def _case_dict(case: CaseSummary) -> dict:
    return {"id": case.id, "shape": list(case.shape), "spacing": list(case.spacing),
            "modality": case.modality, "split": case.split, "latest_kind": case.latest_kind,
            "n_versions": case.n_versions}


# -- check ------------------------------------------------------------------------------------

def _register_check(subparsers) -> None:
    parser = subparsers.add_parser(
        "check", help="verify a project's catalogue and files; optionally put leftovers aside",
        description="Check the catalogue (SQLite integrity, foreign keys) and that every label "
                    "and model file exists with its recorded SHA-256. Exit status 1 when a "
                    "problem is found, 2 when the catalogue is empty, not ours or damaged.")
    add_project_argument(parser)
    parser.add_argument("--collect-garbage", action="store_true",
                        help="also move files no catalogue row names (left by a killed process) "
                             "to the project's trash/ folder; nothing is deleted. Refused when the "
                             "catalogue is damaged, or names nothing while the project holds files")
    parser.add_argument("--empty-trash", action="store_true",
                        help="delete for good what --collect-garbage moved to trash/")
    parser.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    with open_project(args.project) as project:
        if args.collect_garbage:
            moved = project.collect_garbage()
            print(f"moved {_files(len(moved))} no catalogue row names to {project.trash_folder}")
        if args.empty_trash:
            print(f"deleted {_files(len(project.empty_trash()))} from the trash")
        problems = project.check()
        in_trash = len(project.trash_files())
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found")
    if in_trash:  # not a problem: what garbage collection put aside, kept until asked
        print(f"the trash holds {_files(in_trash)}; `semiseg check {project.root} --empty-trash` "
              "deletes them")
    return 1 if problems else 0


def _files(count: int) -> str:
    return f"{count} file{'s' if count != 1 else ''}"
