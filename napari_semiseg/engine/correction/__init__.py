"""Correcting a teacher's soft labels against gold labels: the PLC-KD-style teacher team (numpy, scipy).

Below the methods and the trainer: PLC-KD's distillation material (``engine.data``) and the
interactive loop (``engine.pseudo``) both correct soft labels with it, and neither may reach
into the other.
"""

from ._assistants import (boundary_assistant, false_pixel_assistant, force_correct_side,
                          signed_boundary_distance, similarity_correction, wrong_side)
from ._teacher_team import (METHOD_LABEL, RECONSTRUCTED, RECONSTRUCTION_NOTE, STEP_NAMES,
                            CorrectionError, CorrectionParams, CorrectionResult, CorrectionStep,
                            correct_soft_labels)

__all__ = [
    "METHOD_LABEL", "RECONSTRUCTED", "RECONSTRUCTION_NOTE", "STEP_NAMES", "CorrectionError", "CorrectionParams",
    "CorrectionResult", "CorrectionStep", "boundary_assistant", "correct_soft_labels", "false_pixel_assistant",
    "force_correct_side", "signed_boundary_distance", "similarity_correction", "wrong_side",
]
