"""``semiseg pseudo-label``, ``semiseg next-case``, ``semiseg correct-soft-label``.

Pseudo-labels and soft labels for the unlabelled cases, the ranking of cases to annotate
next, and the (reconstructed) teacher-team correction of a corrected case's soft label.
"""

from __future__ import annotations

import argparse
import json
import sys

from ._common import add_project_argument, format_table, open_project
from ._engine_common import StatusLine
from ._progress import EtaProgress

INTERRUPTED = 130


def register(subparsers) -> None:
    """Add the pseudo-labelling commands to ``semiseg``'s sub-parsers."""
    _register_pseudo_label(subparsers)
    _register_next_case(subparsers)
    _register_correct(subparsers)


# -- pseudo-label ------------------------------------------------------------------------------

def _register_pseudo_label(subparsers) -> None:
    parser = subparsers.add_parser(
        "pseudo-label", help="store a model's hard and soft labels for the unlabelled cases",
        description="Run a model version (the active one by default) over cases (those of split "
                    "'unlabelled' by default) and store, per case, a 'pseudo' label version and "
                    "its soft label (8-bit probabilities) with an uncertainty summary. Ctrl-C "
                    "stops between window batches; finished cases stay stored. A case that "
                    "cannot be labelled (e.g. its image file is damaged) is reported as "
                    "'CASE: problem' and the others are done; the exit status is then 1.")
    add_project_argument(parser)
    parser.add_argument("--model", type=int, metavar="ID", help="model version (default: active)")
    parser.add_argument("--cases", nargs="+", metavar="CASE", help="case ids (default: unlabelled)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    parser.add_argument("--overlap", type=float, help="window overlap instead of the card's grid")
    parser.add_argument("--window-batch", type=int, metavar="N",
                        help="windows per network call instead of the card's")
    parser.add_argument("--json", action="store_true", help="print the run's summary as JSON instead of a table")
    parser.set_defaults(handler=run_pseudo_label)


def _progress_line(progress: EtaProgress, report) -> None:
    """"pseudo-labelling 35% case 8/20 u7: elapsed ..., ETA ..." (in a log: every 5 %)."""
    done = (report.case_index + report.windows_done / max(1, report.windows_total)) / max(1, report.case_count)
    progress.report(done, f"case {report.case_index + 1}/{report.case_count} {report.case_id}")


def pseudo_label_table(cases) -> str:
    """One row per stored case: foreground voxels, mean entropy, mean confidence."""
    rows = [(c.case_id, c.foreground_voxels, f"{c.mean_entropy:.4f}", f"{c.mean_confidence:.4f}",
             f"{c.seconds:.1f}") for c in cases]
    return format_table(("case", "foreground voxels", "mean entropy", "confidence", "seconds"),
                        rows, right_aligned=(1, 2, 3, 4))


def throughput_line(summary) -> str:
    """"pseudo-labelled 2/2 cases with model 1 in 3.2 s: 37.5 volumes/minute"."""
    state = " (stopped)" if summary.cancelled else ""
    return (f"pseudo-labelled {len(summary.cases)}/{summary.requested} cases with model "
            f"{summary.model_id} in {summary.seconds:.1f} s: {summary.volumes_per_minute:.2f} "
            f"volumes/minute{state}")


def report_failure(failure) -> None:
    """"u3: /data/u3.nii.gz: 12 of 4096 voxels are not finite ..." on stderr, as it happens."""
    if sys.stderr.isatty():
        print(file=sys.stderr)  # end the progress line
    print(f"semiseg: {failure}", file=sys.stderr)


def failed_cases_line(failed) -> str:
    """"2 cases could not be labelled: u1, u3"."""
    noun = "case" if len(failed) == 1 else "cases"
    return f"{len(failed)} {noun} could not be labelled: {', '.join(f.case_id for f in failed)}"


def run_pseudo_label(args: argparse.Namespace) -> int:
    from ..engine.pseudo import PseudoLabelCase, PseudoLabelFailure, PseudoLabelProgress, PseudoLabelSummary
    from ..workflows.pseudo import PseudoLabelRequest, iter_pseudo_labels

    request = PseudoLabelRequest(model_id=args.model, device=args.device, skip_done=False,
                                 case_ids=None if args.cases is None else tuple(args.cases),
                                 overlap=args.overlap, window_batch=args.window_batch)
    with open_project(args.project) as project:
        run = iter_pseudo_labels(project, request)
        progress = EtaProgress("pseudo-labelling", StatusLine())
        stored, summary = [], None
        try:
            for item in run:
                if isinstance(item, PseudoLabelProgress):
                    _progress_line(progress, item)
                elif isinstance(item, PseudoLabelCase):
                    stored.append(item)
                elif isinstance(item, PseudoLabelFailure):
                    report_failure(item)
                elif isinstance(item, PseudoLabelSummary):
                    summary = item
        except KeyboardInterrupt:
            run.close()  # records the run as stopped; the finished cases stay
            if sys.stderr.isatty():
                print(file=sys.stderr)
            if stored:
                print(pseudo_label_table(stored))
            print(f"semiseg: interrupted after {len(stored)} case(s); they are stored",
                  file=sys.stderr)
            return INTERRUPTED
        progress.status.end()
    if args.json:
        print(json.dumps(summary.to_dict(), indent=1))
    else:
        if stored:
            print(pseudo_label_table(stored))
        print(throughput_line(summary))
    if summary.failed:
        print(f"semiseg: {failed_cases_line(summary.failed)}", file=sys.stderr)
        return 1
    return 0


# -- next-case -------------------------------------------------------------------------------

def _register_next_case(subparsers) -> None:
    parser = subparsers.add_parser(
        "next-case", help="the unlabelled case to annotate next (most uncertain first)",
        description="Rank the cases without gold or corrected labels (test split excluded) by "
                    "the mean entropy of their soft labels plus the disagreement between model "
                    "versions; cases without soft labels come last. Prints the top case id, or "
                    "the whole ranking with --all.")
    add_project_argument(parser)
    parser.add_argument("--all", action="store_true", help="print the whole ranking as a table")
    parser.add_argument("--json", action="store_true", help="with --all: print the ranking as JSON")
    parser.set_defaults(handler=run_next_case)


def run_next_case(args: argparse.Namespace) -> int:
    from ..engine.pseudo import rank_cases

    with open_project(args.project) as project:
        ranks = rank_cases(project)
    if not args.all:
        if not ranks:
            print("no case left to annotate", file=sys.stderr)
            return 1
        print(ranks[0].case_id)
        return 0
    if args.json:
        print(json.dumps([{"rank": i + 1, "case": r.case_id, "score": r.score, "why": list(r.reasons)}
                          for i, r in enumerate(ranks)], indent=1))
        return 0
    rows = [(i + 1, r.case_id, "-" if r.score is None else f"{r.score:.4f}", "; ".join(r.reasons))
            for i, r in enumerate(ranks)]
    print(format_table(("rank", "case", "score", "why"), rows, right_aligned=(0, 2)))
    return 0


# -- correct-soft-label -------------------------------------------------------------------------

def _register_correct(subparsers) -> None:
    parser = subparsers.add_parser(
        "correct-soft-label",
        help="correct a case's soft label against its corrected label (teacher team, "
             "reconstructed)",
        description="Run the PLC-KD-style teacher team (RECONSTRUCTED from the paper's abstract "
                    "and supplement) on the case's teacher soft label with its newest corrected "
                    "(or gold) label as truth, and store the corrected soft label as a new "
                    "record; the original is kept.")
    add_project_argument(parser)
    parser.add_argument("case", metavar="CASE", help="the case id")
    parser.add_argument("--label-version", type=int, metavar="ID",
                        help="the corrected or gold label version (default: the newest)")
    parser.set_defaults(handler=run_correct)


def run_correct(args: argparse.Namespace) -> int:
    from ..engine.pseudo import METHOD_LABEL, correct_case_soft_label

    with open_project(args.project) as project:
        correction = correct_case_soft_label(project, args.case,
                                             label_version_id=args.label_version)
    result = correction.result
    print(f"{METHOD_LABEL}: case {args.case}, soft label {correction.original.id} against label "
          f"version {correction.label_version.id}")
    rows = [(step.name, step.changed, step.fixed, step.still_wrong) for step in result.steps]
    print(format_table(("step", "voxels changed", "fixed", "still wrong"), rows,
                       right_aligned=(1, 2, 3)))
    verb = "already stored as" if correction.reused else "stored as"
    print(f"{result.n_crossed} of {result.labelled} voxels crossed 0.5; {verb} soft label "
          f"{correction.corrected.id}")
    return 0
