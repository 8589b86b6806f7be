"""Pseudo-labelling: a model's hard and soft labels for the unlabelled cases of a project.

``iter_pseudo_label`` is the generator a GUI worker drives (and the CLI consumes): for each
case it runs the sliding-window inference, then stores, in one transaction, the hard label
as a "pseudo" label version made by the model and its class probabilities as a soft label
with its uncertainty summary. It yields a ``PseudoLabelProgress`` after every window batch,
a ``PseudoLabelCase`` after every stored case, and finally the ``PseudoLabelSummary`` (also
its return value, for napari's ``returned`` signal).

A case that cannot be labelled (its image file replaced by a damaged one, NaN voxels, a grid
the card cannot take) yields a ``PseudoLabelFailure`` and the run goes on with the others: one
bad volume must not leave the rest of a night's run undone. Errors of the whole run (no such
model, no such device) still raise.

Cancellation: ``should_stop()`` is asked between window batches and between cases; closing
the generator stops it too. A case is stored whole or not at all, so a stopped run leaves
the cases it finished and nothing of the one it was working on. The run is recorded in the
project (kind "pseudo-label") with status "completed", "stopped" or "failed".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

from ...errors import SemisegError
from .._model_store import load_model_version, resolve_model_id
from ..inference import (Cancelled, DeviceError, InferenceProgress, McDropoutError, Prediction,
                         iter_predict_volume)

RUN_KIND = "pseudo-label"
#: Errors about the whole run rather than one case: they end the run instead of being reported
#: as that case's failure (every other case would fail the same way).
RUN_ERRORS = (Cancelled, DeviceError, McDropoutError)


@dataclass(frozen=True)
class PseudoLabelProgress:
    """Where a pseudo-labelling run is.

    Attributes:
        case_index: 0-based index of the case being predicted.
        case_count: cases in the run.
        case_id: the case being predicted.
        windows_done / windows_total: the inference's progress on this case.
        message: what is happening, for a status line.
    """

    case_index: int
    case_count: int
    case_id: str
    windows_done: int
    windows_total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """Overall progress 0..1 (each case counts equally)."""
        within = self.windows_done / self.windows_total if self.windows_total else 0.0
        return (self.case_index + within) / self.case_count if self.case_count else 1.0


@dataclass(frozen=True)
class PseudoLabelCase:
    """One stored case.

    Attributes:
        case_index: its index in the run.
        case_id: the case.
        label_version_id: the new "pseudo" label version.
        soft_label_id: the soft label stored with it.
        foreground_voxels: voxels of the hard label > 0.
        mean_entropy: mean normalised entropy (0..1) of the soft label.
        mean_confidence: mean largest class probability.
        seconds: wall time for the case (reading, inference, storing).
    """

    case_index: int
    case_id: str
    label_version_id: int
    soft_label_id: int
    foreground_voxels: int
    mean_entropy: float
    mean_confidence: float
    seconds: float


@dataclass(frozen=True)
class PseudoLabelFailure:
    """A case the run could not label; nothing of it was stored and the run went on.

    Attributes:
        case_index: its index in the run.
        case_id: the case.
        problem: why, as the error said it (a file's problem names the file).
    """

    case_index: int
    case_id: str
    problem: str

    def __str__(self) -> str:
        return f"{self.case_id}: {self.problem}"


@dataclass(frozen=True)
class PseudoLabelSummary:
    """What a run did.

    Attributes:
        model_id: the model version that made the labels.
        run_id: the project's run record.
        cases: the stored cases, in order.
        requested: cases the run was asked to do.
        cancelled: True when it stopped before the end.
        seconds: wall time of the run.
        failed: the cases that could not be labelled, in order.
    """

    model_id: int
    run_id: int
    cases: tuple[PseudoLabelCase, ...]
    requested: int
    cancelled: bool
    seconds: float
    failed: tuple[PseudoLabelFailure, ...] = ()

    @property
    def volumes_per_minute(self) -> float:
        return 60.0 * len(self.cases) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "requested": self.requested, "done": len(self.cases),
                "cancelled": self.cancelled, "seconds": round(self.seconds, 3),
                "volumes_per_minute": round(self.volumes_per_minute, 3),
                "cases": [{"case_id": c.case_id, "label_version_id": c.label_version_id,
                           "soft_label_id": c.soft_label_id} for c in self.cases],
                "failed": [{"case_id": f.case_id, "problem": f.problem} for f in self.failed]}


def default_case_ids(project) -> list[str]:
    """The cases pseudo-labelling takes by default: those of split "unlabelled"."""
    return project.case_ids(split="unlabelled")


def iter_pseudo_label(project, model_id: int | None = None, case_ids: Sequence[str] | None = None,
                      *, device="auto", should_stop: Callable[[], bool] | None = None,
                      overlap: float | None = None, window_batch: int | None = None
                      ) -> Generator[PseudoLabelProgress | PseudoLabelCase | PseudoLabelFailure
                                     | PseudoLabelSummary, None, PseudoLabelSummary]:
    """Pseudo-label cases with a model version, storing hard + soft labels per case.

    Args:
        project: an open ``Project``.
        model_id: the model version; None takes the active model.
        case_ids: the cases, in order; None takes every case of split "unlabelled".
        device: "auto", "cpu", "cuda[:N]" (see ``iter_predict_volume``).
        should_stop: asked between window batches and cases; True stops the run.
        overlap: sliding-window overlap instead of the card's grid.
        window_batch: windows per network call instead of the card's.

    Yields:
        ``PseudoLabelProgress`` reports, a ``PseudoLabelCase`` per stored case, a
        ``PseudoLabelFailure`` per case that could not be labelled (a ``SemisegError`` of that
        case: unreadable or refused image, unusable grid; the run goes on), then the
        ``PseudoLabelSummary``.

    Raises:
        ProjectError: unknown case or model, no active model.
        TrainingError: the model's weights cannot be loaded.
        ``RUN_ERRORS`` other than cancellation, and errors that are not ``SemisegError``
        (the run is recorded as "failed").
    """
    started = time.perf_counter()
    model_id = resolve_model_id(project, model_id)
    ids = list(case_ids) if case_ids is not None else default_case_ids(project)
    for case_id in ids:
        project.case(case_id)
    net, card = load_model_version(project, model_id)
    run_id = project.start_run(RUN_KIND, {"model_id": model_id, "case_ids": ids,
                                          "device": str(device), "overlap": overlap,
                                          "window_batch": window_batch})
    done: list[PseudoLabelCase] = []
    failed: list[PseudoLabelFailure] = []

    def summary(cancelled: bool) -> PseudoLabelSummary:
        return PseudoLabelSummary(model_id, run_id, tuple(done), len(ids), cancelled,
                                  time.perf_counter() - started, tuple(failed))

    status, error = "failed", None
    try:
        for index, case_id in enumerate(ids):
            if should_stop is not None and should_stop():
                break
            try:
                stored = yield from _pseudo_label_case(project, net, card, model_id, run_id, index,
                                                       ids, device, should_stop, overlap, window_batch)
            except RUN_ERRORS:
                raise
            except SemisegError as exc:
                failed.append(PseudoLabelFailure(index, case_id, str(exc)))
                yield failed[-1]
                continue
            done.append(stored)
            yield stored
        finished = len(done) + len(failed) == len(ids)
        status = "stopped" if not finished else "failed" if failed and not done else "completed"
    except Cancelled:
        status = "stopped"
    except (GeneratorExit, KeyboardInterrupt):
        status = "stopped"
        raise
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        result = summary(status == "stopped")
        record = result.to_dict() if error is None else {**result.to_dict(), "error": error}
        project.finish_run(run_id, status, record)
    yield result
    return result


def _pseudo_label_case(project, net, card, model_id: int, run_id: int, index: int,
                       ids: list[str], device, should_stop, overlap, window_batch) -> Generator:
    """Predict one case (yielding progress), store it whole; return its ``PseudoLabelCase``."""
    started = time.perf_counter()
    case_id = ids[index]
    volume = project.load_image(case_id)
    predictions = iter_predict_volume(net, volume, card, device=device, overlap=overlap,
                                      window_batch=window_batch, should_stop=should_stop)
    prediction = None
    try:
        for item in predictions:
            if isinstance(item, Prediction):
                prediction = item
            elif isinstance(item, InferenceProgress):
                yield PseudoLabelProgress(index, len(ids), case_id, item.windows_done,
                                          item.windows_total, item.message)
    finally:
        predictions.close()  # stops the inference thread when we are closed mid-case
    del volume
    label, soft = project.save_label_with_soft_label(
        case_id, prediction.labels, "pseudo", prediction.probabilities, model_id=model_id,
        note=f"pseudo-label run {run_id}",
        details={"run_id": run_id, "device": prediction.device, "grid": prediction.grid,
                 "seconds": round(prediction.seconds, 3)})
    return PseudoLabelCase(index, case_id, label.id, soft.id, label.foreground_voxels,
                           soft.summary.mean_entropy, soft.summary.mean_confidence,
                           time.perf_counter() - started)


def pseudo_label(project, model_id: int | None = None, case_ids: Sequence[str] | None = None, *,
                 device="auto", progress: Callable[[PseudoLabelProgress | PseudoLabelCase
                                                    | PseudoLabelFailure], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 overlap: float | None = None, window_batch: int | None = None
                 ) -> PseudoLabelSummary:
    """Run ``iter_pseudo_label`` to the end; ``progress`` gets every report and stored case.

    Returns:
        The ``PseudoLabelSummary`` (``cancelled`` when ``should_stop`` stopped it; the cases
        that could not be labelled in ``failed``, each also given to ``progress``).
    """
    for item in iter_pseudo_label(project, model_id, case_ids, device=device,
                                  should_stop=should_stop, overlap=overlap,
                                  window_batch=window_batch):
        if isinstance(item, PseudoLabelSummary):
            return item
        if progress is not None:
            progress(item)
    raise RuntimeError("pseudo-labelling ended without a summary")  # not reachable
