"""Correcting a teacher's soft labels against gold labels: the PLC-KD-style teacher team.

RECONSTRUCTED. "Progressively Correcting Soft Labels via Teacher Team for Knowledge
Distillation in Medical Image Segmentation" (Wang et al., MICCAI 2024) is known here only from
its abstract and its supplement (docs/METHODS.md §6): a false-pixel-aware assistant (global
errors), a boundary-aware assistant (lesion-boundary errors) and a similarity-based correction
of the remaining hard false pixels progressively correct the teacher's soft labels, so that
positives end in 0.5..1 and negatives in 0..0.5 (supplement, Fig. 2). The paper's assistants
are learned networks whose design is not public; the steps here are deterministic stand-ins
with those roles, plus a final forcing step that makes the "all-correct" property a guarantee.
Show it as "reconstructed" wherever it is offered (``RECONSTRUCTED``, ``METHOD_LABEL``).

The steps (binary task: ``q`` = foreground probability; see ``_assistants`` for formulas):

1. false-pixel assistant — labelled voxels on the wrong side of 0.5 are pulled a fraction
   ``false_pixel_pull`` of the way to their class (0 or 1);
2. boundary assistant — labelled voxels within ``boundary_band`` voxel layers of the gold
   boundary are blended towards a smoothed gold label σ(signed distance / softness), with a
   weight that is ``boundary_weight`` at the boundary and falls linearly to 0;
3. similarity-based correction — voxels still wrong take the mean soft label of the correctly
   classified labelled voxels of their class whose standardised image intensity lies within
   ``similarity_tolerance`` standard deviations of theirs (the class mean if none, or without
   an image);
4. final forcing — any labelled voxel still not strictly on its side is moved to
   ``0.5 ± forcing_margin`` ("clamp") or reflected across 0.5 ("reflect").

Voxels outside the gold mask are returned bit-identical. Steps 1–3 never move a correct voxel
to the wrong side, so the voxels that cross 0.5 are exactly those that started wrong.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ...errors import SemisegError
from ._assistants import (boundary_assistant, false_pixel_assistant, force_correct_side,
                          similarity_correction, wrong_side)

#: The teacher team is a reconstruction from the abstract and supplement, not the paper's code.
RECONSTRUCTED = True
#: How the UI and the docs name it.
METHOD_LABEL = "PLC-KD-style teacher team (reconstructed)"
#: One paragraph the UI can show next to the label.
RECONSTRUCTION_NOTE = (
    "Reconstructed from the PLC-KD abstract and supplement (Wang et al., MICCAI 2024): the "
    "paper's learned assistants are replaced by deterministic steps with the same roles "
    "(false-pixel pull, boundary smoothing, intensity-similarity correction) and a final "
    "forcing step that guarantees every labelled voxel ends on its class's side of 0.5.")
#: The steps, in order, as ``CorrectionStep.name`` reports them.
STEP_NAMES = ("false-pixel assistant", "boundary assistant", "similarity correction",
              "final forcing")
FORCING_MODES = ("clamp", "reflect")


class CorrectionError(SemisegError):
    """The soft label, gold label or parameters of a correction do not fit together."""


@dataclass(frozen=True)
class CorrectionParams:
    """Parameters of the teacher team (defaults chosen here; the paper's are unknown).

    Attributes:
        false_pixel_pull: step 1, fraction (0..1) of the way to the class value a false voxel
            moves; 0 disables the step.
        boundary_band: step 2, layers of voxels on each side of the gold boundary that are
            blended (the supplement's BT δ = 10 is in 2-D pixels at 224²; 3 suits 3-D
            volumes); 0 disables the step.
        boundary_softness: step 2, scale (voxels) of the smoothed label σ(d / softness).
        boundary_weight: step 2, blend weight (0..1) at the boundary; 0 disables the step.
        similarity_tolerance: step 3, half-width of the intensity window in standard
            deviations of the intensity over the labelled voxels.
        similarity: step 3 on (True) or off.
        forcing_margin: step 4, distance from 0.5 a forced voxel ends at (0 < margin < 0.5).
        forcing: step 4, "clamp" (smallest move) or "reflect" (1 − q, at least the margin).
    """

    false_pixel_pull: float = 0.5
    boundary_band: float = 3.0
    boundary_softness: float = 1.0
    boundary_weight: float = 0.5
    similarity_tolerance: float = 0.25
    similarity: bool = True
    forcing_margin: float = 0.01
    forcing: str = "clamp"

    def __post_init__(self):
        checks = [
            (0.0 <= self.false_pixel_pull <= 1.0, "false_pixel_pull must lie in 0..1"),
            (self.boundary_band >= 0, "boundary_band must be ≥ 0"),
            (self.boundary_softness > 0, "boundary_softness must be > 0"),
            (0.0 <= self.boundary_weight <= 1.0, "boundary_weight must lie in 0..1"),
            (self.similarity_tolerance >= 0, "similarity_tolerance must be ≥ 0"),
            (0.0 < self.forcing_margin < 0.5, "forcing_margin must lie strictly in 0..0.5"),
            (self.forcing in FORCING_MODES, f"forcing must be one of {', '.join(FORCING_MODES)}"),
        ]
        for ok, problem in checks:
            if not ok:
                raise CorrectionError(f"teacher-team parameters: {problem}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CorrectionStep:
    """What one step did.

    Attributes:
        name: one of ``STEP_NAMES``.
        changed: labelled voxels whose soft label this step changed.
        fixed: labelled voxels wrong before the step and right after it (net: wrong before −
            wrong after). The steps' ``fixed`` add up to the voxels that crossed 0.5.
        still_wrong: labelled voxels on the wrong side after the step (0 after the last).
    """

    name: str
    changed: int
    fixed: int
    still_wrong: int


@dataclass(frozen=True)
class CorrectionResult:
    """A corrected soft label.

    Attributes:
        corrected: (z, y, x) foreground probabilities, the input's dtype; equal to the input
            bit for bit outside the gold mask.
        steps: the four steps in order.
        crossed: bool (z, y, x), the labelled voxels that started on the wrong side of 0.5
            and ended on the right one.
        wrong_before: labelled voxels on the wrong side before correction.
        labelled: voxels in the gold mask.
        params: the parameters used.
    """

    corrected: np.ndarray
    steps: list[CorrectionStep]
    crossed: np.ndarray
    wrong_before: int
    labelled: int
    params: CorrectionParams = field(default_factory=CorrectionParams)

    @property
    def n_crossed(self) -> int:
        return int(np.count_nonzero(self.crossed))

    def describe(self) -> dict:
        """A JSON-able record: method, reconstructed flag, parameters, steps, counts."""
        return {"method": METHOD_LABEL, "reconstructed": RECONSTRUCTED,
                "params": self.params.to_dict(),
                "steps": [dataclasses.asdict(step) for step in self.steps],
                "wrong_before": self.wrong_before, "crossed": self.n_crossed,
                "labelled": self.labelled}


def _check_inputs(prob_fg, gold_mask, gold_label, image
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(soft label, bool mask, bool gold foreground), or CorrectionError naming the problem."""
    prob_fg = np.asarray(prob_fg)
    if prob_fg.ndim != 3 or not np.issubdtype(prob_fg.dtype, np.floating):
        raise CorrectionError(f"the soft label must be a floating (z, y, x) foreground "
                              f"probability, not {prob_fg.dtype} of shape {prob_fg.shape}")
    mask = np.asarray(gold_mask)
    gold = np.asarray(gold_label)
    for name, array in (("gold mask", mask), ("gold label", gold), ("image", image)):
        if array is not None and np.shape(array) != prob_fg.shape:
            raise CorrectionError(f"the {name} has shape {np.shape(array)}, the soft label "
                                  f"{prob_fg.shape}: they must lie on one grid")
    if mask.dtype != bool:
        raise CorrectionError(f"the gold mask must be boolean, not {mask.dtype}")
    labelled = prob_fg[mask]
    if labelled.size and (not np.isfinite(labelled).all() or labelled.min() < 0
                          or labelled.max() > 1):
        raise CorrectionError("the soft label must hold probabilities in 0..1 on the labelled "
                              "voxels")
    if image is not None and not np.isfinite(np.asarray(image)[mask]).all():
        raise CorrectionError("the image has NaN or infinite values on the labelled voxels")
    return prob_fg, mask, gold > 0


def correct_soft_labels(prob_fg: np.ndarray, *, gold_mask: np.ndarray, gold_label: np.ndarray,
                        image: np.ndarray | None = None,
                        params: CorrectionParams | None = None) -> CorrectionResult:
    """Correct a teacher's foreground soft label against a (partial) gold label.

    RECONSTRUCTED PLC-KD-style teacher team; the steps are described in this module's
    docstring and in ``_assistants``.

    Args:
        prob_fg: (z, y, x) floating foreground probability of the teacher (for K classes,
            1 − p(background)).
        gold_mask: bool (z, y, x), True where a gold or clinician-corrected label exists.
        gold_label: (z, y, x) integer or bool label, > 0 = foreground; read inside the mask only.
        image: the (z, y, x) image for the similarity step; None uses class means there.
        params: the steps' parameters (``CorrectionParams()`` by default).

    Returns:
        A ``CorrectionResult``: on every labelled voxel the corrected value is > 0.5 for
        foreground and < 0.5 for background; outside the mask it is the input, bit for bit.

    Raises:
        CorrectionError: shapes differ, the mask is not boolean, or the soft label is not a
            probability on the labelled voxels.
    """
    params = params or CorrectionParams()
    prob_fg, mask, gold = _check_inputs(prob_fg, gold_mask, gold_label, image)
    current = prob_fg.astype(np.float64)
    wrong = int(np.count_nonzero(mask & wrong_side(current, gold)))
    wrong_before, crossed = wrong, mask & wrong_side(current, gold)
    stages = [
        lambda q: false_pixel_assistant(q, gold, mask, params.false_pixel_pull),
        lambda q: boundary_assistant(q, gold, mask, band=params.boundary_band,
                                     softness=params.boundary_softness,
                                     weight=params.boundary_weight),
        lambda q: similarity_correction(q, gold, mask, image, params.similarity_tolerance)
        if params.similarity else q.copy(),
    ]
    steps = []
    for name, stage in zip(STEP_NAMES, stages):
        updated = stage(current)
        steps.append(_step(name, current, updated, gold, mask, wrong))
        current, wrong = updated, steps[-1].still_wrong
    # Forcing is done in the output precision, so the guarantee holds for what is returned.
    before_forcing = current.astype(prob_fg.dtype)
    forced = force_correct_side(before_forcing, gold, mask, margin=params.forcing_margin,
                                mode=params.forcing)
    steps.append(_step(STEP_NAMES[3], before_forcing, forced, gold, mask, wrong))
    corrected = prob_fg.copy()
    corrected[mask] = forced[mask]
    return CorrectionResult(corrected, steps, crossed, wrong_before,
                            int(np.count_nonzero(mask)), params)


def _step(name: str, before: np.ndarray, after: np.ndarray, gold: np.ndarray, mask: np.ndarray,
          wrong_before: int) -> CorrectionStep:
    changed = int(np.count_nonzero(mask & (before != after)))
    still_wrong = int(np.count_nonzero(mask & wrong_side(after, gold)))
    return CorrectionStep(name, changed, wrong_before - still_wrong, still_wrong)
