"""Words the panels share, in a clinician's terms; the technical name follows in parentheses.

A panel names what a control does for its user ("where the computation runs"), not how the
engine calls it ("device: cuda"); a researcher finds the engine's name in parentheses. The
method settings of the Fine-tune panel are the one place that speaks the methods' own language
(their papers' hyperparameters): that form is marked ``for_researchers``.
"""

from __future__ import annotations

#: The Qt property that marks a widget whose texts are the methods' own terms, for researchers.
RESEARCHER_PROPERTY = "semiseg_for_researchers"

DEVICE_TIP = ("Where the computation runs: auto takes the graphics card when there is one (GPU, CUDA), "
              "else the processor (CPU)")


def for_researchers(widget):
    """Mark ``widget`` (and what it holds) as speaking the methods' own terms; returns it."""
    widget.setProperty(RESEARCHER_PROPERTY, True)
    return widget


__all__ = ["DEVICE_TIP", "RESEARCHER_PROPERTY", "for_researchers"]
