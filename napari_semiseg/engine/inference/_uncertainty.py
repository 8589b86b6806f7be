"""Uncertainty: normalised predictive entropy, and Monte-Carlo dropout statistics.

The predictive entropy of the (mean) class probabilities ``p`` is
``H = −Σ_k p_k log p_k / log K``: 0 where the network is certain, 1 where all ``K`` classes
are equally likely (p = 0.5 for two classes). With MC dropout the entropy is taken of the
mean over the T samples (the predictive distribution), and the spread of the samples is
reported separately as the per-voxel variance of the foreground probability
``f = 1 − p_background`` (population variance, divided by T).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ...errors import SemisegError

#: z-slabs per step: bounds the temporaries of a whole-volume computation.
SLAB = 16
DROPOUT_KINDS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


class McDropoutError(SemisegError):
    """MC-dropout sampling was asked of a network without dropout layers."""


def normalised_entropy(probabilities: torch.Tensor) -> np.ndarray:
    """Predictive entropy of (K, z, y, x) probabilities, divided by log K.

    Returns:
        float32 (z, y, x) in 0..1.
    """
    k, *shape = probabilities.shape
    out = np.empty(shape, dtype=np.float32)
    if k < 2:
        out.fill(0.0)
        return out
    scale = 1.0 / math.log(k)
    for z in range(0, shape[0], SLAB):
        p = probabilities[:, z:z + SLAB]
        h = -torch.special.xlogy(p, p).sum(dim=0) * scale
        out[z:z + SLAB] = h.clamp_(0.0, 1.0).numpy()
    return out


class McStatistics:
    """Running sums over MC samples of (K, z, y, x) CPU probabilities (float32, in place)."""

    def __init__(self):
        self.samples = 0
        self._sum: torch.Tensor | None = None
        self._fg_sum: torch.Tensor | None = None
        self._fg_sq_sum: torch.Tensor | None = None

    def add(self, probabilities: torch.Tensor) -> None:
        foreground = 1.0 - probabilities[0]
        if self._sum is None:
            self._sum = probabilities.clone()
            self._fg_sum = foreground
            self._fg_sq_sum = foreground.square()
        else:
            self._sum += probabilities
            self._fg_sum += foreground
            self._fg_sq_sum.addcmul_(foreground, foreground)
        self.samples += 1

    def mean(self) -> torch.Tensor:
        """Mean class probabilities (K, z, y, x)."""
        return self._sum / self.samples

    def foreground_variance(self) -> torch.Tensor:
        """Population variance of the foreground probability over the samples (z, y, x), ≥ 0."""
        mean = self._fg_sum / self.samples
        return (self._fg_sq_sum / self.samples).sub_(mean.square_()).clamp_(min=0.0)


def _dropout_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, DROPOUT_KINDS)]


@contextmanager
def evaluation_mode(net: nn.Module, *, mc_dropout: bool = False):
    """Put ``net`` in eval mode (dropout layers sampling when ``mc_dropout``), then restore it.

    Every module's own ``training`` flag is put back on exit, so a network handed in by the
    trainer in train mode leaves in train mode.

    Raises:
        McDropoutError: ``mc_dropout`` and the network has no dropout layer (the samples
            would all be equal and the variance silently zero).
    """
    modes = [(m, m.training) for m in net.modules()]
    if mc_dropout and not _dropout_layers(net):
        raise McDropoutError(f"{type(net).__name__} has no dropout layer: MC-dropout uncertainty needs a "
                             "network built with dropout (card network.dropout: true)")
    net.eval()
    if mc_dropout:
        for layer in _dropout_layers(net):
            layer.train()
    try:
        yield net
    finally:
        for module, training in modes:
            module.training = training
