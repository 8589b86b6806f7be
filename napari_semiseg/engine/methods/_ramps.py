"""Ramp-up curves of the consistency weights (docs/METHODS.md §1.3)."""

from __future__ import annotations

import math


def sigmoid_rampup(current: float, length: float) -> float:
    """Laine & Aila's ramp r(t, L) = exp(−5·(1 − clip(t, 0, L)/L)²); 1 when L = 0.

    Args:
        current: t, in the caller's unit (iterations, or ⌊iteration/150⌋ as UA-MT uses).
        length: L, in the same unit.

    Returns:
        A weight in (0, 1], reaching 1 at t = L.
    """
    if length == 0:
        return 1.0
    phase = 1.0 - min(max(float(current), 0.0), float(length)) / float(length)
    return float(math.exp(-5.0 * phase * phase))


__all__ = ["sigmoid_rampup"]
