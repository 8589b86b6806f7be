"""Progress reports of an ATSO run: one small object per trainer event or pseudo-labelling report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: ``AtsoProgress.step`` values.
STEPS = ("train", "pseudo-label", "done")


@dataclass(frozen=True)
class AtsoProgress:
    """Where an ATSO run is.

    Attributes:
        generation: 0 (M0 and its labels), 1..T, or T + 1 (the final model).
        step: ``"train"`` (a model trains), ``"pseudo-label"`` (a model labels a fold) or
            ``"done"`` (the run ended; ``message`` says how).
        model: the key of the model training or labelling (``"G1/student-2"``...).
        message: one line for a status bar or a log.
        fraction: overall progress 0..1 (every training and every labelling pass weighs
            the same, split by its iterations or cases).
        event: the trainer's event dict (step "train") or the pseudo-labelling report
            (``PseudoLabelProgress`` / ``PseudoLabelCase``) this report relays, else None.
    """

    generation: int
    step: str
    model: str
    message: str
    fraction: float
    event: Any = None


AtsoProgressCallback = Callable[[AtsoProgress], None]

__all__ = ["AtsoProgress", "AtsoProgressCallback", "STEPS"]
