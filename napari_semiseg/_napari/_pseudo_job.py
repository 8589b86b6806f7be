"""The Pseudo-label panel's logic, free of napari and Qt: which cases, which model, the run.

The panel builds a ``PseudoLabelRequest`` (``workflows.pseudo``, as ``semiseg pseudo-label``
does); ``cases_to_pseudo_label`` says which cases it covers; ``pseudo_label_steps`` is the
generator its worker runs: the workflow's ``iter_pseudo_labels`` on a
``Project`` of its own (opened and closed in the worker, so that switching or closing the
panel's project never pulls the catalogue from under a running job; SQLite's WAL lets the
panel read while the worker writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Generator, Sequence

from ..workflows.pseudo import PseudoLabelRequest, already_pseudo_labelled, cases_to_pseudo_label  # noqa: F401

#: Devices the panel offers: "auto" takes CUDA when present.
DEVICES = ("auto", "cpu", "cuda")


def pseudo_label_steps(project_root: str | Path, request: PseudoLabelRequest, case_ids: Sequence[str],
                       should_stop: Callable[[], bool] | None = None) -> Generator:
    """Pseudo-label ``case_ids``: the generator a GUI worker runs.

    Args:
        project_root: the project folder (opened here, in the worker's thread).
        request: model and device.
        case_ids: the cases, in order (``cases_to_pseudo_label``).
        should_stop: asked between window batches and cases; True stops the run.

    Yields:
        ``PseudoLabelProgress`` reports, a ``PseudoLabelCase`` per stored case, then the
        ``PseudoLabelSummary``.

    Returns:
        The ``PseudoLabelSummary`` (``cancelled`` when stopped).
    """
    from ..project import Project
    from ..workflows.pseudo import iter_pseudo_labels

    with Project.open(project_root) as project:
        return (yield from iter_pseudo_labels(project, request, case_ids, should_stop=should_stop))


def describe_stored_case(item) -> str:
    """One status line for a stored ``PseudoLabelCase``."""
    return (f"{item.case_id}: {item.foreground_voxels} foreground voxels, mean entropy "
            f"{item.mean_entropy:.3f}, confidence {item.mean_confidence:.3f} ({item.seconds:.1f} s)")


#: Failed cases named in a summary line; the others are counted.
FAILURES_SHOWN = 3


def describe_summary(summary) -> str:
    """One status line for a finished (or stopped) run, naming the cases that failed."""
    done = len(summary.cases)
    verb = "Stopped after" if summary.cancelled else "Pseudo-labelled"
    text = (f"{verb} {done} of {summary.requested} case{'s' * (summary.requested != 1)} with model "
            f"{summary.model_id} in {summary.seconds:.1f} s.")
    failed = summary.failed
    if failed:
        shown = "; ".join(str(failure) for failure in failed[:FAILURES_SHOWN])
        more = f"; and {len(failed) - FAILURES_SHOWN} more" if len(failed) > FAILURES_SHOWN else ""
        text += f" {len(failed)} could not be labelled: {shown}{more}."
    return text


__all__ = ["DEVICES", "PseudoLabelRequest", "already_pseudo_labelled", "cases_to_pseudo_label",
           "describe_stored_case", "describe_summary", "pseudo_label_steps"]
