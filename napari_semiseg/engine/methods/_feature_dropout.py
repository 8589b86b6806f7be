"""CrossMatch's feature-level perturbation: weak and strong dropout on the encoder features.

The paper's efficient implementation (Sec. III-F, Algorithm 1): instead of decoding every
perturbed copy of the features in its own pass, the copies are stacked along the batch
dimension so that one decoder pass serves them all. ``FeatureDropoutStack`` is the
``perturb=`` hook of ``SegmentationNetwork.forward``: the network calls it on the encoder's
feature list (skips shallow to deep, then the bottleneck) between ``encode`` and ``decode``,
inside ``forward``, so a DistributedDataParallel wrapper sees every use of the parameters.

For an input batch [A; B] (first ``n_first`` samples A, the rest B) each feature map becomes
[A; B; dropout_weak(B); dropout_strong(B)], and the logits split the same way
(``split_stacked``). The dropouts are Dropout3d (whole channels of a sample, the survivors
scaled by 1/(1 − p)), drawn independently for every map, and always on: in the official code
they are not registered submodules, so ``eval()`` never switches them off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class FeatureDropoutStack:
    """Perturb hook: [A; B] -> [A; B; weak(B); strong(B)] on every encoder feature map.

    Attributes:
        n_first: how many leading samples form the clean-only part A (may be 0).
        weak: Dropout3d probability of the weak copy (0.25).
        strong: Dropout3d probability of the strong copy (0.75).
    """

    n_first: int
    weak: float = 0.25
    strong: float = 0.75

    def __call__(self, features: list[Tensor]) -> list[Tensor]:
        stacked = []
        for feature in features:
            second = feature[self.n_first:]
            stacked.append(torch.cat([feature, F.dropout3d(second, self.weak, training=True),
                                      F.dropout3d(second, self.strong, training=True)]))
        return stacked


def split_stacked(logits: Tensor, n_first: int, n_second: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(A, B, weak(B), strong(B)) outputs of a pass perturbed by ``FeatureDropoutStack``.

    Args:
        logits: (n_first + 3·n_second, K, Z, Y, X).
        n_first, n_second: the sizes of A and B.
    """
    expected = n_first + 3 * n_second
    if logits.shape[0] != expected:
        raise ValueError(f"a stacked pass of {n_first} + 3×{n_second} samples gives {expected} outputs, "
                         f"not {logits.shape[0]}")
    return tuple(logits.split([n_first, n_second, n_second, n_second]))


__all__ = ["FeatureDropoutStack", "split_stacked"]
