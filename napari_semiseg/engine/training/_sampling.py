"""Which cases each batch draws: the papers' two-stream sampling as a pure function of the step.

The LA papers' ``TwoStreamBatchSampler`` (docs/METHODS.md §1.1): the labelled indices are shuffled
once per pass and cut into batches (an incomplete last batch is dropped); the unlabelled
indices cycle through independent permutations, one after another, forever. Here pass ``p``'s
permutation is drawn from a generator seeded by (seed, rank, stream, p), so the cases of step
``t`` are computed from ``t`` alone. Nothing needs saving to resume, data-loading workers can
build any step in any order, and DDP ranks draw different cases (their rank is in the seed).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

LABELED_STREAM = 0
#: Purposes mixed into the seeds, so that sampling and augmentation never share a stream.
SAMPLING, AUGMENTATION = 0, 1


def seed_sequence(*words: int) -> np.random.SeedSequence:
    """A well-mixed seed from small integers (run seed, rank, purpose, stream, step...)."""
    return np.random.SeedSequence([int(w) & 0xFFFFFFFF for w in words])


@lru_cache(maxsize=64)
def _permutation(n: int, seed: int, rank: int, stream: int, index: int) -> np.ndarray:
    rng = np.random.default_rng(seed_sequence(seed, rank, SAMPLING, stream, index))
    perm = rng.permutation(n)
    perm.flags.writeable = False
    return perm


class TwoStreamSchedule:
    """Case indices of every step's labelled half and unlabelled stream(s).

    Args:
        n_labeled, n_unlabeled: numbers of labelled and unlabelled cases.
        batch_labeled, batch_unlabeled: samples per step from each.
        seed: the run seed.
        rank: the DDP rank (0 alone).
    """

    def __init__(self, n_labeled: int, n_unlabeled: int, batch_labeled: int, batch_unlabeled: int,
                 seed: int, rank: int = 0):
        self.n_labeled, self.n_unlabeled = n_labeled, n_unlabeled
        self.batch_labeled, self.batch_unlabeled = batch_labeled, batch_unlabeled
        self.seed, self.rank = seed, rank

    @property
    def batches_per_pass(self) -> int:
        """Steps in one pass over the labelled cases (the papers' "epoch")."""
        return max(1, self.n_labeled // self.batch_labeled)

    def labeled(self, step: int) -> list[int]:
        """Labelled case indices of ``step`` (0-based)."""
        n, b = self.n_labeled, self.batch_labeled
        if n < b:  # fewer cases than a batch: walk the endless chain of permutations
            return self._chain(LABELED_STREAM, n, step * b, b)
        pass_index, within = divmod(step, self.batches_per_pass)
        return [int(i) for i in _permutation(n, self.seed, self.rank, LABELED_STREAM, pass_index)[
            within * b:(within + 1) * b]]

    def unlabeled(self, step: int, stream: int = 0) -> list[int]:
        """Unlabelled case indices of ``step`` for unlabelled stream ``stream``."""
        if self.n_unlabeled == 0 or self.batch_unlabeled == 0:
            return []
        b = self.batch_unlabeled
        return self._chain(1 + stream, self.n_unlabeled, step * b, b)

    def _chain(self, stream: int, n: int, start: int, count: int) -> list[int]:
        """Positions start..start+count−1 of the endless chain of permutations of range(n)."""
        indices = []
        for position in range(start, start + count):
            index, offset = divmod(position, n)
            indices.append(int(_permutation(n, self.seed, self.rank, stream, index)[offset]))
        return indices


def sample_rng(seed: int, rank: int, stream: int, step: int, slot: int) -> np.random.Generator:
    """The generator of one sample's augmentation (and the method's views of it)."""
    return np.random.default_rng(seed_sequence(seed, rank, AUGMENTATION, stream, step, slot))


__all__ = ["LABELED_STREAM", "TwoStreamSchedule", "sample_rng", "seed_sequence"]
