"""``semiseg export PROJECT --case C -o FOLDER``: a case's label, soft label and uncertainty as NIfTI.

Files are named after the case (``<case>_label.nii.gz``, ``<case>_softlabel.nii.gz``,
``<case>_uncertainty.nii.gz``) and lie on the case image's grid (``workflows.export``).
``--kind all`` (the default) writes what the case has: a gold label has no soft label, which is
said on stderr and is no failure; asking for ``--kind soft`` or ``uncertainty`` where none exists
is (exit 1), as is a case whose stored files cannot be read (the other cases are still exported).
``--format dicom-seg`` writes the label of a case read from DICOM as ``<case>_label.dcm``, a
DICOM-SEG referencing its source series (the soft label and uncertainty stay NIfTI); a case not
read from DICOM is a user error (exit 2) before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import SemisegError
from ._common import add_project_argument, format_table, open_project, writable_folder
from ._engine_common import require

KIND_CHOICES = ("label", "soft", "uncertainty", "all")
#: ``--kind`` in ``workflows.export``'s words (its kinds are also the files' name endings).
_EXPORT_KIND = {"label": "label", "soft": "softlabel", "uncertainty": "uncertainty"}


def register(subparsers) -> None:
    """Add ``semiseg export`` to ``semiseg``'s sub-parsers."""
    parser = subparsers.add_parser(
        "export", help="write a case's label, soft label and uncertainty as NIfTI files",
        description="Export a case's newest label version (or --version ID), its soft label (float "
                    "foreground probability) and its uncertainty (normalised entropy) as NIfTI files "
                    "named after the case, on the case image's grid. --all-cases: every case that has "
                    "a label version.")
    add_project_argument(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--case", dest="cases", nargs="+", action="extend", metavar="ID", help="the cases")
    which.add_argument("--all-cases", action="store_true", help="every case that has a label version")
    parser.add_argument("--kind", choices=KIND_CHOICES, default="all",
                        help="what to write (default all: what the case has)")
    parser.add_argument("--version", type=int, metavar="ID", help="the label version to export (one --case)")
    parser.add_argument("-o", "--out", required=True, metavar="FOLDER", help="the folder to write into (created)")
    parser.add_argument("--format", choices=("nifti", "dicom-seg"), default="nifti",
                        help="how to write the label: nifti (default), or dicom-seg for cases read from DICOM: "
                             "<case>_label.dcm referencing the source series (soft label and uncertainty stay NIfTI)")
    parser.add_argument("--segment-label", metavar="NAME",
                        help="with --format dicom-seg: the labelled structure's name (default: left atrium)")
    parser.add_argument("--json", action="store_true", help="print what was written as JSON instead of a table")
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ..workflows.export import EXPORT_KINDS

    require(args.version is None or (args.cases is not None and len(args.cases) == 1),
            "--version names one label version: give it with a single --case")
    require(args.segment_label is None or args.format == "dicom-seg",
            "--segment-label names the structure in a DICOM-SEG: give it with --format dicom-seg")
    out = writable_folder(args.out, "--out")
    kinds = EXPORT_KINDS if args.kind == "all" else (_EXPORT_KIND[args.kind],)
    with open_project(args.project) as project:
        case_ids = _cases(project, args)
        if args.format == "dicom-seg":
            from ..workflows.export_dicom_seg import require_dicom_case
            for case_id in case_ids:
                require_dicom_case(project, case_id)  # a user error, before anything is written
        exported, failed = _export_each(project, case_ids, out, kinds, args)
    _print(exported, args.json)
    if failed:
        print(f"semiseg: {len(failed)} of {len(case_ids)} cases were not fully exported: {', '.join(failed)}",
              file=sys.stderr)
        return 1
    return 0


def _cases(project, args: argparse.Namespace) -> list[str]:
    if not args.all_cases:
        for case_id in args.cases:
            project.case(case_id)  # an unknown id is a user error before anything is written
        return list(args.cases)
    with_labels = {version.case_id for version in project.label_versions()}
    return [case_id for case_id in project.case_ids() if case_id in with_labels]


def _export_each(project, case_ids, out, kinds, args) -> tuple[list, list[str]]:
    from ..workflows.export import export_case

    exported, failed = [], []
    for case_id in case_ids:
        try:
            result = export_case(project, case_id, out, kinds, version_id=args.version,
                                 label_format=args.format, segment_label=args.segment_label)
        except SemisegError as error:
            print(f"semiseg: {error}", file=sys.stderr)
            failed.append(case_id)
            continue
        exported.append(result)
        for kind, why in result.missing.items():
            print(f"semiseg: {case_id}: no {kind}: {why}", file=sys.stderr)
        if result.missing and args.kind != "all":
            failed.append(case_id)
    return exported, failed


def _print(exported, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"case": e.case_id, "files": {kind: str(path) for kind, path in e.written.items()},
                           "missing": e.missing} for e in exported], indent=1))
        return
    rows = [(e.case_id, ", ".join(path.name for path in e.written.values()),
             "; ".join(e.missing) or "-") for e in exported]
    if rows:
        print(format_table(("case", "files", "not exported"), rows))
    print(f"{sum(len(e.written) for e in exported)} files written")
