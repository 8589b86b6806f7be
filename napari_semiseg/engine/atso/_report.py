"""The run report: what each model was trained on and from, and each pseudo-label's Dice.

The pseudo-label Dice on the reference set, per generation and per model, is the paper's
"lazy mimicking" diagnostic (Table 1, columns @R): with self-learning it stalls or drops
while the models keep agreeing with themselves; ATSO's cross-fold labelling should keep it
rising. The report is plain JSON (``report.json`` in the run folder, and the project's run
record) plus three text tables for the CLI.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...io import atomic_write_bytes
from ..training._events import json_safe

REPORT_FILE = "report.json"


@dataclass
class PseudoLabelRecord:
    """One stored pseudo-label and its quality.

    Attributes:
        case_id: the reference case.
        label_version_id: the project's "pseudo" label version.
        dice: mean foreground-class Dice against the case's reference (0..1), None without one.
        reference: where the reference came from ("held-out label of the image file", ...).
    """

    case_id: str
    label_version_id: int
    dice: float | None
    reference: str


@dataclass
class LabellingRecord:
    """One fold pseudo-labelled by one model in one generation.

    Attributes:
        generation: the generation whose models made the labels (0: M0).
        fold: ``"R1"``, ``"R2"`` or ``"R"``.
        teacher: the model's key; ``teacher_model_id`` its project model version.
        cases: the stored labels, in order.
        requested: cases the fold holds.
        seconds: wall time of the pass.
        cancelled: True when the run was stopped during the pass.
    """

    generation: int
    fold: str
    teacher: str
    teacher_model_id: int
    cases: list[PseudoLabelRecord] = field(default_factory=list)
    requested: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def mean_dice(self) -> float | None:
        return _mean([c.dice for c in self.cases])


@dataclass
class ModelRecord:
    """One model of the run.

    Attributes:
        key: ``"G0/M0"``, ``"G1/student-1"``, ``"final"``... (see ``engine.atso._schedule``).
        generation: 0 for M0, 1..T for students, T + 1 for the final model.
        model_id: its project model version (None when it was stopped before registering).
        parent_id: the model version whose weights it started from (None: from scratch).
        init: the key of that model, or "scratch" (or "given" for an M0 taken from the project).
        folds: the pseudo-labelled folds it was fine-tuned on.
        pseudo_labels: {case_id: label_version_id} of the pseudo-labels it was trained on.
        teachers: the model versions that made those pseudo-labels.
        labelled: the labelled cases it was trained on; ``labelled_repeats`` how many times
            each is listed (the labelled share of a batch, see ``AtsoConfig.labelled_share``).
        iterations: optimiser steps done.
        start_weights_sha256: the fingerprint of the weights the trainer started from.
        init_weights_sha256: the fingerprint of the weights of ``parent_id``'s model file.
        weights_sha256: the fingerprint of the trained (deployed) weights.
        validation_dice: the last validation Dice, when the run has validation cases.
        seconds: training time; ``run_dir`` the training's folder; ``status`` finished/stopped.
    """

    key: str
    generation: int
    model_id: int | None
    parent_id: int | None
    init: str
    folds: list[str]
    pseudo_labels: dict[str, int]
    teachers: list[int]
    labelled: list[str]
    labelled_repeats: int
    iterations: int
    start_weights_sha256: str | None
    init_weights_sha256: str | None
    weights_sha256: str | None
    validation_dice: float | None
    seconds: float
    run_dir: str | None
    status: str = "finished"

    @property
    def starts_from_init(self) -> bool | None:
        """Whether the trainer really started from the intended weights (None: nothing to compare)."""
        if self.start_weights_sha256 is None or self.init_weights_sha256 is None:
            return None
        return self.start_weights_sha256 == self.init_weights_sha256


@dataclass
class AtsoReport:
    """Everything an ATSO (or baseline) run did; see the module docstring."""

    run_id: int
    mode: str
    generations: int
    config: dict[str, Any]
    cases: dict[str, list[str]]
    folds: dict[str, Any] | None
    models: list[ModelRecord] = field(default_factory=list)
    labellings: list[LabellingRecord] = field(default_factory=list)
    status: str = "running"
    final_model_id: int | None = None
    final_model: str | None = None
    seconds: float = 0.0
    run_dir: str | None = None

    # -- queries ----------------------------------------------------------------------------------

    def model(self, key: str) -> ModelRecord:
        for record in self.models:
            if record.key == key:
                return record
        raise KeyError(key)

    def generation_dice(self, generation: int) -> dict[str, float | None]:
        """{case_id: pseudo-label Dice} of the labels made by generation ``generation``'s models."""
        return {c.case_id: c.dice for record in self.labellings if record.generation == generation
                for c in record.cases}

    def generation_mean_dice(self, generation: int) -> float | None:
        """The mean over the reference cases (with a reference) of generation ``generation``'s labels."""
        return _mean(list(self.generation_dice(generation).values()))

    @property
    def labelled_generations(self) -> list[int]:
        return sorted({record.generation for record in self.labellings})

    # -- output -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["models"] = [{**asdict(m), "starts_from_init": m.starts_from_init} for m in self.models]
        data["labellings"] = [{**asdict(r), "mean_dice": r.mean_dice} for r in self.labellings]
        data["pseudo_label_dice"] = {f"G{g}": {"mean": self.generation_mean_dice(g),
                                               "per_case": self.generation_dice(g)}
                                     for g in self.labelled_generations}
        return json_safe(data)

    def write(self, path: str | Path) -> Path:
        """Write the JSON atomically; returns the path."""
        path = Path(path)
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2, allow_nan=False).encode())
        return path

    def dice_table(self) -> str:
        """Per generation and teacher: the fold it labelled and the mean pseudo-label Dice."""
        rows = []
        for generation in self.labelled_generations:
            passes = [r for r in self.labellings if r.generation == generation]
            for record in passes:
                rows.append((f"G{generation}", record.teacher.split("/")[-1], record.teacher_model_id, record.fold,
                             f"{len(record.cases)}/{record.requested}", _percent(record.mean_dice)))
            if len(passes) > 1:
                dice = self.generation_dice(generation)
                rows.append((f"G{generation}", "all", "", "R", len(dice), _percent(self.generation_mean_dice(generation))))
        return _table(("generation", "labelled by", "model", "fold", "cases", "pseudo-label Dice %"), rows,
                      right=(2, 4, 5))

    def models_table(self) -> str:
        """Per model: where it started, what it was trained on, its validation Dice."""
        rows = []
        for m in self.models:
            trained_on = f"S {len(m.labelled)}" + (f"×{m.labelled_repeats}" if m.labelled_repeats > 1 else "")
            if m.folds:
                trained_on += f" + {'+'.join(m.folds)} {len(m.pseudo_labels)} (labels by {_ids(m.teachers)})"
            same = {True: "yes", False: "NO", None: "-"}[m.starts_from_init]
            rows.append((m.key, "-" if m.model_id is None else m.model_id, "-" if m.parent_id is None else m.parent_id,
                         m.init, same, trained_on, m.iterations, _percent(m.validation_dice), f"{m.seconds:.0f}"))
        return _table(("model", "id", "parent", "starts from", "same weights", "trained on", "iterations",
                       "val Dice %", "seconds"), rows, right=(1, 2, 6, 7, 8))

    def per_case_table(self) -> str:
        """One row per reference case: its fold and the Dice of its pseudo-label in each generation."""
        generations = self.labelled_generations
        per_generation = {g: self.generation_dice(g) for g in generations}
        folds = self.folds or {}
        fold_of = {c: name for name in ("R1", "R2") for c in folds.get(name, [])}
        rows = [(case_id, fold_of.get(case_id, "R"), *(_percent(per_generation[g].get(case_id)) for g in generations))
                for case_id in self.cases.get("reference", [])]
        return _table(("case", "fold", *(f"G{g} %" for g in generations)), rows,
                      right=tuple(range(2, 2 + len(generations))))


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _ids(ids) -> str:
    return ",".join(str(i) for i in ids) or "-"


def _table(headers, rows, right=()) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values):
        return "  ".join(v.rjust(w) if i in right else v.ljust(w)
                         for i, (v, w) in enumerate(zip(values, widths))).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in cells)])


__all__ = ["AtsoReport", "LabellingRecord", "ModelRecord", "PseudoLabelRecord", "REPORT_FILE"]
