"""The Pseudo-label panel's logic, free of napari and Qt: which cases, which model, the run.

The panel builds a ``PseudoLabelRequest``; ``cases_to_pseudo_label`` says which cases it
covers; ``pseudo_label_steps`` is the generator its worker runs: ``iter_pseudo_label`` on a
``Project`` of its own (opened and closed in the worker, so that switching or closing the
panel's project never pulls the catalogue from under a running job; SQLite's WAL lets the
panel read while the worker writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator, Sequence

from ._predict_job import resolve_model

#: The split whose cases pseudo-labelling covers (``engine.pseudo.default_case_ids``).
UNLABELLED_SPLIT = "unlabelled"
#: Devices the panel offers: "auto" takes CUDA when present.
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class PseudoLabelRequest:
    """What the Pseudo-label panel asks for (the worker consumes exactly this).

    Attributes:
        model_id: the model version that labels; None means the project's active one.
        device: "auto", "cpu" or "cuda".
        skip_done: leave out the cases this model already pseudo-labelled (a cancelled run
            then continues where it stopped instead of starting over).
    """

    model_id: int | None = None
    device: str = "auto"
    skip_done: bool = True


def already_pseudo_labelled(project, model_id: int) -> set[str]:
    """Cases holding a "pseudo" label version by ``model_id`` together with its soft label."""
    with_soft = {soft.label_version_id for soft in project.soft_labels(kind="teacher", model_id=model_id)}
    return {version.case_id for version in project.label_versions()
            if version.kind == "pseudo" and version.model_id == model_id and version.id in with_soft}


def cases_to_pseudo_label(project, request: PseudoLabelRequest) -> list[str]:
    """The cases a run of ``request`` covers, in project order.

    Every case of split "unlabelled" (as ``iter_pseudo_label`` takes by default), less those
    the model already did when ``request.skip_done``.

    Raises:
        ProjectError: the request names no usable model.
    """
    model = resolve_model(project, request.model_id)
    cases = project.case_ids(split=UNLABELLED_SPLIT)
    if not request.skip_done:
        return cases
    done = already_pseudo_labelled(project, model.id)
    return [case_id for case_id in cases if case_id not in done]


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
    from ..engine.pseudo import iter_pseudo_label
    from ..project import Project

    with Project.open(project_root) as project:
        return (yield from iter_pseudo_label(project, request.model_id, list(case_ids),
                                             device=request.device, should_stop=should_stop))


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
