"""Pseudo-labelling: one request for ``semiseg pseudo-label`` and the Pseudo-label panel.

A ``PseudoLabelRequest`` names the model (the active one by default), the device, the cases
(every case of split "unlabelled" by default) and whether cases this model already did are
left out; ``cases_to_pseudo_label`` resolves the cases and ``iter_pseudo_labels`` runs
``engine.pseudo.iter_pseudo_label`` over them (reports, one item per stored case, a summary).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

from .predict import resolve_model

#: The split whose cases pseudo-labelling covers by default.
UNLABELLED_SPLIT = "unlabelled"


@dataclass(frozen=True)
class PseudoLabelRequest:
    """What a user asks of a pseudo-labelling run.

    Attributes:
        model_id: the model version that labels; None means the project's active one.
        device: "auto", "cpu", "cuda" or "cuda:N".
        skip_done: leave out the cases this model already pseudo-labelled (a cancelled run
            then continues where it stopped instead of starting over).
        case_ids: the cases (the engine checks each); None: every case of split "unlabelled".
        overlap: window overlap in 0..1; None: the card's. window_batch: windows per batch; None: the card's.
    """

    model_id: int | None = None
    device: str = "auto"
    skip_done: bool = True
    case_ids: tuple[str, ...] | None = None
    overlap: float | None = None
    window_batch: int | None = None


def already_pseudo_labelled(project, model_id: int) -> set[str]:
    """Cases holding a "pseudo" label version by ``model_id`` together with its soft label."""
    with_soft = {soft.label_version_id for soft in project.soft_labels(kind="teacher", model_id=model_id)}
    return {version.case_id for version in project.label_versions()
            if version.kind == "pseudo" and version.model_id == model_id and version.id in with_soft}


def cases_to_pseudo_label(project, request: PseudoLabelRequest) -> list[str]:
    """The cases a run of ``request`` covers, in project order.

    Raises:
        ProjectError: the request names no usable model.
    """
    model = resolve_model(project, request.model_id)
    cases = project.case_ids(split=UNLABELLED_SPLIT) if request.case_ids is None else list(request.case_ids)
    if not request.skip_done:
        return cases
    done = already_pseudo_labelled(project, model.id)
    return [case_id for case_id in cases if case_id not in done]


def iter_pseudo_labels(project, request: PseudoLabelRequest, case_ids=None,
                       should_stop: Callable[[], bool] | None = None) -> Generator:
    """Pseudo-label ``case_ids`` (default: ``cases_to_pseudo_label``) with the request's model.

    Yields:
        ``PseudoLabelProgress`` reports, a ``PseudoLabelCase`` per stored case, a
        ``PseudoLabelFailure`` per case it could not label, then the ``PseudoLabelSummary``.

    Returns:
        The ``PseudoLabelSummary`` (``cancelled`` when stopped).
    """
    from ..engine.pseudo import iter_pseudo_label

    cases = cases_to_pseudo_label(project, request) if case_ids is None else list(case_ids)
    return (yield from iter_pseudo_label(project, request.model_id, cases, device=request.device,
                                         should_stop=should_stop, overlap=request.overlap,
                                         window_batch=request.window_batch))


__all__ = ["PseudoLabelRequest", "UNLABELLED_SPLIT", "already_pseudo_labelled", "cases_to_pseudo_label",
           "iter_pseudo_labels"]
