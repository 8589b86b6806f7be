"""What an ATSO run (or one of its baselines) is asked to do: one dataclass, plain JSON when recorded."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ...errors import SemisegError
from ..cards import ModelCard

#: The paper's algorithm and its two baselines (Table 1).
MODES = ("atso", "self-learning", "stso")
#: Where the final ATSO model starts: M0's weights (no continual learning) or random weights.
FINAL_INITS = ("m0", "scratch")
#: TrainConfig fields an ATSO run sets itself; ``train_overrides`` may not touch them.
RESERVED_TRAIN_FIELDS = ("card", "output_dir", "method", "iterations", "data", "init_from",
                         "parent_model_id", "resume_from", "batch_unlabeled", "device")


class AtsoError(SemisegError):
    """An ATSO run cannot start or continue (configuration, cases, a broken invariant)."""


@dataclass
class AtsoConfig:
    """An ATSO run, or a run of one of its baselines, on a project.

    Attributes:
        card: the model card of every model of the run (network, patch, recipe).
        mode: ``"atso"`` (the paper's Algorithm 1), ``"self-learning"`` (continual: one
            student pseudo-labels the whole reference set with itself and continues from its
            own weights) or ``"stso"`` (each generation re-initialised from M0, no split).
        generations: T, the number of teacher–student generations (the paper's default 3).
        iterations_m0: optimiser steps of M0 on the labelled set; None: the card's recipe.
        iterations_generation: steps of each student's fine-tuning; None: the card's recipe.
        iterations_final: steps of ATSO's final model on everything; None: as a generation.
        folds_seed: seeds the split of the reference set into the two fixed folds.
        labelled_share: the expected share of labelled (gold) patches in a fine-tuning
            batch; the labelled cases are repeated in the case list to reach it (0.5: the
            paper setting's 2 labelled + 2 pseudo-labelled patches). None: plain union.
        batch_size_generation: patches per fine-tuning step; None: the card's labelled +
            unlabelled halves (2 + 2).
        m0_model_id: use this project model version as M0 instead of training one.
        final_init: ``"m0"`` (default) or ``"scratch"``: where ATSO's final model starts.
        labelled, reference, validation: case ids; None chooses them from the project
            (see ``engine.atso.choose_cases``).
        reference_limit: keep only the first N reference cases (catalogue order): quick runs.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` for training and inference.
        overlap: sliding-window overlap of the pseudo-labelling instead of the card's.
        train_overrides: further ``TrainConfig`` fields for every training (lr, seed,
            cache_volumes, validate_every...), except those the run sets itself.
    """

    card: ModelCard
    mode: str = "atso"
    generations: int = 3
    iterations_m0: int | None = None
    iterations_generation: int | None = None
    iterations_final: int | None = None
    folds_seed: int = 0
    labelled_share: float | None = 0.5
    batch_size_generation: int | None = None
    m0_model_id: int | None = None
    final_init: str = "m0"
    labelled: tuple[str, ...] | None = None
    reference: tuple[str, ...] | None = None
    validation: tuple[str, ...] | None = None
    reference_limit: int | None = None
    device: str = "auto"
    overlap: float | None = None
    train_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for part in ("labelled", "reference", "validation"):
            value = getattr(self, part)
            if value is not None:
                setattr(self, part, tuple(str(c) for c in value))

    def check(self) -> None:
        """Raise ``AtsoError`` naming every setting the run could not use."""
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        if self.generations < 1:
            problems.append(f"generations must be ≥ 1, got {self.generations}")
        for name in ("iterations_m0", "iterations_generation", "iterations_final", "batch_size_generation",
                     "reference_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name} must be ≥ 1, got {value}")
        if self.labelled_share is not None and not 0.0 < self.labelled_share < 1.0:
            problems.append(f"labelled_share must be between 0 and 1 (exclusive), got {self.labelled_share}")
        if self.final_init not in FINAL_INITS:
            problems.append(f"final_init must be one of {list(FINAL_INITS)}, got {self.final_init!r}")
        if self.overlap is not None and not 0.0 <= self.overlap < 1.0:
            problems.append(f"overlap must be in [0, 1), got {self.overlap}")
        reserved = sorted(set(self.train_overrides) & set(RESERVED_TRAIN_FIELDS))
        if reserved:
            problems.append(f"train_overrides may not set {reserved}: the ATSO run sets them")
        if problems:
            raise AtsoError("ATSO configuration: " + "; ".join(problems))

    # -- resolved settings ---------------------------------------------------------------------

    @property
    def m0_iterations(self) -> int:
        return self.iterations_m0 or self.card.training.iterations

    @property
    def generation_iterations(self) -> int:
        return self.iterations_generation or self.card.training.iterations

    @property
    def final_iterations(self) -> int:
        return self.iterations_final or self.generation_iterations

    @property
    def generation_batch(self) -> int:
        recipe = self.card.training
        return self.batch_size_generation or (recipe.batch_labeled + recipe.batch_unlabeled)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (the card as its dict) for the run record and the report."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["card"] = self.card.to_dict()
        for part in ("labelled", "reference", "validation"):
            data[part] = None if data[part] is None else list(data[part])
        data["train_overrides"] = dict(self.train_overrides)
        return data


__all__ = ["AtsoConfig", "AtsoError", "FINAL_INITS", "MODES", "RESERVED_TRAIN_FIELDS"]
