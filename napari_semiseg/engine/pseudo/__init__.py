"""Teacher outputs as training material: pseudo-labels, soft labels, their correction, ranking.

- ``iter_pseudo_label`` / ``pseudo_label`` (``_pipeline``): a model version's hard labels
  ("pseudo" versions) and soft labels (8-bit class probabilities with an uncertainty summary)
  for the unlabelled cases of a project; cancellable between windows and cases.
- ``correct_soft_labels`` (``_teacher_team``, ``_assistants``): the PLC-KD-style teacher team,
  RECONSTRUCTED from the paper's abstract and supplement — a false-pixel assistant, a boundary
  assistant, a similarity-based correction and a final forcing step, after which every
  labelled voxel's soft label is on its class's side of 0.5.
- ``correct_case_soft_label`` (``_interactive``): the same for a case a clinician corrected,
  stored as a new "corrected" soft label; ``soft_label_histograms`` for the inspection panel.
- ``rank_cases`` / ``next_case`` (``_ranking``): unlabelled cases by mean entropy and teacher
  disagreement.

The soft-label codec lives in the project layer (``napari_semiseg.project._soft_codec``),
which stores the files; it is re-exported here.

The pipeline's names are loaded on first use (PEP 562): ranking and correction need only
numpy and scipy, so ``semiseg next-case`` and the napari case list do not wait for torch and
MONAI to import.
"""

from ...project import (SOFT_LABEL_ENCODING, SOFT_LABEL_MAX_ERROR, SoftLabel, UncertaintySummary,
                        decode_soft_label, encode_soft_label, summarise_soft_label)
from ..correction import (METHOD_LABEL, RECONSTRUCTED, RECONSTRUCTION_NOTE, STEP_NAMES, CorrectionError,
                          CorrectionParams, CorrectionResult, CorrectionStep, boundary_assistant,
                          correct_soft_labels, false_pixel_assistant, force_correct_side,
                          signed_boundary_distance, similarity_correction, wrong_side)
from ._histograms import SoftLabelHistograms, soft_label_histograms
from ._interactive import CaseCorrection, correct_case_soft_label, teacher_soft_label
from ._ranking import CaseRank, candidate_case_ids, next_case, rank_cases, teacher_disagreement

__all__ = [
    "METHOD_LABEL", "RECONSTRUCTED", "RECONSTRUCTION_NOTE", "SOFT_LABEL_ENCODING",
    "SOFT_LABEL_MAX_ERROR", "STEP_NAMES", "CaseCorrection", "CaseRank", "CorrectionError",
    "CorrectionParams", "CorrectionResult", "CorrectionStep", "SoftLabel", "SoftLabelHistograms",
    "UncertaintySummary", "boundary_assistant", "candidate_case_ids", "correct_case_soft_label",
    "correct_soft_labels", "decode_soft_label", "encode_soft_label", "false_pixel_assistant",
    "force_correct_side", "next_case", "rank_cases", "signed_boundary_distance",
    "similarity_correction", "soft_label_histograms", "summarise_soft_label", "teacher_disagreement", "teacher_soft_label",
    "wrong_side",
]

#: Names of ``_pipeline`` (torch, MONAI), imported when first asked for.
_PIPELINE_NAMES = ("PseudoLabelCase", "PseudoLabelFailure", "PseudoLabelProgress",
                   "PseudoLabelSummary", "default_case_ids", "iter_pseudo_label", "pseudo_label")
__all__ += list(_PIPELINE_NAMES)


def __getattr__(name: str):
    if name in _PIPELINE_NAMES:
        from . import _pipeline
        return getattr(_pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PIPELINE_NAMES))
